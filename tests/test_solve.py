"""Real solves (py-rattler) of our planned records against a conda-forge-shaped upstream."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import support.expected as expect
import yaml
from rattler import (
    Channel,
    MatchSpec,
    PrefixPaths,
    PrefixRecord,
    RepoData,
    RepoDataRecord,
    Version,
    VersionSpec,
)
from support.expected import SHIPPED_NAMES
from support.repo import RECIPES, VARIANT_CONFIG
from support.solve import UPSTREAM, upstream_repodata

from pascal_forge.channel.ours import OUR_BUILD_MARK
from pascal_forge.channel.solve import (
    MixedSetError,
    Resolved,
    Solution,
    SolveError,
    System,
    requirements_without_conda_package,
    solve,
    unmet_requirements,
    write_channel,
)
from pascal_forge.cli import main
from pascal_forge.pascal import MIN_DRIVER_CUDA
from pascal_forge.recipes.patches import (
    apply_series,
    patch_check_target,
    recipe_patch_series,
    unpack_artifact,
)
from pascal_forge.recipes.plan import make_plan
from pascal_forge.recipes.planned import declared_python_versions, planned_repodata
from pascal_forge.recipes.recipe import Recipe, shipped_names

PASCAL = "6.1"
DRIVERS = ("12.6", "12.9", "13.0")
# The CUDA build a solver must pick for each driver: our builds carry `__cuda >=<their CUDA>`.
EXPECTED_BUILD = {"12.6": "cuda126", "12.9": "cuda129", "13.0": "cuda129"}
# pip evaluates markers for the installing machine: linux-64 with the Python of the env.
LINUX_312 = {"platform_machine": "x86_64", "sys_platform": "linux", "python_version": "3.12"}
# vLLM 0.14.0 requirement lines with no conda package in our vllm run list. None serves Pascal
# (FlashInfer needs sm_75; gRPC and SageMaker entrypoints; Ray for multi-node); patches 0010 and
# 0011 of the vllm recipe drop them from vLLM's metadata, or `pip check` fails on them.
STOCK_PIP_CHECK_GAPS = {
    "flashinfer-python==0.5.3",
    "grpcio>=1.76.0",
    "grpcio-reflection>=1.76.0",
    "model-hosting-container-standards >= 0.1.10, < 1.0.0",
    "ray[cgraph]>=2.48.0",
    # conda-forge's ninja installs the program without Python metadata (patch 0013).
    "ninja",
}


@pytest.fixture(scope="module")
def planned() -> dict[str, dict[str, Any]]:
    return planned_repodata(make_plan(RECIPES, VARIANT_CONFIG, Path("channel-not-built")))


@pytest.fixture(scope="module")
def ours(planned: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_channel(planned, tmp_path_factory.mktemp("ours")))


@pytest.fixture(scope="module")
def stock_env() -> list[RepoDataRecord]:
    """An environment that already holds conda-forge's pytorch 2.9.1, triton 3.5.1, torchvision."""
    solution = solve(["pytorch ==2.9.1", "torchvision"], [str(UPSTREAM)], System(cuda="12.9"), python="3.12")
    assert solution.get("pytorch").build.startswith("cuda129_generic_")
    return list(solution.records)


def _assert_all_ours(solution: Solution, expected_cuda: str) -> None:
    solution.check_consistent(SHIPPED_NAMES)
    for name in ("vllm", "pytorch", "libtorch", "triton"):
        package = solution.get(name)
        assert package is not None, f"{name} missing from the solution"
        assert package.ours, f"{name} {package.build} comes from {package.channel}"
        assert package.build.startswith(f"{expected_cuda}{OUR_BUILD_MARK}"), package.build


def test_committed_fixture_matches_its_data(tmp_path: Path) -> None:
    for subdir, content in upstream_repodata().items():
        committed = json.loads((UPSTREAM / subdir / "repodata.json").read_text())
        assert committed == json.loads(json.dumps(content)), f"run `python tests/support/solve.py` ({subdir})"


def test_fixture_provides_every_name_our_records_need(planned: dict[str, dict[str, Any]]) -> None:
    available = {
        r["name"]
        for content in (*planned.values(), *upstream_repodata().values())
        for r in content["packages.conda"].values()
    }
    needed = {
        spec.split()[0]
        for content in planned.values()
        for record in content["packages.conda"].values()
        for spec in record["depends"]
    }
    assert needed - available == set(), "add these names to LEAVES in tests/support/solve.py"


