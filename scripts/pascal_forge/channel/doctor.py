"""`pascal-forge doctor`: does this channel serve this machine, and how to install from it.

The probe (NVML through ctypes, else nvidia-smi) only reads; `diagnose` decides from what
was read, so the decision is testable with recorded inputs from real machines. Standard
library only: it must run on a user's box before anything else is installed.
"""

from __future__ import annotations

import ctypes
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from ..pascal import (
    DRIVER_CUDA,
    LAST_PASCAL_BRANCH,
    LAST_PASCAL_DRIVER,
    LAST_PASCAL_DRIVER_CUDA,
    MIN_DRIVER_CUDA,
    PASCAL_MAJOR,
)
from ..util import version_key

SUPPORTED_MACHINES = ("x86_64", "amd64")
NVIDIA_SMI_QUERY = ("--query-gpu=index,name,compute_cap,driver_version", "--format=csv,noheader")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_capability: str


@dataclass(frozen=True)
class Hardware:
    """What the probe read: GPUs, driver and the CUDA version the driver supports."""

    gpus: tuple[Gpu, ...]
    driver_version: str | None
    cuda_driver_version: str | None
    machine: str
    source: str


@dataclass(frozen=True)
class Verdict:
    served: bool
    findings: tuple[str, ...]
    command: str | None
    # The CUDA build (cuda126/cuda129) a solver picks for this driver, when served.
    cuda_build: str | None = None
    warnings: tuple[str, ...] = field(default=())


def diagnose(hardware: Hardware, channel: str) -> Verdict:
    """Whether this channel's builds run on `hardware`, and the command that installs them."""
    findings: list[str] = []
    warnings: list[str] = []
    command = f"conda install --strict-channel-priority -c {channel} -c conda-forge vllm-pascal"
    if hardware.machine.lower() not in SUPPORTED_MACHINES:
        findings.append(f"this machine is {hardware.machine}; the channel has linux-64 (x86_64) builds only")
        return Verdict(False, tuple(findings), None)
    if not hardware.gpus:
        findings.append(
            "no NVIDIA GPU or driver was found (NVML and nvidia-smi gave nothing). To install for "
            f"another machine, set CONDA_OVERRIDE_CUDA to its driver's CUDA version: "
            f"CONDA_OVERRIDE_CUDA={LAST_PASCAL_DRIVER_CUDA} {command}"
        )
        return Verdict(False, tuple(findings), None)

    pascal = [g for g in hardware.gpus if _major(g.compute_capability) == PASCAL_MAJOR]
    newer = [g for g in hardware.gpus if _major(g.compute_capability) > PASCAL_MAJOR]
    older = [g for g in hardware.gpus if _major(g.compute_capability) < PASCAL_MAJOR]
    for gpu in hardware.gpus:
        findings.append(f"GPU {gpu.index}: {gpu.name}, compute capability {gpu.compute_capability}")
    if not pascal:
        if newer and not older:
            findings.append(
                "no Pascal GPU (6.x): stock builds already support these GPUs; use conda-forge's "
                "packages: conda install -c conda-forge vllm"
            )
        else:
            findings.append(
                "compute capability below 6.0 (Maxwell or older): CUDA 12 builds of pytorch and "
                "vLLM here carry sm_60/sm_61 code only; these GPUs are not served"
            )
        return Verdict(False, tuple(findings), None)
    if newer or older:
        visible = ",".join(str(g.index) for g in pascal)
        others = ", ".join(f"GPU {g.index} ({g.compute_capability})" for g in newer + older)
        warnings.append(
            f"{others} cannot run these builds; limit vLLM to the Pascal GPUs with "
            f"CUDA_VISIBLE_DEVICES={visible}"
        )
        if older:
            warnings.append(
                "solvers that read __cuda_arch see the smallest compute capability and refuse "
                f"these builds; install with CONDA_OVERRIDE_CUDA_ARCH={pascal[0].compute_capability}"
            )

    cuda = hardware.cuda_driver_version
    if cuda is None:
        findings.append(
            f"cannot tell which CUDA version driver {hardware.driver_version or '?'} supports; "
            f"these builds need CUDA {MIN_DRIVER_CUDA} or newer ({LAST_PASCAL_DRIVER} recommended)"
        )
        return Verdict(False, tuple(findings), None, warnings=tuple(warnings))
    if version_key(cuda) < version_key(MIN_DRIVER_CUDA):
        findings.append(
            f"driver {hardware.driver_version or '?'} supports CUDA {cuda}, older than the CUDA "
            f"{MIN_DRIVER_CUDA} these builds need: upgrade the NVIDIA driver to {LAST_PASCAL_DRIVER} "
            f"({LAST_PASCAL_BRANCH}.x), the last branch that supports Pascal"
        )
        return Verdict(False, tuple(findings), None, warnings=tuple(warnings))
    cuda_build = "cuda129" if version_key(cuda) >= (12, 9) else "cuda126"
    findings.append(
        f"driver {hardware.driver_version or '?'} supports CUDA {cuda}: this channel serves the "
        f"Pascal GPUs here; a solver picks the {cuda_build}_pascal builds"
    )
    return Verdict(True, tuple(findings), command, cuda_build=cuda_build, warnings=tuple(warnings))


