"""The two stacks, solved for real: each installs whole, and no mix of them ever does.

The channel is the plan's own records (every package the recipes would build, with its real
pins), beside a conda-forge-shaped channel (support/solve.py) holding conda-forge's older
(pytorch 2.9.1/2.10.0, triton 3.5.1/3.6.0, vllm 0.14.0) and newer (pytorch 2.13.0, triton
3.7.1, vllm 0.26.0) builds of the same names.
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import support.expected as expect
from support.expected import SHIPPED_NAMES
from support.repo import RECIPES, VARIANT_CONFIG
from support.solve import RELEASED_0_34_0_PINS, UPSTREAM

from pascal_forge.channel.solve import SolveError, System, solve, write_channel
from pascal_forge.recipes.plan import make_plan
from pascal_forge.recipes.planned import planned_repodata

# Each stack's releases as a solution holds them (libtorch is its pytorch's).
SEED = {**asdict(expect.SEED), "libtorch": expect.SEED.pytorch}
CURRENT = {**asdict(expect.CURRENT), "libtorch": expect.CURRENT.pytorch}
SEED_SERIES = expect.SEED.vllm.rsplit(".", 1)[0]  # "0.14": what a user pins
PRIORITIES = ("strict", "flexible")
# A driver that reports CUDA 13.0 (R580, Pascal's last) must still get the CUDA 12.9 builds.
DRIVERS = {"12.6": "cuda126", "12.9": "cuda129", "13.0": "cuda129"}
# One release of each stack, asked for together.
MIXED = [
    [f"pytorch =={CURRENT['pytorch']}", f"triton =={SEED['triton']}"],
    [f"pytorch =={SEED['pytorch']}", f"triton =={CURRENT['triton']}"],
    [f"vllm =={SEED['vllm']}", f"pytorch =={CURRENT['pytorch']}"],
    [f"vllm =={CURRENT['vllm']}", f"pytorch =={SEED['pytorch']}"],
    [f"vllm-pascal =={SEED['vllm']}", f"triton =={CURRENT['triton']}"],
    [f"vllm =={CURRENT['vllm']}", f"torchvision =={SEED['torchvision']}"],
    [f"pytorch =={CURRENT['pytorch']}", f"torchaudio =={SEED['torchaudio']}"],
]


@pytest.fixture(scope="module")
def planned() -> dict[str, dict[str, Any]]:
    return planned_repodata(make_plan(RECIPES, VARIANT_CONFIG, Path("channel-not-built")))


@pytest.fixture(scope="module")
def ours(planned: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_channel(planned, tmp_path_factory.mktemp("ours")))


def _stack_of(solution, build_prefix: str) -> dict[str, str]:
    solution.check_consistent(SHIPPED_NAMES)
    found = {}
    for name in SEED:
        package = solution.get(name)
        assert package is not None and package.ours, (name, package)
        assert package.build.startswith(f"{build_prefix}_pascal_"), package.build
        found[name] = package.version
    return found


@pytest.mark.parametrize("priority", PRIORITIES)
@pytest.mark.parametrize("cuda", sorted(DRIVERS))
def test_vllm_pascal_installs_the_current_stack(ours: str, cuda: str, priority: str) -> None:
    solution = solve(
        ["vllm-pascal"], [ours, str(UPSTREAM)], System(cuda=cuda, cuda_arch="6.1"), priority=priority
    )
    assert _stack_of(solution, DRIVERS[cuda]) == CURRENT


@pytest.mark.parametrize("priority", PRIORITIES)
@pytest.mark.parametrize("spec", [f"vllm-pascal {SEED_SERIES}.*", f"vllm {SEED_SERIES}.*"])
def test_the_seed_stack_is_one_pin_away(ours: str, spec: str, priority: str) -> None:
    solution = solve([spec], [ours, str(UPSTREAM)], System(cuda="12.9", cuda_arch="6.1"), priority=priority)
    assert _stack_of(solution, "cuda129") == SEED


@pytest.mark.parametrize("python", expect.PYTHONS["seed"])
def test_pytorch_2_9_1_from_this_channel_brings_the_seed_triton(ours: str, python: str) -> None:
    specs = [f"pytorch =={SEED['pytorch']}", "vllm-pascal"]
    solution = solve(specs, [ours, str(UPSTREAM)], System(cuda="12.9"), python=python)
    assert _stack_of(solution, "cuda129") == SEED


@pytest.mark.parametrize("python", expect.PYTHONS["current"])
def test_every_python_of_the_current_stack_solves(ours: str, python: str) -> None:
    solution = solve(["vllm-pascal"], [ours, str(UPSTREAM)], System(cuda="12.9"), python=python)
    assert _stack_of(solution, "cuda129") == CURRENT
    assert solution.get("python").version.startswith(python)


def test_python_3_10_falls_back_to_the_seed_stack(ours: str) -> None:
    """The current stack starts at Python 3.11: on 3.10 the same command installs the seed stack."""
    solution = solve(["vllm-pascal"], [ours, str(UPSTREAM)], System(cuda="12.9"), python="3.10")
    assert _stack_of(solution, "cuda129") == SEED


@pytest.mark.parametrize("priority", [*PRIORITIES, "disabled"])
@pytest.mark.parametrize("specs", MIXED, ids=" + ".join)
def test_a_mixed_set_cannot_be_installed(ours: str, specs: list[str], priority: str) -> None:
    with pytest.raises(SolveError):
        solve(specs, [ours, str(UPSTREAM)], System(cuda="12.9", cuda_arch="6.1"), priority=priority)


def _without_version_pins(repodata: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Our records as a naive recipe would write them: `triton`, `pytorch` without version or build."""
    loose = copy.deepcopy(repodata)
    for content in loose.values():
        for record in content["packages.conda"].values():
            record["depends"] = [
                re.sub(r"^(triton|pytorch|libtorch) .*", r"\1", d) for d in record["depends"]
            ]
    return loose


