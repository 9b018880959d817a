/*
 * Runs the mlp's kernels (stepml/models/_kernels.c) on fixed inputs and prints what they
 * computed, so that builds for different machines can be compared: tests/test_layer_build.py
 * builds it for this machine and for Lambda's arm64 (run under qemu) and checks that both
 * print the same numbers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
void stepml_gather_shift(const float *X, int64_t n, int64_t ldx, const int64_t *idx, int64_t m,
                         const int64_t *counts, int64_t shift, int64_t h, int64_t w, float *out, int64_t ldo);
int stepml_softmax_head(float *A, int64_t lda, int64_t m, int64_t h, int64_t k,
                        const float *W2T, const float *b2, const int64_t *y, float scale,
                        float *gT, float *gb2, float *dH, int64_t lddh, double *loss, int64_t *correct);
static uint32_t s = 12345;
static float rnd(void){ s = s * 1664525u + 1013904223u; return (float)(s >> 8) / 16777216.0f - 0.5f; }
int main(void){
  enum { n = 50, hw = 784, m = 64, h = 100, k = 10 };
  static float X[n*hw], out[m*hw], A[m*h], W[k*h], b[k], gT[k*h], gb[k], dH[m*h];
  static int64_t idx[m], y[m], counts[9];
  for (int i = 0; i < n*hw; i++) X[i] = rnd();
  for (int i = 0; i < m; i++) { idx[i] = (i * 37) % n; y[i] = i % k; }
  for (int i = 0; i < 9; i++) counts[i] = 7 + (i == 4);     /* 64 rows over 9 offsets */
  stepml_gather_shift(X, n, hw, idx, m, counts, 1, 28, 28, out, hw);
  double cs = 0; for (int i = 0; i < m*hw; i++) cs += out[i] * (double)(i % 97 + 1);
  printf("gather %.9g\n", cs);
  for (int i = 0; i < m*h; i++) A[i] = rnd() * 4;
  for (int i = 0; i < k*h; i++) W[i] = rnd() * 0.5f;
  for (int i = 0; i < k; i++) b[i] = rnd();
  double loss; int64_t correct;
  int rc = stepml_softmax_head(A, h, m, h, k, W, b, y, -0.1f, gT, gb, dH, h, &loss, &correct);
  double g1 = 0, g2 = 0, g3 = 0;
  for (int i = 0; i < k*h; i++) g1 += gT[i] * (double)(i % 13 + 1);
  for (int i = 0; i < k; i++) g2 += gb[i] * (i + 1);
  for (int i = 0; i < m*h; i++) g3 += dH[i] * (double)(i % 11 + 1);
  printf("rc %d loss %.9g correct %lld gT %.9g gb2 %.9g dH %.9g\n", rc, loss, (long long)correct, g1, g2, g3);
  return 0;
}
