/*
 * The mlp's element-wise work, fused: the parts of a training step that are not matrix
 * products big enough for BLAS (see stepml/models/kernels.py, which loads this library with
 * ctypes and falls back to numpy without it).
 *
 * Two passes that numpy makes in five to ten calls, each over arrays too big for the L1 and
 * L2 caches, are done here in one sweep over the rows, with each row in L1 while it is used:
 *
 *   stepml_gather_shift   the minibatch's rows, each translated by its offset (zero fill),
 *                         read once from X and written once into the step's buffer;
 *   stepml_softmax_head   ReLU, logits, softmax cross-entropy, the output layer's gradient
 *                         and the hidden layer's masked gradient, row by row.
 *
 * C11 with GNU vector extensions, no Python API, single-threaded (BLAS owns the cores during the products).
 * Every loop that carries the work runs along contiguous memory with independent lanes, so
 * the compiler vectorises it without reassociating any sum: results are deterministic for a
 * given build and CPU family (the AVX2 and AVX-512 versions contract a * b + c into fused
 * multiply-adds, and glibc's expf has per-CPU versions too).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* One build runs everywhere on x86-64, with AVX2+FMA or AVX-512 where the CPU has them. */
#define STEPML_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define STEPML_CLONES
#endif

#define LANES 16

/* Bumped whenever a signature changes; kernels.py refuses a library of another version. */
int stepml_kernels_version(void) { return 1; }

/*
 * out[r, :] = row idx[r] of X (h*w pixels, an h x w image), translated by the r-th row's
 * offset (dy, dx): out pixel (y, x) = source pixel (y - dy, x - dx), 0 where that lies
 * outside the image. Offsets come as counts per offset, offsets in row-major order of
 * (dy, dx) in [-shift, shift]^2 (offset = (dy + shift) * (2 shift + 1) + (dx + shift)):
 * the first counts[0] rows get the first offset, and so on (stepml.models.base.shift_counts).
 * X has n rows, ldx floats apart; an index outside [0, n) is clipped into it (as numpy's
 * take(mode="clip")). out rows are ldo floats apart.
 */
void stepml_gather_shift(const float *X, int64_t n, int64_t ldx, const int64_t *idx, int64_t m,
                         const int64_t *counts, int64_t shift, int64_t h, int64_t w,
                         float *out, int64_t ldo)
{
    const int64_t side = 2 * shift + 1;
    int64_t r = 0;
    for (int64_t offset = 0; offset < side * side && r < m; offset++) {
        const int64_t dy = offset / side - shift, dx = offset % side - shift;
        /* Output columns [x0, x1) come from source columns [x0 - dx, x1 - dx). */
        /* (Clamped for |dx| >= w, which kernels.py refuses: then the whole row is zero.) */
        const int64_t x0 = dx <= 0 ? 0 : dx < w ? dx : w;
        const int64_t x1 = dx >= 0 ? w : w + dx > x0 ? w + dx : x0;
        for (int64_t end = r + counts[offset]; r < end && r < m; r++) {
            const int64_t row = idx[r] < 0 ? 0 : idx[r] >= n ? n - 1 : idx[r];
            const float *src = X + row * ldx;
            float *dst = out + r * ldo;
            for (int64_t y = 0; y < h; y++) {
                float *row = dst + y * w;
                const int64_t sy = y - dy;
                if (sy < 0 || sy >= h) {
                    memset(row, 0, (size_t)w * sizeof(float));
                    continue;
                }
                if (x0 > 0) memset(row, 0, (size_t)x0 * sizeof(float));
                memcpy(row + x0, src + sy * w + (x0 - dx), (size_t)(x1 - x0) * sizeof(float));
                if (x1 < w) memset(row + x1, 0, (size_t)(w - x1) * sizeof(float));
            }
        }
    }
}

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t mask __attribute__((vector_size(LANES * sizeof(int32_t))));   /* lanes: 0 or -1 */
#define INLINE static inline __attribute__((always_inline))

INLINE vec load(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }
INLINE void store(float *p, vec v) { memcpy(p, &v, sizeof v); }
INLINE vec keep(vec v, mask where) { return (vec)((mask)v & where); }      /* v, else +0 */
INLINE float lane_sum(vec v)
{
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += v[l];
    return s;
}

/* The largest k (classes) the kernel takes; the logits of a row live in registers. */
#define MAX_K 16

/*
 * Logits of one row: a <- relu(a) in place, z[c] = b2[c] + a . W2T[c]. Each block of LANES
 * hidden units is loaded once and used for every class (K accumulators, K a constant).
 */
INLINE
void row_logits(const int K, float *a, int64_t h, const float *W2T, const float *b2, float *z)
{
    vec acc[MAX_K];
    for (int c = 0; c < K; c++) acc[c] = (vec){0};
    const vec zero = (vec){0};
    int64_t j = 0;
    for (; j + LANES <= h; j += LANES) {
        vec v = load(a + j);
        v = keep(v, ~(v < zero));             /* NaN compares false: it stays NaN */
        store(a + j, v);
        for (int c = 0; c < K; c++) acc[c] += v * load(W2T + c * h + j);
    }
    for (int c = 0; c < K; c++) z[c] = lane_sum(acc[c]);
    for (; j < h; j++) {
        a[j] = a[j] < 0.0f ? 0.0f : a[j];
        for (int c = 0; c < K; c++) z[c] += a[j] * W2T[c * h + j];
    }
    for (int c = 0; c < K; c++) z[c] += b2[c];
}

