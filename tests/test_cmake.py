"""The C++ tests (tests/cpp) built against libtorch with CMake and run with ctest, as the README says."""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch.utils

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_ctest(tmp_path):
    build = tmp_path / "build"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), *gen, f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
        check=True,
        capture_output=True,
    )
    subprocess.run(["cmake", "--build", str(build), "-j", "2"], check=True, capture_output=True)
    res = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
