"""`sam build` really produces an arm64 layer, even on an x86_64 machine: every shared object
in it is aarch64, and the core package, numpy, Powertools and matplotlib are all inside, within
Lambda's size limit.

This runs the real build (pip fetches the aarch64 wheels from PyPI into a temporary folder).
"""

from __future__ import annotations

import os
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