@pytest.mark.parametrize("specs", MIXED[:2], ids=" + ".join)
def test_twin_without_the_pins_a_mixed_set_installs(
    planned: dict[str, dict[str, Any]], tmp_path: Path, specs: list[str]
) -> None:
    loose = str(write_channel(_without_version_pins(planned), tmp_path))
    solution = solve(specs, [loose, str(UPSTREAM)], System(cuda="12.9", cuda_arch="6.1"))
    assert solution.get("pytorch") is not None


def _without(repodata: dict[str, dict[str, Any]], names: set[str]) -> dict[str, dict[str, Any]]:
    kept = copy.deepcopy(repodata)
    for content in kept.values():
        content["packages.conda"] = {
            f: r for f, r in content["packages.conda"].items() if r["name"] not in names
        }
    return kept


def test_twin_without_our_torchvision_the_current_stack_stops_at_it(
    planned: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Before recipes/torchvision, the solver's reason was the CUDA 13-only torchvision 0.29.0
    (conda-forge's newest is 0.28.0, PyPI's are CUDA 13 builds, as the fixture's are)."""
    channel = str(write_channel(_without(planned, {"torchvision", "torchaudio"}), tmp_path))
    with pytest.raises(SolveError, match=r"torchvision ==0\.29\.0"):
        solve(["vllm-pascal 0.34.*"], [channel, str(UPSTREAM)], System(cuda="12.9", cuda_arch="6.1"))


@pytest.mark.parametrize("priority", PRIORITIES)
def test_a_user_asking_for_torchvision_gets_ours(ours: str, priority: str) -> None:
    """conda-forge's torchvision 0.24.1 takes any CUDA pytorch 2.9: our pytorch keeps it out."""
    solution = solve(
        ["pytorch ==2.9.1", "torchvision"], [ours, str(UPSTREAM)], System(cuda="12.9"), priority=priority
    )
    assert solution.get("torchvision").ours, solution.get("torchvision")


def _current_vllm_with(
    repodata: dict[str, dict[str, Any]], replace: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Our records with the pins in `replace` swapped in vLLM 0.34.0's run list."""
    changed = copy.deepcopy(repodata)
    for content in changed.values():
        for record in content["packages.conda"].values():
            if record["name"] == "vllm" and record["version"] == "0.34.0":
                assert set(replace) <= set(record["depends"]), set(replace) - set(record["depends"])
                record["depends"] = [replace.get(d, d) for d in record["depends"]]
    return changed


def test_current_vllm_run_pins_solve_on_conda_forge_records(ours: str) -> None:
    """Every run pin of vLLM 0.34.0 is met by conda-forge's real versions or by our own builds."""
    solution = solve(["vllm ==0.34.0"], [ours, str(UPSTREAM)], System(cuda="12.9", cuda_arch="6.1"))
    assert solution.get("vllm").version == "0.34.0"
    assert solution.get("xgrammar").version == "0.2.2"
    assert solution.get("openai-harmony").version == "0.0.8"


@pytest.mark.parametrize("pin", RELEASED_0_34_0_PINS)
def test_twin_a_pin_as_vllm_releases_it_does_not_solve(
    planned: dict[str, dict[str, Any]], tmp_path: Path, pin: str
) -> None:
    released = RELEASED_0_34_0_PINS[pin]
    channel = str(write_channel(_current_vllm_with(planned, {pin: released}), tmp_path))
    with pytest.raises(SolveError, match=released.split()[0]):
        solve(["vllm ==0.34.0"], [channel, str(UPSTREAM)], System(cuda="12.9", cuda_arch="6.1"))
