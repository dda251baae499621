"""Builds spn_kernels._C: the op schemas and C++ CPU kernels always; CUDA kernels when torch has CUDA.

Environment switches:
  SPN_BUILD_CUDA=1   force the CUDA build (fails if torch has no CUDA or nvcc is missing)
  SPN_BUILD_CUDA=0   skip the CUDA build even where it is possible
  TORCH_CUDA_ARCH_LIST  defaults to "8.0;9.0" (A100, H100/H200): never guessed from a GPU, so GPU-less
                     builders produce the same binary
  MAX_JOBS           parallel compile jobs (each C++ unit takes about 1 GB of memory)
No network access: every input is in this repository or in the installed torch.
"""

from __future__ import annotations

import glob
import os
import sys

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _rel(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _want_cuda() -> bool:
    flag = os.environ.get("SPN_BUILD_CUDA", "auto")
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    if flag == "1":
        if not possible:
            sys.exit("SPN_BUILD_CUDA=1 but torch has no CUDA or nvcc/CUDA_HOME was not found")
        return True
    if flag == "0":
        return False
    return possible


def extensions():
    # csrc/<op>/cpu.cpp: the CPU kernels; csrc/<op>/*.cu: the CUDA kernels; csrc/cuda/binding.cpp binds them
    cpu_sources = ["csrc/module.cpp", "csrc/ops.cpp"] + _rel("csrc/*/cpu.cpp")
    include_dirs = [os.path.join(ROOT, "csrc")]
    cxx = ["-O3", "-std=c++17", "-fopenmp", "-DPy_LIMITED_API=0x03090000"]
    if not _want_cuda():
        return [
            CppExtension(
                "spn_kernels._C",
                cpu_sources,
                include_dirs=include_dirs,
                extra_compile_args={"cxx": cxx},
                extra_link_args=["-fopenmp"],
                py_limited_api=True,
            )
        ]
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    gencode = []
    for arch in os.environ["TORCH_CUDA_ARCH_LIST"].replace(";", " ").split():
        a = arch.replace("+PTX", "").replace(".", "")
        gencode.append(f"-gencode=arch=compute_{a},code=sm_{a}")
        if arch.endswith("+PTX"):  # also embed PTX, which newer GPUs JIT-compile
            gencode.append(f"-gencode=arch=compute_{a},code=compute_{a}")
    nvcc = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo", *gencode]
    return [
        CUDAExtension(
            "spn_kernels._C",
            cpu_sources + _rel("csrc/cuda/*.cpp") + _rel("csrc/*/*.cu"),
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx + ["-DSPN_WITH_CUDA"], "nvcc": nvcc},
            extra_link_args=["-fopenmp"],
            py_limited_api=True,
        )
    ]


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