@pytest.mark.parametrize("priority", ["strict", "flexible"])
@pytest.mark.parametrize("cuda", DRIVERS)
@pytest.mark.parametrize("spec", ["vllm-pascal", "vllm"])
def test_install_ends_on_our_builds_only(ours: str, spec: str, cuda: str, priority: str) -> None:
    """`conda install -c ours -c conda-forge vllm-pascal` and `conda install -c pascal vllm`."""
    solution = solve(
        [spec], [ours, str(UPSTREAM)], System(cuda=cuda, cuda_arch=PASCAL), priority=priority, python="3.12"
    )
    _assert_all_ours(solution, EXPECTED_BUILD[cuda])
    # The stock builds that would otherwise fit this driver exist upstream.
    if cuda == "13.0":
        assert solution.get("cuda-version").version.startswith("12.")


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12", "3.13"])
def test_every_python_of_the_matrix_solves(ours: str, python: str) -> None:
    solution = solve(["vllm-pascal"], [ours, str(UPSTREAM)], System(cuda="12.9"), python=python)
    _assert_all_ours(solution, "cuda129")
    assert solution.get("python").version.startswith(python)


@pytest.mark.parametrize("cuda", DRIVERS)
def test_priority_disabled_never_mixes(ours: str, cuda: str) -> None:
    """Without channel priority `vllm` may end all-stock (newer records), never half and half."""
    system = System(cuda=cuda, cuda_arch=PASCAL)
    _assert_all_ours(
        solve(["vllm-pascal"], [ours, str(UPSTREAM)], system, priority="disabled", python="3.12"),
        EXPECTED_BUILD[cuda],
    )
    solution = solve(["vllm"], [ours, str(UPSTREAM)], system, priority="disabled", python="3.12")
    assert solution.problems(SHIPPED_NAMES) == []


@pytest.mark.parametrize("priority", ["strict", "flexible"])
def test_stock_pytorch_moves_to_ours_in_one_solve(
    ours: str, stock_env: list[RepoDataRecord], priority: str
) -> None:
    # The stock environment is conda-forge's 2.9 family, so the seed stack replaces it.
    solution = solve(
        ["vllm-pascal 0.14.*"],
        [ours, str(UPSTREAM)],
        System(cuda="12.9", cuda_arch=PASCAL),
        priority=priority,
        installed=stock_env,
        python="3.12",
    )
    _assert_all_ours(solution, "cuda129")
    before = {r.name.normalized: str(r.build) for r in stock_env}
    assert before["pytorch"].startswith("cuda129_generic_")
    # torchvision moves too: vllm pins ours, and our pytorch refuses conda-forge's.
    assert solution.get("torchvision").build.startswith("cuda129_pascal_"), before["torchvision"]


@pytest.mark.parametrize("priority", ["strict", "flexible"])
def test_asking_for_our_pytorch_moves_an_installed_stock_torchvision_to_ours(
    ours: str, stock_env: list[RepoDataRecord], priority: str
) -> None:
    solution = solve(
        ["pytorch ==2.9.1 cuda129_pascal_*", "torchvision"],
        [ours, str(UPSTREAM)],
        System(cuda="12.9", cuda_arch=PASCAL),
        priority=priority,
        installed=stock_env,
        python="3.12",
    )
    assert solution.get("torchvision").build.startswith("cuda129_pascal_"), solution.get("torchvision")


def test_twin_without_pytorchs_torchvision_constraint_the_stock_torchvision_stays(
    planned: dict[str, dict[str, Any]], stock_env: list[RepoDataRecord], tmp_path: Path
) -> None:
    loose = copy.deepcopy(planned)
    for content in loose.values():
        for record in content["packages.conda"].values():
            record["constrains"] = [c for c in record["constrains"] if not c.startswith("torchvision ")]
    solution = solve(
        ["pytorch ==2.9.1 cuda129_pascal_*", "torchvision"],
        [str(write_channel(loose, tmp_path)), str(UPSTREAM)],
        System(cuda="12.9", cuda_arch=PASCAL),
        priority="flexible",
        installed=stock_env,
        python="3.12",
    )
    stock = {r.name.normalized: str(r.build) for r in stock_env}["torchvision"]
    assert solution.get("torchvision").build == stock


