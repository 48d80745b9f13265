"""`pascal-forge doctor`: the nvidia-smi parser on real output, the decision on recorded machines,
and the decision checked against what the real solver does for the same machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.expected import SHIPPED_NAMES
from support.repo import RECIPES, VARIANT_CONFIG
from support.solve import UPSTREAM

from pascal_forge.channel.doctor import Gpu, Hardware, diagnose, parse_nvidia_smi, probe
from pascal_forge.channel.solve import SolveError, System, solve, write_channel
from pascal_forge.recipes.plan import make_plan
from pascal_forge.recipes.planned import planned_repodata

# Captured with `nvidia-smi` on an H100 host running the R580 driver (the GPU-less CI has none).
H100 = Path(__file__).resolve().parent / "fixtures" / "nvidia-smi" / "h100-r580"


def _machine(*gpus: tuple[str, str], driver: str | None, cuda: str | None, arch: str = "x86_64") -> Hardware:
    return Hardware(
        gpus=tuple(Gpu(index=i, name=name, compute_capability=cc) for i, (name, cc) in enumerate(gpus)),
        driver_version=driver,
        cuda_driver_version=cuda,
        machine=arch,
        source="recorded",
    )


P40_R580 = _machine(("Tesla P40", "6.1"), ("Tesla P40", "6.1"), driver="580.95.05", cuda="13.0")
P100_R560 = _machine(("Tesla P100-PCIE-16GB", "6.0"), driver="560.35.03", cuda="12.6")
P40_R550 = _machine(("Tesla P40", "6.1"), driver="550.127.05", cuda="12.4")
GTX1080_RTX3090 = _machine(
    ("NVIDIA GeForce GTX 1080", "6.1"), ("NVIDIA GeForce RTX 3090", "8.6"), driver="575.64.03", cuda="12.9"
)
TITAN_X_MAXWELL = _machine(("NVIDIA GeForce GTX TITAN X", "5.2"), driver="580.95.05", cuda="13.0")
JETSON_TX2 = _machine(("NVIDIA Tegra X2", "6.2"), driver="540.4.0", cuda="12.6", arch="aarch64")
NO_GPU = _machine(driver=None, cuda=None)


def test_parses_real_nvidia_smi_output() -> None:
    hardware = parse_nvidia_smi((H100 / "query.csv").read_text(), (H100 / "banner.txt").read_text(), "x86_64")
    assert hardware.gpus == (Gpu(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0"),)
    assert hardware.driver_version == "580.159.04"
    assert hardware.cuda_driver_version == "13.0"


def test_header_line_is_skipped_and_cuda_falls_back_to_the_driver_branch() -> None:
    hardware = parse_nvidia_smi((H100 / "query_with_header.csv").read_text(), "", "x86_64")
    assert [g.compute_capability for g in hardware.gpus] == ["9.0"]
    assert hardware.cuda_driver_version == "13.0"


def test_h100_is_sent_to_stock_packages() -> None:
    hardware = parse_nvidia_smi((H100 / "query.csv").read_text(), (H100 / "banner.txt").read_text(), "x86_64")
    verdict = diagnose(hardware, "pascal")
    assert not verdict.served and verdict.command is None
    assert "conda install -c conda-forge vllm" in verdict.findings[-1]


def test_p40_on_the_last_pascal_driver_is_served() -> None:
    verdict = diagnose(P40_R580, "https://example.invalid/pascal")
    assert verdict.served and verdict.cuda_build == "cuda129"
    assert verdict.command == (
        "conda install --strict-channel-priority -c https://example.invalid/pascal -c conda-forge vllm-pascal"
    )


def test_p100_on_r560_gets_the_cuda126_builds() -> None:
    verdict = diagnose(P100_R560, "pascal")
    assert verdict.served and verdict.cuda_build == "cuda126"


def test_driver_too_old_is_told_to_upgrade() -> None:
    verdict = diagnose(P40_R550, "pascal")
    assert not verdict.served
    assert "supports CUDA 12.4, older than the CUDA 12.6 these builds need: upgrade" in verdict.findings[-1]
    assert "R580" in verdict.findings[-1]


def test_mixed_machine_is_served_with_a_device_warning() -> None:
    verdict = diagnose(GTX1080_RTX3090, "pascal")
    assert verdict.served
    assert verdict.warnings == (
        "GPU 1 (8.6) cannot run these builds; limit vLLM to the Pascal GPUs with CUDA_VISIBLE_DEVICES=0",
    )


@pytest.mark.parametrize(
    ("hardware", "reason"),
    [
        (TITAN_X_MAXWELL, "below 6.0"),
        (JETSON_TX2, "linux-64 (x86_64) builds only"),
        (NO_GPU, "CONDA_OVERRIDE_CUDA=13.0 conda install"),
    ],
)
def test_machines_this_channel_does_not_serve(hardware: Hardware, reason: str) -> None:
    verdict = diagnose(hardware, "pascal")
    assert not verdict.served and verdict.command is None
    assert reason in " ".join(verdict.findings)


def test_probe_reads_this_machine() -> None:
    hardware = probe()
    assert hardware.source in {"nvml", "nvidia-smi", "none"}
    if hardware.source == "none":
        assert hardware.gpus == () and not diagnose(hardware, "pascal").served


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> str:
    plan = make_plan(RECIPES, VARIANT_CONFIG, Path("channel-not-built"))
    return str(write_channel(planned_repodata(plan), tmp_path_factory.mktemp("ours")))


@pytest.mark.parametrize("hardware", [P40_R580, P100_R560, P40_R550, GTX1080_RTX3090, TITAN_X_MAXWELL])
def test_doctor_agrees_with_the_solver(ours: str, hardware: Hardware) -> None:
    """What doctor promises is what `conda install` would do on that machine (strict priority)."""
    verdict = diagnose(hardware, "pascal")
    system = System(
        cuda=hardware.cuda_driver_version, cuda_arch=min(g.compute_capability for g in hardware.gpus)
    )
    if verdict.served:
        solution = solve(["vllm-pascal"], [ours, str(UPSTREAM)], system, python="3.12")
        solution.check_consistent(SHIPPED_NAMES)
        assert solution.get("vllm").build.startswith(f"{verdict.cuda_build}_pascal_")
    else:
        with pytest.raises(SolveError):
            solve(["vllm-pascal"], [ours, str(UPSTREAM)], system, python="3.12")
