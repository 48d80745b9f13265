"""A conda-forge-shaped "upstream" channel for solver tests, written from the data below.

Records only: a solve reads repodata, never package files. Shapes follow conda-forge's
feedstocks: pytorch's megabuild (libtorch/pytorch/pytorch-gpu, build strings
`cuda129_generic_py312_h<hash>_200`, `__cuda` in run, libtorch constraining pytorch to its
own build), triton `cuda129py312h<hash>_0`, torchvision/torchaudio pinning
`pytorch * cuda*` plus the `pytorch`/`libtorch` run_exports, cuda-version constraining
`__cuda`, and the CUDA libraries pinned to their cuda-version minor.

Regenerate the committed copy with `python tests/support/solve.py`; a test keeps the two equal.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from pascal_forge.channel.solve import write_channel

UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures" / "upstream"
PLATFORM = "linux-64"
# Newer than anything we build, so no tie is ever broken in our favour by age.
STOCK_TIMESTAMP = 1_765_000_000_000
GLIBC = "__glibc >=2.17,<3.0.a0"

PYTHONS = {"3.10": "3.10.19", "3.11": "3.11.14", "3.12": "3.12.12", "3.13": "3.13.9", "3.14": "3.14.0"}
# conda-forge tags Python's builds by flavour; 3.13 and 3.14 have their own tags.
PYTHON_FLAVOURS = {"3.13": "cp313", "3.14": "cp314"}
# CUDA minor -> (cuda-version constraint on __cuda, library versions)
CUDA_LIBS = {
    "12.6": {
        "cuda-cudart": "12.6.77",
        "cuda-cudart-dev": "12.6.77",
        "cuda-nvcc-tools": "12.6.85",
        "cuda-cuobjdump": "12.6.77",
        "cuda-cupti": "12.6.80",
    },
    "12.9": {
        "cuda-cudart": "12.9.79",
        "cuda-cudart-dev": "12.9.79",
        "cuda-nvcc-tools": "12.9.86",
        "cuda-cuobjdump": "12.9.82",
        "cuda-cupti": "12.9.79",
    },
    "13.0": {
        "cuda-cudart": "13.0.96",
        "cuda-cudart-dev": "13.0.96",
        "cuda-nvcc-tools": "13.0.88",
        "cuda-cuobjdump": "13.0.85",
        "cuda-cupti": "13.0.85",
    },
}
CUDA_VERSIONS = ("12.6", "12.8", "12.9", "13.0")
# pytorch release -> the triton it pins (pytorch's .ci/docker/ci_commit_pins/triton.txt)
# 2.13.0/3.7.1: what conda-forge has in late 2026 (the newest CUDA 12.9 builds beside ours).
TORCH_TRITON = {"2.9.1": "3.5.1", "2.10.0": "3.6.0", "2.13.0": "3.7.1"}
TORCH_CUDA = ("12.9", "13.0")
TRITONS = ("3.5.1", "3.6.0", "3.7.1")
# torchvision/torchaudio release -> the pytorch minor it was built against
TORCHVISION = {"0.24.1": "2.9.1", "0.25.0": "2.10.0", "0.29.0": "2.14.0"}
TORCHAUDIO = {"2.9.1": "2.9.1", "2.10.0": "2.10.0"}

# Pure-Python dependencies, as noarch records: the versions satisfy vLLM 0.14.0's pins, and
# NEWER_LEAVES adds the versions (and names) that vLLM 0.34.0's pins need.
LEAVES = {
    "aiohttp": "3.13.2",
    "anthropic": "0.71.0",
    "blake3": "1.0.8",
    "cachetools": "6.2.2",
    "cbor2": "5.7.1",
    "cloudpickle": "3.1.2",
    "compressed-tensors": "0.13.0",
    "depyf": "0.20.0",
    "diskcache": "5.6.3",
    "einops": "0.8.1",
    "fastapi": "0.121.3",
    "filelock": "3.20.0",
    "fsspec": "2025.10.0",
    "gguf": "0.17.1",
    "ijson": "3.4.0",
    "jinja2": "3.1.6",
    "lark": "1.2.2",
    "llguidance": "1.3.0",
    "llvm-openmp": "21.1.6",
    "lm-format-enforcer": "0.11.3",
    "mcp": "1.22.0",
    "mistral-common": "1.8.8",
    "msgspec": "0.19.0",
    "networkx": "3.5",
    "ninja": "1.13.0",
    "nomkl": "1.0",
    "numba": "0.61.2",
    "numpy": "2.3.5",
    "openai": "2.8.1",
    "openai-harmony": "0.0.8",
    "opencv": "4.12.0",
    "optree": "0.18.0",
    "outlines-core": "0.2.11",
    "partial-json-parser": "0.2.1.1.post6",
    "pillow": "12.0.0",
    "prometheus-fastapi-instrumentator": "7.1.0",
    "prometheus_client": "0.23.1",
    "protobuf": "6.31.1",
    "psutil": "7.1.3",
    "py-cpuinfo": "9.0.0",
    "pybase64": "1.4.2",
    "pybind11": "3.0.1",
    "pydantic": "2.12.4",
    "python-json-logger": "4.0.0",
    "pyyaml": "6.0.3",
    "pyzmq": "27.1.0",
    "regex": "2025.11.3",
    "requests": "2.32.5",
    "sentencepiece": "0.2.1",
    "setproctitle": "1.3.7",
    "setuptools": "80.9.0",
    "six": "1.17.0",
    "sympy": "1.14.0",
    "tiktoken": "0.12.0",
    "tokenizers": "0.22.1",
    "tqdm": "4.67.1",
    "transformers": "4.57.1",
    "typing_extensions": "4.15.0",
    "watchfiles": "1.1.1",
    # conda-forge built 0.1.23 and 0.1.32, never the 0.1.29 vLLM 0.14.0 pins.
    "xgrammar": "0.1.32",
}
# vLLM 0.34.0's run pins at conda-forge's real versions: the newest build that the feedstock's
# newest stored commit (2026-12-02; 2026-12-06 for 0.34.0's new floors) shows, or, where a pin
# asks for an older one, the build of it in the feedstock's history. "index" means a newer
# commit of the feedstock held by the search index than its stored snapshot; "vllm-feedstock"
# means conda-forge's vllm 0.26.0 (0f0bf0b), whose CI solved that exact pin, needs it.
# docs/current-stack-research.md has the whole table.
NEWER_LEAVES = {
    "aiohttp": "3.14.4",  # aiohttp-feedstock 3166995 (index)
    "certifi": "2026.2.25",  # certifi-feedstock c0e425a
    "compressed-tensors": "0.17.0",  # vllm-feedstock 0f0bf0b pins ==0.17.0 (0.19.0: index 1f1302a)
    "fastapi": "0.136.3",  # fastapi-feedstock 6bcb90a (newest 0.138.2, 7421350)
    "filelock": "3.32.3",  # filelock-feedstock be329a0
    "huggingface_hub": "1.31.0",  # transformers 5.18.0 (index 09510b2) runs on >=1.31.0
    "jsonschema": "4.26.0",  # jsonschema-feedstock 534ba78
    "llguidance": "1.7.5",  # llguidance-feedstock f45e891
    "mcp": "1.28.1",  # mcp-feedstock e957ad0
    "mistral-common": "1.12.0",  # mistral-common-feedstock 06e69a6 (index; snapshot 1.11.7, ea7c37c)
    "multidict": "6.7.1",  # multidict-feedstock 55762c2
    "numba": "0.65.0",  # numba-feedstock 0cfe8ff (newest 0.65.1, 286a0d5)
    "nvtx": "0.2.15",  # nvtx-feedstock ba3d041
    "openai": "2.53.0",  # openai-feedstock 768a8ae
    "opencv": "4.13.0",  # opencv-feedstock 4.x branch (main builds 5.0.0, 1827a2e)
    "opentelemetry-api": "1.44.0",  # opentelemetry-sdk-feedstock a936177 pins ==1.44.0 (api b2c5529: 1.41.1)
    "opentelemetry-exporter-otlp": "1.44.0",  # opentelemetry-exporter-otlp-feedstock 2352e96
    "opentelemetry-sdk": "1.44.0",  # opentelemetry-sdk-feedstock a936177
    "opentelemetry-semantic-conventions-ai": "0.5.1",  # its feedstock e8c44a6
    "orjson": "3.12.0",  # orjson-feedstock 6dbbc3b
    "outlines-core": "0.2.14",  # outlines-core-feedstock 1a3f09b
    "pillow": "12.3.0",  # pillow-feedstock 0d69e2d (index)
    "prometheus-fastapi-instrumentator": "8.0.2",  # its feedstock 1761380
    "protobuf": "6.33.5",  # protobuf-feedstock v6.33.x f1926f1 (main builds 7.35.1, 02391eb)
    "requests": "2.33.1",  # requests-feedstock 4608c28
    "safetensors": "0.7.0",  # safetensors-feedstock 3b837e7
    "starlette": "1.3.0",  # starlette-feedstock 3460b2c
    "tokenizers": "0.23.1",  # tokenizers-feedstock 4f21125
    "transformers": "5.18.0",  # transformers-feedstock 09510b2 (index; snapshot 5.15.1, 6672ff1)
    "xgrammar": "0.2.2",  # xgrammar-feedstock 64e5bab
}
# vLLM 0.34.0's pins that conda-forge has no build of (recipe pin -> the pin as released), which
# patches 0020-0022 of its series bring down to conda-forge's builds and names (the
# tests in test_stacks.py and test_structural.py solve both).
RELEASED_0_34_0_PINS = {
    "xgrammar >=0.2.2,<0.3": "xgrammar ==0.2.8",
    "pillow >=12.3.0": "pillow >=13.0.0",
    "tokenizers >=0.23.1": "tokenizers >=0.23.3",
    "multidict >=6.7.1": "multidict >=6.9.1",
    "certifi >=2026.2.25": "certifi >=2026.10.19",
    "openai-harmony >=0.0.8": "oss-harmony >=0.0.11",
    # raised by 0.34.0
    "huggingface_hub >=1.31.0": "huggingface_hub >=2.0.0",
    "filelock >=3.32.3": "filelock >=4.2.4",
    "mistral-common >=1.12.0": "mistral-common >=1.13.0",
    "opentelemetry-api >=1.44.0": "opentelemetry-api >=1.45.1",
    "opentelemetry-sdk >=1.44.0": "opentelemetry-sdk >=1.45.1",
    "opentelemetry-exporter-otlp >=1.44.0": "opentelemetry-exporter-otlp >=1.45.1",
}
# What conda-forge's vllm 0.14.0 would need beyond pytorch and its kin.
STOCK_VLLM_LEAVES = ("aiohttp", "numba", "transformers", "xgrammar", "numpy", "regex")


def _hash(*parts: str) -> str:
    return "h" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:7]


def _nodot(version: str) -> str:
    return version.replace(".", "")


def _next_minor(version: str) -> str:
    major, minor = version.split(".")[:2]
    return f"{major}.{int(minor) + 1}"


def _python_pins(py: str) -> list[str]:
    return [f"python >={py},<{_next_minor(py)}.0a0", f"python_abi {py}.* *_cp{_nodot(py)}"]


def _cuda_version_pin(cuda: str) -> str:
    major = int(cuda.split(".")[0])
    return f"cuda-version >={cuda},<{major + 1}"


def _record(name: str, version: str, build: str, depends: list[str], **extra: Any) -> dict[str, Any]:
    number = int(build.rsplit("_", 1)[-1]) if build.rsplit("_", 1)[-1].isdigit() else 0
    record = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": number,
        "depends": depends,
        "constrains": extra.pop("constrains", []),
        "subdir": extra.pop("subdir", PLATFORM),
        "timestamp": STOCK_TIMESTAMP,
        "license": extra.pop("license", "BSD-3-Clause"),
    }
    record.update(extra)
    return record


def upstream_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    add = records.append
    for py, full in PYTHONS.items():
        abi = f"cp{_nodot(py)}"
        flavour = PYTHON_FLAVOURS.get(py, "cpython")
        build = f"{_hash('python', full)}_{'100' if py in PYTHON_FLAVOURS else '0'}_{flavour}"
        add(_record("python", full, build, [GLIBC], license="Python-2.0"))
        add(
            _record(
                "python_abi",
                py,
                f"8_{abi}",
                [],
                constrains=[f"python {py}.* *_{flavour}"],
                license="BSD-3-Clause",
            )
        )
    for cuda in CUDA_VERSIONS:
        major = cuda.split(".")[0]
        add(
            _record(
                "cuda-version",
                cuda,
                f"{_hash('cuda-version', cuda)}_3",
                [],
                constrains=[f"__cuda >={major}", f"cudatoolkit {cuda}|{cuda}.*"],
                subdir="noarch",
                noarch="generic",
                license="LicenseRef-NVIDIA-End-User-License-Agreement",
            )
        )
    for cuda, libs in CUDA_LIBS.items():
        for name, version in libs.items():
            pin = f"cuda-version >={cuda},<{_next_minor(cuda)}.0a0"
            add(
                _record(
                    name,
                    version,
                    f"{_hash(name, version)}_0",
                    [pin, GLIBC],
                    license="LicenseRef-NVIDIA-End-User-License-Agreement",
                )
            )
    records += _torch_family() + _tritons() + _torch_extensions() + _stock_vllm() + _leaves()
    return records


def _torch_family() -> list[dict[str, Any]]:
    records = []
    for version, triton in TORCH_TRITON.items():
        for cuda in TORCH_CUDA:
            tag = f"cuda{_nodot(cuda)}"
            cudart = CUDA_LIBS[cuda]["cuda-cudart"]
            cuda_deps = [
                _cuda_version_pin(cuda),
                f"cuda-cudart >={cudart},<{int(cuda.split('.')[0]) + 1}.0a0",
            ]
            libtorch_build = f"{tag}_generic_{_hash('libtorch', version, cuda)}_200"
            records.append(
                _record(
                    "libtorch",
                    version,
                    libtorch_build,
                    [*cuda_deps, GLIBC],
                    constrains=[
                        f"pytorch {version} {tag}_generic_*_200",
                        f"pytorch-gpu {version}",
                        "pytorch-cpu <0.0a0",
                    ],
                )
            )
            for py in PYTHONS:
                depends = [
                    f"libtorch {version} {libtorch_build}",
                    f"triton =={triton}",
                    "__cuda",
                    *_python_pins(py),
                    *cuda_deps,
                    GLIBC,
                    "filelock",
                    "fsspec",
                    "jinja2",
                    "networkx",
                    "nomkl",
                    "llvm-openmp",
                    "numpy",
                    "optree >=0.13.0",
                    "pybind11",
                    "setuptools",
                    "sympy >=1.13.3",
                    "typing_extensions >=4.10.0",
                ]
                build = f"{tag}_generic_py{_nodot(py)}_{_hash('pytorch', version, cuda, py)}_200"
                records.append(
                    _record(
                        "pytorch",
                        version,
                        build,
                        depends,
                        constrains=[f"pytorch-gpu {version}", "pytorch-cpu <0.0a0"],
                    )
                )
            gpu_build = f"{tag}_generic_{_hash('pytorch-gpu', version, cuda)}_200"
            records.append(
                _record("pytorch-gpu", version, gpu_build, [f"pytorch {version} cuda*_generic*200"])
            )
    return records


def _tritons() -> list[dict[str, Any]]:
    records = []
    for version in TRITONS:
        for cuda in TORCH_CUDA:
            libs = CUDA_LIBS[cuda]
            for py in PYTHONS:
                build = f"cuda{_nodot(cuda)}py{_nodot(py)}{_hash('triton', version, cuda, py)}_0"
                depends = [
                    *_python_pins(py),
                    "setuptools",
                    _cuda_version_pin(cuda),
                    f"cuda-nvcc-tools >={libs['cuda-nvcc-tools']}",
                    f"cuda-cuobjdump >={libs['cuda-cuobjdump']}",
                    f"cuda-cudart >={libs['cuda-cudart']}",
                    GLIBC,
                ]
                records.append(_record("triton", version, build, depends, license="MIT"))
    return records


def _torch_extensions() -> list[dict[str, Any]]:
    """torchvision and torchaudio: CUDA builds that take any CUDA pytorch of their minor."""
    records = []
    for name, releases, separator in (("torchvision", TORCHVISION, "_"), ("torchaudio", TORCHAUDIO, "")):
        for version, torch in releases.items():
            cuda = "12.9" if torch == "2.9.1" else "13.0"
            low = ".".join(torch.split(".")[:2])
            for py in PYTHONS:
                build = f"cuda{_nodot(cuda)}_py{_nodot(py)}{separator}{_hash(name, version, py)}_1"
                depends = [
                    "pytorch * cuda*",
                    f"pytorch >={torch},<{_next_minor(low)}.0a0",
                    f"libtorch >={torch},<{_next_minor(low)}.0a0",
                    *_python_pins(py),
                    _cuda_version_pin(cuda),
                    "numpy",
                    "pillow >=5.3.0,!=8.3.0,!=8.3.1" if name == "torchvision" else "numpy >=1.23",
                    GLIBC,
                ]
                records.append(_record(name, version, build, depends))
    return records


def _stock_vllm() -> list[dict[str, Any]]:
    records = [*_stock_vllm_0_26()]
    for cuda in TORCH_CUDA:
        for py in ("3.11", "3.12", "3.13"):
            build = f"cuda{_nodot(cuda)}_py{_nodot(py)}{_hash('vllm', cuda, py)}_0"
            depends = [
                "pytorch ==2.9.1 cuda*",
                "pytorch >=2.9.1,<2.10.0a0",
                "libtorch >=2.9.1,<2.10.0a0",
                "torchaudio ==2.9.1",
                "torchvision ==0.24.1",
                *_python_pins(py),
                _cuda_version_pin(cuda),
                GLIBC,
                *STOCK_VLLM_LEAVES,
            ]
            records.append(_record("vllm", "0.14.0", build, depends, license="Apache-2.0"))
    return records


def _stock_vllm_0_26() -> list[dict[str, Any]]:
    """conda-forge's newest vllm of late 2026: 0.26.0 on its pytorch 2.13.0, CUDA 12.9 only."""
    records = []
    for py in ("3.11", "3.12", "3.13"):
        build = f"cuda129_py{_nodot(py)}{_hash('vllm', '0.26.0', py)}_0"
        depends = [
            "pytorch ==2.13.0 cuda*",
            "libtorch >=2.13.0,<2.14.0a0",
            *_python_pins(py),
            _cuda_version_pin("12.9"),
            GLIBC,
            *STOCK_VLLM_LEAVES,
        ]
        records.append(_record("vllm", "0.26.0", build, depends, license="Apache-2.0"))
    return records


def _leaves() -> list[dict[str, Any]]:
    return [
        _record(name, version, "pyhd8ed1ab_0", ["python >=3.10"], subdir="noarch", noarch="python")
        for leaves in (LEAVES, NEWER_LEAVES)
        for name, version in leaves.items()
    ] + [
        # The BLAS switch that pytorch's `libblas * *mkl` selects.
        _record("libblas", "3.9.0", "35_h5875eb1_mkl", [GLIBC]),
    ]


def upstream_repodata() -> dict[str, dict[str, Any]]:
    repodata: dict[str, dict[str, Any]] = {
        subdir: {"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}}
        for subdir in (PLATFORM, "noarch")
    }
    for record in upstream_records():
        filename = f"{record['name']}-{record['version']}-{record['build']}.conda"
        packages = repodata[record["subdir"]]["packages.conda"]
        if filename in packages:
            raise ValueError(f"two fixture records share {filename}")
        packages[filename] = record
    return repodata


def write_upstream(directory: Path) -> Path:
    return write_channel(upstream_repodata(), directory)


if __name__ == "__main__":
    write_upstream(Path(sys.argv[1]) if len(sys.argv) > 1 else UPSTREAM)
