"""`sam build` really produces an arm64 layer, even on an x86_64 machine: every shared object
in it is aarch64, and the core package, numpy, Powertools and matplotlib are all inside, within
Lambda's size limit. The mlp's kernels are compiled for arm64 into it, and compute there what
they compute here.

This runs the real build (pip fetches the aarch64 wheels from PyPI into a temporary folder).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EM_AARCH64 = 183  # ELF e_machine of AArch64
#: Lambda's limit on a function's unzipped code and layers together (250 MB); the functions'
#: own code is a few KB, so the layer may take nearly all of it.
LAMBDA_UNZIPPED_LIMIT = 262_144_000


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(header[18:20], "little")


@pytest.fixture(scope="module")
def built_layer(tmp_path_factory) -> Path:
    sam = Path(sys.executable).parent / "sam"
    assert sam.exists(), "sam is missing: install the dev extras (pip install -e '.[dev]')"
    work = tmp_path_factory.mktemp("sam")
    result = subprocess.run(
        [str(sam), "build", "CoreLayer", "--template-file", str(ROOT / "template.yaml"),
         "--build-dir", str(work / "build"), "--cache-dir", str(work / "cache")],
        cwd=work, capture_output=True, text=True, timeout=600,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (layer,) = [p for p in (work / "build").iterdir() if p.name.startswith("CoreLayer")]
    return layer / "python"


def test_layer_holds_the_core_package_and_its_dependencies(built_layer):
    for package in ("stepml", "numpy", "aws_lambda_powertools", "jsonschema", "matplotlib"):
        assert (built_layer / package).is_dir(), package
    assert (built_layer / "stepml/schemas/trigger.schema.json").is_file()
    assert not (built_layer / "boto3").exists()  # the runtime provides it; a copy would shadow it
    assert not (built_layer / "stepml/local").exists()  # the local stack is not Lambda code


def test_every_shared_object_is_aarch64(built_layer):
    shared_objects = [p for p in built_layer.rglob("*.so*") if p.is_file()]
    assert len(shared_objects) > 5
    wrong = [str(p.relative_to(built_layer)) for p in shared_objects if elf_machine(p) != EM_AARCH64]
    assert wrong == []


def test_the_layer_fits_lambdas_unzipped_size_limit_with_room_to_spare(built_layer):
    size = sum(p.stat().st_size for p in built_layer.rglob("*") if p.is_file())
    assert size < 0.8 * LAMBDA_UNZIPPED_LIMIT, f"the layer is {size / 1e6:.0f} MB unzipped"


# -- the mlp's compiled kernels in the layer -------------------------------------------------

CROSS_CC = "aarch64-linux-gnu-gcc"
KERNELS = ROOT / "stepml/models/_kernels.c"


def arm64_compiler() -> str | None:
    """What layer/Makefile builds the kernels with: cc on arm64, else the cross compiler."""
    return shutil.which("cc") if platform.machine() == "aarch64" else shutil.which(CROSS_CC)


def test_the_layer_carries_the_mlp_kernels_built_for_arm64(built_layer):
    kernels = built_layer / "stepml/models/_kernels.so"
    if arm64_compiler() is None:     # a machine without one: the build warned, numpy will run
        assert not list((built_layer / "stepml/models").glob("_kernels*.so"))
    else:
        assert elf_machine(kernels) == EM_AARCH64
        assert [p.name for p in (built_layer / "stepml/models").glob("_kernels*.so")] == ["_kernels.so"]
        symbols = kernels.read_bytes()          # what kernels.py looks up in it
        for name in (b"stepml_kernels_version", b"stepml_gather_shift", b"stepml_softmax_head"):
            assert name in symbols, name


@pytest.mark.skipif(not (shutil.which(CROSS_CC) and shutil.which("qemu-aarch64")),
                    reason=f"needs {CROSS_CC} and qemu-aarch64 (.ci/run installs both)")
def test_the_arm64_kernels_compute_what_this_machines_build_computes(tmp_path):
    harness = ROOT / "tests/native/kernels_harness.c"
    flags = ["-O3", "-std=gnu11", "-Wno-psabi", str(harness), str(KERNELS), "-lm"]
    subprocess.run(["cc", "-o", str(tmp_path / "host"), *flags], check=True)
    subprocess.run([CROSS_CC, "-static", "-mcpu=neoverse-n1", "-o", str(tmp_path / "arm64"), *flags], check=True)
    host = subprocess.run([str(tmp_path / "host")], capture_output=True, text=True, check=True).stdout
    arm64 = subprocess.run(["qemu-aarch64", str(tmp_path / "arm64")], capture_output=True, text=True,
                           check=True).stdout

    def numbers(out):
        return [float(t) for t in out.split() if t[0].isdigit() or t[0] == "-"]

    assert "rc 0" in host and len(numbers(host)) == 7
    assert numbers(arm64) == pytest.approx(numbers(host), rel=1e-5)