def test_cli_changes_a_stock_environment_in_one_transaction(
    stock_env: list[RepoDataRecord], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real conda-meta/ of the stock environment: `solve --prefix` reads it and replaces in place."""
    meta = tmp_path / "env" / "conda-meta"
    meta.mkdir(parents=True)
    for record in stock_env:
        asked = {"pytorch": ["pytorch ==2.9.1"], "torchvision": ["torchvision"]}.get(record.name.normalized)
        prefix_record = PrefixRecord(record, PrefixPaths(), requested_specs=asked)
        prefix_record.write_to_path(
            meta / f"{record.name.normalized}-{record.version}-{record.build}.json", True
        )
    args = [
        "solve",
        "vllm-pascal",
        "--planned",
        "--channel",
        str(UPSTREAM),
        "--cuda",
        "12.9",
        "--python",
        "3.12",
    ]
    assert main([*args, "--prefix", str(tmp_path / "env")]) == 0
    changes = [line for line in capsys.readouterr().out.splitlines() if line[:2] in {"+ ", "- ", "~ "}]
    replaced = {line.split()[1]: line for line in changes if line.startswith("~ ")}
    assert {"pytorch", "libtorch", "triton"} <= replaced.keys()
    assert replaced["pytorch"].endswith("_200") and "-> 2.9.1 cuda129_pascal_py312_" in replaced["pytorch"]
    # Dependencies only stock pytorch needed (nomkl, optree ...) may go; nothing the user asked for,
    # and no member of the family, is removed without its replacement.
    removed = {line.split()[1] for line in changes if line.startswith("- ")}
    assert not removed & {*SHIPPED_NAMES, "python"}, removed


def _without_family_constraints(repodata: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    broken = copy.deepcopy(repodata)
    for content in broken.values():
        for record in content["packages.conda"].values():
            record["constrains"] = [c for c in record["constrains"] if c.split()[0] not in SHIPPED_NAMES]
    return broken


def test_check_catches_stock_vllm_on_our_pytorch(planned: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Twin of the tests above: conda-forge's vllm pins `pytorch ==2.9.1 cuda*`, which our build
    string matches. Without our packages' `vllm * *_pascal_*` constraints a solver puts that stock
    vllm on our pytorch, and the consistency check must say so."""
    broken = str(write_channel(_without_family_constraints(planned), tmp_path))
    solution = solve(
        ["vllm 0.14.*"],
        [broken, str(UPSTREAM)],
        System(cuda="12.9", cuda_arch=PASCAL),
        priority="disabled",
        python="3.12",
    )
    assert solution.get("vllm").ours is False and solution.get("pytorch").ours is True
    with pytest.raises(MixedSetError, match=r"vllm 0\.14\.0 cuda129_py312h\w+_0 from .* stock build"):
        solution.check_consistent(SHIPPED_NAMES)


def test_the_family_we_ship_is_read_from_the_recipes_outputs() -> None:
    assert shipped_names(RECIPES) == SHIPPED_NAMES


def test_a_stock_torchvision_beside_our_pytorch_is_flagged() -> None:
    """torchvision's C++ ops link the torch they were built against: conda-forge's beside our
    pytorch is a mixed set. Twin: the hand-written family solve.py held until 2026-12-07 lacked
    torchvision and torchaudio, and passed this set."""
    ours = "cuda129_pascal_py312h0123abc_0"
    solution = Solution(
        packages=(
            Resolved("pytorch", "2.14.0", ours, "pascal", ours=True),
            Resolved("torchvision", "0.29.0", "cuda129_py312h4567def_0", "conda-forge", ours=False),
        ),
        records=(),
    )
    problems = solution.problems(shipped_names(RECIPES))
    stock = "torchvision 0.29.0 cuda129_py312h4567def_0 from conda-forge"
    assert problems == [f"{stock} is a stock build next to our patched set"]
    drifted = ("triton", "libtorch", "pytorch", "pytorch-gpu", "vllm", "vllm-pascal")
    assert solution.problems(drifted) == []


def _stock_family() -> list[RepoDataRecord]:
    channel = Channel(str(UPSTREAM))
    records = RepoData.from_path(UPSTREAM / "linux-64" / "repodata.json").into_repo_data(channel)
    return [r for r in records if r.name.normalized in SHIPPED_NAMES]


def _family_pins(planned: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(
        {
            spec
            for record in planned["linux-64"]["packages.conda"].values()
            for spec in record["depends"] + record["constrains"]
            if spec.split()[0] in SHIPPED_NAMES and spec.split()[0] != "libtorch"
        }
    )


def test_no_stock_build_matches_our_pins(planned: dict[str, dict[str, Any]]) -> None:
    stock = _stock_family()
    assert {r.name.normalized for r in stock} >= {"pytorch", "triton", "vllm", "libtorch", "pytorch-gpu"}
    pins = _family_pins(planned)
    assert pins, "our records pin nothing of the family"
    for pin in pins:
        matching = [f"{r.name.normalized} {r.build}" for r in stock if MatchSpec(pin).matches(r)]
        assert matching == [], f"{pin} lets stock builds in"


def test_a_version_only_pin_lets_stock_builds_in() -> None:
    """Twin: the pin as a naive recipe writes it, `pytorch ==2.9.1`, matches conda-forge's builds."""
    stock = _stock_family()
    assert any(MatchSpec("pytorch ==2.9.1").matches(r) for r in stock)
    assert any(MatchSpec("triton ==3.6.0").matches(r) for r in stock)
    assert not any(MatchSpec(f"pytorch ==2.9.1 *{OUR_BUILD_MARK}*").matches(r) for r in stock)


def test_conda_forge_build_strings_cannot_carry_our_mark() -> None:
    """conda-forge's strings are fixed tokens plus h<7 hex>; "pascal" holds non-hex letters."""
    for record in _stock_family():
        tokens = str(record.build).replace("py", "_py").split("_")
        assert OUR_BUILD_MARK.strip("_") not in tokens, record.build
        assert OUR_BUILD_MARK not in str(record.build)
    assert not set("psl") & set("0123456789abcdef")


def test_driver_too_old_gets_a_message(ours: str) -> None:
    with pytest.raises(
        SolveError, match=r"supports CUDA 12\.4, our builds need 12\.6 or newer: upgrade .* R580"
    ):
        solve(["vllm-pascal"], [ours, str(UPSTREAM)], System(cuda="12.4", cuda_arch=PASCAL), python="3.12")


def test_minimum_driver_cuda_is_our_oldest_build() -> None:
    config = yaml.safe_load(VARIANT_CONFIG.read_text())
    oldest = min(config["cuda_compiler_version"], key=lambda v: tuple(int(p) for p in v.split(".")))
    assert oldest == MIN_DRIVER_CUDA


def test_newer_gpu_is_refused_and_falls_back_to_stock(ours: str) -> None:
    turing = System(cuda="12.9", cuda_arch="7.5")
    with pytest.raises(SolveError, match=r"compute capability is 7\.5; this channel serves Pascal"):
        solve(["vllm-pascal"], [ours, str(UPSTREAM)], turing, python="3.12")
    solution = solve(["vllm"], [ours, str(UPSTREAM)], turing, priority="flexible", python="3.12")
    assert not any(p.ours for p in solution.packages)


def test_cuda_arch_constraint_agrees_with_cuda_arch_list(planned: dict[str, dict[str, Any]]) -> None:
    arch_list = yaml.safe_load(VARIANT_CONFIG.read_text())["cuda_arch_list"][0].split(";")
    constraints = {
        c.split(" ", 1)[1]
        for record in planned["linux-64"]["packages.conda"].values()
        for c in record["constrains"]
        if c.startswith("__cuda_arch ")
    }
    assert len(constraints) == 1, constraints
    spec = VersionSpec(constraints.pop())
    assert all(spec.matches(Version(arch)) for arch in arch_list)
    # sm_6x code runs on 6.x only: not on Volta and newer, not on Maxwell.
    assert not any(spec.matches(Version(v)) for v in ("5.2", "7.0", "7.5", "8.6"))


def test_cli_solve_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "solve",
        "vllm-pascal",
        "--planned",
        "--channel",
        str(UPSTREAM),
        "--cuda",
        "13.0",
        "--cuda-arch",
        PASCAL,
    ]
    assert main([*args, "--python", "3.12", "--json"]) == 0
    packages = json.loads(capsys.readouterr().out)
    assert set(packages[0]) == {"name", "version", "build", "channel"}
    family = {p["name"]: p for p in packages if p["name"] in SHIPPED_NAMES}
    assert set(family) == set(SHIPPED_NAMES)
    assert all(OUR_BUILD_MARK in p["build"] and p["channel"] != str(UPSTREAM) for p in family.values())


@pytest.fixture(scope="module")
def vllm_trees(upstream_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The seed stack's vLLM sdist as released, and with the vllm recipe's patch series applied."""
    recipe = Recipe(name="vllm", directory=RECIPES / "vllm")
    target = patch_check_target(recipe, expect.SEED.vllm)
    assert target is not None
    stock = unpack_artifact(target, tmp_path_factory.mktemp("stock"), upstream_cache)
    patched = unpack_artifact(target, tmp_path_factory.mktemp("patched"), upstream_cache)
    apply_series(recipe_patch_series(recipe, VARIANT_CONFIG, expect.SEED.vllm), patched, target.path_map)
    return stock, patched


def _vllm_requirement_lines(tree: Path) -> list[str]:
    """requirements/cuda.txt with its `-r` includes, as vLLM's setup.py reads them."""

    def read(name: str) -> list[str]:
        lines = []
        for line in (tree / "requirements" / name).read_text().splitlines():
            lines += read(line.split()[1]) if line.startswith("-r ") else [line]
        return lines

    return read("cuda.txt")


def test_our_versions_satisfy_vllm_requirements(vllm_trees: tuple[Path, Path]) -> None:
    lines = _vllm_requirement_lines(vllm_trees[0])
    seed = make_plan(
        RECIPES, VARIANT_CONFIG, Path("channel-not-built"), overrides={"vllm_version": expect.SEED.vllm}
    )
    declared = declared_python_versions(seed)
    assert declared == {"torch": expect.SEED.pytorch, "triton": expect.SEED.triton, "vllm": expect.SEED.vllm}
    assert any(line.startswith(f"torch=={expect.SEED.pytorch}") for line in lines)
    assert unmet_requirements(lines, declared, LINUX_312) == []
    # torchvision/torchaudio come from conda-forge at the versions our vllm recipe pins.
    others = {"torchvision": expect.SEED.torchvision, "torchaudio": expect.SEED.torchaudio}
    assert unmet_requirements(lines, others, LINUX_312) == []


def test_a_git_version_of_torch_fails_vllm_requirements(vllm_trees: tuple[Path, Path]) -> None:
    """Twin: the hand-built wheel's `2.9.1a0+gitd38164a` made pip complain; the check must too."""
    lines = _vllm_requirement_lines(vllm_trees[0])
    unmet = unmet_requirements(lines, {"torch": "2.9.1a0+gitd38164a", "triton": "3.6.0"}, LINUX_312)
    assert unmet == ["torch==2.9.1 (our build reports torch 2.9.1a0+gitd38164a)"]


def _as_built(lines: list[str]) -> list[str]:
    """What vLLM's metadata keeps after the build's use_existing_torch.py: no line naming torch."""
    return [line for line in lines if "torch" not in line.lower()]


def _vllm_run_specs(planned: dict[str, dict[str, Any]]) -> list[str]:
    return next(
        r["depends"]
        for r in planned["linux-64"]["packages.conda"].values()
        if r["name"] == "vllm" and r["version"] == expect.SEED.vllm
    )


def test_every_requirement_of_the_patched_vllm_has_a_conda_package(
    planned: dict[str, dict[str, Any]], vllm_trees: tuple[Path, Path]
) -> None:
    """pip check in an installed environment is clean: no line lacks a conda package."""
    lines = _as_built(_vllm_requirement_lines(vllm_trees[1]))
    assert requirements_without_conda_package(lines, _vllm_run_specs(planned), LINUX_312) == []


def test_the_released_requirements_would_fail_pip_check(
    planned: dict[str, dict[str, Any]], vllm_trees: tuple[Path, Path]
) -> None:
    """Twin: without patches 0010, 0011 and 0013 exactly these lines have no conda package."""
    lines = _as_built(_vllm_requirement_lines(vllm_trees[0]))
    missing = requirements_without_conda_package(lines, _vllm_run_specs(planned), LINUX_312)
    assert set(missing) == STOCK_PIP_CHECK_GAPS


def test_a_dropped_run_dependency_shows_up_as_a_pip_check_gap(
    planned: dict[str, dict[str, Any]], vllm_trees: tuple[Path, Path]
) -> None:
    lines = _as_built(_vllm_requirement_lines(vllm_trees[1]))
    specs = [s for s in _vllm_run_specs(planned) if not s.startswith(("numpy", "opencv"))]
    missing = set(requirements_without_conda_package(lines, specs, LINUX_312))
    assert missing == {"numpy", "opencv-python-headless >= 4.11.0"}


def test_cli_refuses_an_unbuilt_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", "vllm-pascal", "--ours", str(tmp_path), "--cuda", "12.9"]) == 2
    assert "holds no indexed channel: build it first, or pass --planned" in capsys.readouterr().err


def test_a_conda_package_without_python_metadata_does_not_satisfy_pip_check() -> None:
    """Item 7 of the first real build: the old recipe listed ninja as a run dependency and vLLM
    listed it as a requirement, and `pip check` still failed: conda-forge's ninja is the program
    alone. The requirement line must go (patch 0013), not be matched by a conda package."""
    assert requirements_without_conda_package(["ninja"], ["ninja", "numpy"], LINUX_312) == ["ninja"]
    assert requirements_without_conda_package(["numpy"], ["ninja", "numpy"], LINUX_312) == []