/*
 * Backward through one row, given its output gradient g (K): gT[c] += g[c] a (the output
 * weights' gradient, transposed) and d = (W2 g) * [a > 0], in one sweep over the hidden units.
 */
INLINE
void row_backward(const int K, const float *a, int64_t h, const float *W2T, const float *g,
                  float *gT, float *d)
{
    const vec zero = (vec){0};
    int64_t j = 0;
    for (; j + LANES <= h; j += LANES) {
        const vec v = load(a + j);
        vec acc = zero;
        for (int c = 0; c < K; c++) {
            store(gT + c * h + j, load(gT + c * h + j) + g[c] * v);
            acc += g[c] * load(W2T + c * h + j);
        }
        store(d + j, keep(acc, v > zero));
    }
    for (; j < h; j++) {
        float acc = 0.0f;
        for (int c = 0; c < K; c++) {
            gT[c * h + j] += g[c] * a[j];
            acc += g[c] * W2T[c * h + j];
        }
        d[j] = a[j] > 0.0f ? acc : 0.0f;
    }
}

/* The softmax of logits z (K), in place, as the gradient scale (p - onehot(t)) / m with the
 * row's loss and whether its true class t has the highest logit (ties count). */
INLINE
double row_softmax(const int K, float *z, int64_t t, float per_row, int64_t *right)
{
    float zmax = z[0];
    for (int c = 1; c < K; c++)                  /* once a NaN is the max it stays: the loss */
        if (zmax == zmax && !(z[c] <= zmax)) zmax = z[c];     /* is NaN, the row not right */
    const float z_true = z[t] - zmax;
    if (z_true == 0.0f) (*right)++;
    float total = 0.0f;
    for (int c = 0; c < K; c++) {
        z[c] = expf(z[c] - zmax);
        total += z[c];
    }
    const float share = per_row / total;
    for (int c = 0; c < K; c++) z[c] *= share;
    z[t] -= per_row;
    return log((double)total) - (double)z_true;
}

INLINE
double head_rows(const int K, float *A, int64_t lda, int64_t m, int64_t h, const float *W2T,
                 const float *b2, const int64_t *y, float per_row, float *gT, float *gb2,
                 float *dH, int64_t lddh, int64_t *right)
{
    double loss = 0.0;
    float z[MAX_K];
    for (int64_t i = 0; i < m; i++) {
        float *a = A + i * lda;
        row_logits(K, a, h, W2T, b2, z);
        loss += row_softmax(K, z, y[i], per_row, right);
        for (int c = 0; c < K; c++) gb2[c] += z[c];
        row_backward(K, a, h, W2T, z, gT, dH + i * lddh);
    }
    return loss;
}

/*
 * One minibatch's output layer, for softmax cross-entropy, given the hidden layer's
 * pre-activations A (m, h) (rows lda floats apart) and W2T = W2 transposed (k, h):
 *
 *   A   <- relu(A)                      in place (NaN stays NaN)
 *   z   =  A[i] W2 + b2                 logits of row i;  p = softmax(z)
 *   g   =  scale (p - onehot(y[i])) / m
 *   gT  =  sum_i g (x) A[i]             (k, h): the output weights' gradient, transposed
 *   gb2 =  sum_i g
 *   dH[i] = (W2 g) * [A[i] > 0]         (rows lddh floats apart)
 *
 * Returns 0 with the summed cross-entropy in *loss and the rows whose true class has the
 * highest logit (ties count) in *correct; or -1, with nothing written, if k is outside
 * [2, MAX_K] or a label outside [0, k).
 */
STEPML_CLONES
int stepml_softmax_head(float *A, int64_t lda, int64_t m, int64_t h, int64_t k,
                        const float *W2T, const float *b2, const int64_t *y, float scale,
                        float *gT, float *gb2, float *dH, int64_t lddh,
                        double *loss, int64_t *correct)
{
    if (k < 2 || k > MAX_K) return -1;
    for (int64_t i = 0; i < m; i++)
        if (y[i] < 0 || y[i] >= k) return -1;
    memset(gT, 0, (size_t)(k * h) * sizeof(float));
    memset(gb2, 0, (size_t)k * sizeof(float));
    const float per_row = scale / (float)m;
    int64_t right = 0;
    double total = 0.0;
    switch (k) {   /* K a constant in each case: the classes' loops unroll into registers */
#define CASE(K) case K: total = head_rows(K, A, lda, m, h, W2T, b2, y, per_row, gT, gb2, dH, lddh, &right); break;
    CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9)
    CASE(10) CASE(11) CASE(12) CASE(13) CASE(14) CASE(15) CASE(16)
#undef CASE
    }
    *loss = total;
    *correct = right;
    return 0;
}
