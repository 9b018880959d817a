"""The one thing pyproject.toml cannot say: the mlp's fused kernels (stepml/models/_kernels.c).

A plain C library, loaded with ctypes by stepml/models/kernels.py; no Python API, so it is not
importable as a module. Optional: where it does not compile (no C compiler), the install goes on
and the mlp runs its numpy code instead. The Lambda layer builds it for arm64 itself
(layer/Makefile).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "stepml.models._kernels", ["stepml/models/_kernels.c"], optional=True,
    extra_compile_args=["-O3", "-std=gnu11", "-Wno-psabi"], libraries=["m"])])