def probe() -> Hardware:
    """Read the GPUs and driver through NVML, else nvidia-smi; empty when neither answers."""
    machine = platform.machine()
    found = _probe_nvml(machine)
    if found is None:
        found = _probe_nvidia_smi(machine)
    return found or Hardware(
        gpus=(), driver_version=None, cuda_driver_version=None, machine=machine, source="none"
    )


def parse_nvidia_smi(query_csv: str, banner: str, machine: str) -> Hardware:
    """Hardware from `nvidia-smi --query-gpu=index,name,compute_cap,driver_version
    --format=csv,noheader` and the plain `nvidia-smi` banner (which names the CUDA version)."""
    gpus = []
    driver = None
    for line in query_csv.splitlines():
        if not line.strip() or line.startswith("index"):
            continue
        # Split from both ends: a GPU name may hold a comma.
        index, rest = line.split(",", 1)
        name, capability, driver = (part.strip() for part in rest.rsplit(",", 2))
        gpus.append(Gpu(index=int(index), name=name, compute_capability=capability))
    match = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", banner)
    cuda = match.group(1) if match else _cuda_of_driver(driver)
    return Hardware(
        gpus=tuple(gpus),
        driver_version=driver,
        cuda_driver_version=cuda,
        machine=machine,
        source="nvidia-smi",
    )


def _probe_nvidia_smi(machine: str) -> Hardware | None:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        query = subprocess.run([executable, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=30)
        banner = subprocess.run([executable], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if query.returncode != 0:
        return None
    return parse_nvidia_smi(query.stdout, banner.stdout, machine)


def _probe_nvml(machine: str) -> Hardware | None:
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        text = ctypes.create_string_buffer(96)
        driver = text.value.decode() if nvml.nvmlSystemGetDriverVersion(text, 96) == 0 else None
        cuda_code = ctypes.c_int()
        cuda = None
        if nvml.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(cuda_code)) == 0:
            cuda = f"{cuda_code.value // 1000}.{cuda_code.value % 1000 // 10}"
        count = ctypes.c_uint()
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
        gpus = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            major, minor = ctypes.c_int(), ctypes.c_int()
            if nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0:
                continue
            if nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)) != 0:
                continue
            name = ctypes.create_string_buffer(96)
            nvml.nvmlDeviceGetName(handle, name, 96)
            gpus.append(
                Gpu(index=index, name=name.value.decode(), compute_capability=f"{major.value}.{minor.value}")
            )
        return Hardware(
            gpus=tuple(gpus), driver_version=driver, cuda_driver_version=cuda, machine=machine, source="nvml"
        )
    finally:
        nvml.nvmlShutdown()


def _cuda_of_driver(driver: str | None) -> str | None:
    if not driver:
        return None
    branch = int(driver.split(".")[0])
    known = [b for b in DRIVER_CUDA if b <= branch]
    return DRIVER_CUDA[max(known)] if known else None


def _major(capability: str) -> int:
    return int(capability.split(".")[0])
