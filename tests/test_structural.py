"""The structural build: every output of every variant of the real recipes, built for real.

rattler-build builds the real recipe.yaml files (sources and build scripts swapped for stubs,
see support/structural.py) against a conda-forge-shaped stub channel, through `pascal-forge
build`; then rattler solves and installs `vllm-pascal` from the result. The tests read what
the packages carry, the way a first real build would find out, hours later.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import support.expected as expect
import yaml
from rattler_build import ToolConfiguration
from support.build import install_from
from support.repo import RECIPES, VARIANT_CONFIG
from support.solve import RELEASED_0_34_0_PINS
from support.structural import STUB_DISK_GIB, SUBDIR, script_runs, structural_recipes, stub_channel

from pascal_forge.build.engine import _for_this_variant
from pascal_forge.build.preflight import disk_needs
from pascal_forge.channel.solve import SolveError, System, solve
from pascal_forge.cli import main
from pascal_forge.recipes.plan import Plan, make_plan

STACKS = {
    name: {
        **asdict(stack),
        "pythons": expect.PYTHONS[name],
        "python_independent": expect.PYTHON_INDEPENDENT[name],
    }
    for name, stack in expect.STACKS.items()
}
CUDAS = ("12.6", "12.9")


class Structural:
    """The results of one structural build, shared by the tests of this module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "runs.log"
        self.recipes = structural_recipes(RECIPES, root / "recipes", self.log)
        self.plan: Plan = make_plan(self.recipes, VARIANT_CONFIG, root / "channel")
        self.stub = stub_channel(root / "stub", [self.plan])
        self.channel = root / "channel"

    def records(self) -> dict[str, dict[str, Any]]:
        data = json.loads((self.channel / SUBDIR / "repodata.json").read_text())
        return {**data.get("packages", {}), **data.get("packages.conda", {})}


@pytest.fixture(scope="module")
def structural(tmp_path_factory: pytest.TempPathFactory) -> Structural:
    built = Structural(tmp_path_factory.mktemp("structural"))
    argv = ["build", "--recipes", str(built.recipes), "--variant-config", str(VARIANT_CONFIG)]
    argv += ["--channel", str(built.channel), "--source-channel", built.stub.as_uri(), "--test", "skip"]
    assert main(argv) == 0
    return built


def test_the_stub_build_asks_the_preflight_for_a_stubs_disk_not_pytorchs(structural):
    # The real recipe's 30 GiB (test_plan.py) would stop this build on a test machine with
    # less free; a stub payload is a few files.
    assert disk_needs(list(structural.plan.builds)) == {"pytorch": STUB_DISK_GIB}


def _by_name(records: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in records.values() if r["name"] == name]


def test_every_output_of_every_variant_is_built(structural: Structural) -> None:
    assert sorted(structural.records()) == sorted(b.output.filename for b in structural.plan.builds)


def test_each_expensive_build_runs_once(structural: Structural) -> None:
    """Item 1 and L3: pytorch's C++/CUDA build once per stack and CUDA version (not again for
    each pytorch output), triton's LLVM once per release, vLLM's extension once per CUDA."""
    runs = Counter(
        (package, version, stage, cuda) for package, version, stage, cuda, *_ in script_runs(structural.log)
    )
    for stack in STACKS.values():
        for cuda in CUDAS:
            assert runs[("staging", stack["pytorch"], "cpp", cuda)] == 1, runs
            assert runs[("vllm", stack["vllm"], "package", "")] == 2  # one per CUDA version
        assert runs[("staging", stack["triton"], "llvm", "")] == 1, runs
    assert sum(n for (_, _, stage, _), n in runs.items() if stage in ("cpp", "llvm")) == 6


def test_libtorch_carries_no_python_abi_and_each_pytorch_only_its_own(structural: Structural) -> None:
    """Item 2: the staging host's `python 3.12.*` must not run-export python_abi 3.12."""
    records = structural.records()
    for libtorch in _by_name(records, "libtorch"):
        assert not [d for d in libtorch["depends"] if d.startswith(("python_abi", "python "))], libtorch
    for pytorch in _by_name(records, "pytorch"):
        tag = pytorch["build"].split("_py")[1].split("_")[0]
        abis = [d for d in pytorch["depends"] if d.startswith("python_abi")]
        assert abis == [f"python_abi {tag[0]}.{tag[1:]}.* *_cp{tag}"], pytorch["build"]


def test_pins_tie_each_stack_together(structural: Structural) -> None:
    records = structural.records()
    for stack in STACKS.values():
        for cuda in CUDAS:
            mark = f"cuda{cuda.replace('.', '')}_pascal_"
            pytorches = [
                r
                for r in _by_name(records, "pytorch")
                if r["version"] == stack["pytorch"] and mark in r["build"]
            ]
            assert len(pytorches) == len(stack["pythons"])
            for pytorch in pytorches:
                assert f"triton =={stack['triton']} {mark}*" in pytorch["depends"]
            for name in ("torchvision", "torchaudio"):
                builds = [
                    r for r in _by_name(records, name) if r["version"] == stack[name] and mark in r["build"]
                ]
                one_per_cuda = name in stack["python_independent"]
                assert len(builds) == (1 if one_per_cuda else len(stack["pythons"])), name
                for build in builds:
                    assert f"pytorch =={stack['pytorch']} {mark}*" in build["depends"], build
            (vllm,) = [
                r for r in _by_name(records, "vllm") if r["version"] == stack["vllm"] and mark in r["build"]
            ]
            assert f"pytorch =={stack['pytorch']} {mark}*" in vllm["depends"]
            assert f"triton =={stack['triton']} {mark}*" in vllm["depends"]
            assert f"torchvision =={stack['torchvision']} {mark}*" in vllm["depends"]
            assert f"torchaudio =={stack['torchaudio']} {mark}*" in vllm["depends"]
            (meta,) = [
                r
                for r in _by_name(records, "vllm-pascal")
                if r["version"] == stack["vllm"] and mark in r["build"]
            ]
            assert f"vllm =={stack['vllm']} {mark}*" in meta["depends"]


def test_vllm_is_one_abi3_package_per_cuda_version(structural: Structural) -> None:
    for vllm in _by_name(structural.records(), "vllm"):
        assert vllm["noarch"] == "python" and vllm["subdir"] == SUBDIR
        assert "_py" not in vllm["build"]
        assert not [d for d in vllm["depends"] if d.startswith("python_abi")]


def test_current_torchvision_and_torchaudio_are_one_package_per_cuda_version(structural: Structural) -> None:
    records = structural.records()
    for stack in STACKS.values():
        for name in ("torchvision", "torchaudio"):
            builds = [r for r in _by_name(records, name) if r["version"] == stack[name]]
            independent = name in stack["python_independent"]
            assert len(builds) == (2 if independent else 2 * len(stack["pythons"])), name
            for build in builds:
                assert (build.get("noarch") == "python") == independent, build
                assert build["subdir"] == SUBDIR
                abis = [d for d in build["depends"] if d.startswith("python_abi")]
                assert bool(abis) != independent, build


def test_build_strings_keep_conda_forge_shape(structural: Structural) -> None:
    for filename, record in structural.records().items():
        assert record["build"].startswith(("cuda126_pascal_", "cuda129_pascal_")), filename
        assert record["build"].split("_")[-1] == str(record["build_number"]), filename


@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("cuda", CUDAS)
def test_vllm_pascal_solves_for_every_python_of_its_stack(
    structural: Structural, stack: str, cuda: str
) -> None:
    versions = STACKS[stack]
    spec = "vllm-pascal" if stack == "current" else f"vllm-pascal {versions['vllm']}.*"
    for python in versions["pythons"]:
        solution = solve(
            [spec], [str(structural.channel), str(structural.stub)], System(cuda=cuda), python=python
        )
        names = ("vllm", "pytorch", "triton", "libtorch", "torchvision", "torchaudio")
        got = {name: solution.get(name) for name in names}
        assert {name: r.version for name, r in got.items()} == {
            "vllm": versions["vllm"],
            "pytorch": versions["pytorch"],
            "triton": versions["triton"],
            "libtorch": versions["pytorch"],
            "torchvision": versions["torchvision"],
            "torchaudio": versions["torchaudio"],
        }
        assert all(
            r.ours and r.build.startswith(f"cuda{cuda.replace('.', '')}_pascal_") for r in got.values()
        )
        assert f"_py{python.replace('.', '')}_" in got["pytorch"].build


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_vllm_pascal_installs(structural: Structural, stack: str, tmp_path: Path) -> None:
    versions = STACKS[stack]
    channels = [structural.channel, structural.stub]
    installed = install_from(
        channels,
        [f"vllm-pascal {versions['vllm']}.*", f"python {versions['pythons'][0]}.*"],
        tmp_path / "env",
        tmp_path,
    )
    assert installed["vllm"].startswith("cuda12")
    sp = next((tmp_path / "env" / "lib").glob("python3.*/site-packages"))
    for module in ("vllm", "torch", "triton", "torchvision", "torchaudio"):
        assert (sp / module / "__init__.py").is_file(), module


# --------------------------------------------------------------------------- twins


def _twin_build(structural: Structural, tmp_path: Path, recipes: Path, names: tuple[str, ...]) -> Path:
    """Build only `names` for CUDA 12.9 of the seed stack from `recipes` into a fresh channel."""
    channel = tmp_path / "channel"
    argv = ["build", "--recipes", str(recipes), "--variant-config", str(VARIANT_CONFIG)]
    argv += ["--channel", str(channel), "--source-channel", structural.stub.as_uri(), "--test", "skip"]
    argv += ["--variant", "cuda_compiler_version=12.9", "--variant", "pytorch_version=2.9.1"]
    argv += ["--variant", "python=3.12", "--no-preflight"]
    for name in names:
        argv += ["--only", name]
    assert main(argv) == 0
    return channel


def test_twin_outputs_built_one_by_one_with_run_build_redo_the_staging_build(
    structural: Structural, tmp_path: Path
) -> None:
    """Twin of item 1: through py-rattler-build's run_build, libtorch and pytorch each name the
    build folder after themselves, so the staging cache misses and the C++ build runs twice."""
    log = tmp_path / "runs.log"
    recipes = structural_recipes(RECIPES, tmp_path / "recipes", log)
    plan = make_plan(
        recipes, VARIANT_CONFIG, tmp_path / "channel", overrides={"cuda_compiler_version": "12.9"}
    )
    for name in ("libtorch", "pytorch"):
        seed = expect.SEED.pytorch
        build = next(b for b in plan.builds if b.output.name == name and b.output.version == seed)
        _for_this_variant(build).run_build(
            tool_config=ToolConfiguration(test_strategy="skip", channel_priority="strict"),
            output_dir=tmp_path / "work",
            channels=[(tmp_path / "work").as_uri(), structural.stub.as_uri()],
            no_build_id=True,
        )
    stages = [run[2] for run in script_runs(log)]
    assert stages.count("cpp") == 2


def test_twin_without_ignore_run_exports_libtorch_is_python_312_only(
    structural: Structural, tmp_path: Path
) -> None:
    """Twin of item 2: drop the staging's ignore_run_exports and libtorch needs python_abi 3.12,
    so the seed stack can no longer install for Python 3.10."""
    recipes = structural_recipes(RECIPES, tmp_path / "recipes", tmp_path / "runs.log")
    recipe_file = recipes / "pytorch" / "recipe.yaml"
    recipe = yaml.safe_load(recipe_file.read_text())
    staging = next(o for o in recipe["outputs"] if "staging" in o)
    del staging["requirements"]["ignore_run_exports"]
    recipe_file.write_text(yaml.safe_dump(recipe, sort_keys=False, width=1000))
    channel = _twin_build(structural, tmp_path, recipes, ("libtorch",))
    (libtorch,) = json.loads((channel / SUBDIR / "repodata.json").read_text())["packages.conda"].values()
    assert "python_abi 3.12.* *_cp312" in libtorch["depends"]
    with pytest.raises(SolveError):
        solve(["libtorch"], [str(channel), str(structural.stub)], System(cuda="12.9"), python="3.10")


def test_twin_xgrammar_0_1_29_is_not_in_a_conda_forge_shaped_channel(structural: Structural) -> None:
    """Twin of item 6: the pin vLLM 0.14.0 ships, which conda-forge never built, cannot solve."""
    with pytest.raises(SolveError):
        solve(["xgrammar ==0.1.29"], [str(structural.stub)], System(cuda="12.9"), python="3.12")
    assert solve(["xgrammar >=0.1.32,<1.0.0"], [str(structural.stub)], System(cuda="12.9"), python="3.12")


def test_vllm_0_34_0_pins_are_what_conda_forge_builds(structural: Structural) -> None:
    ours = next(b for b in structural.plan.builds if b.output.name == "vllm" and b.output.version == "0.34.0")
    run = set(ours.output.rendered.recipe.to_dict()["requirements"]["run"])
    for pin in RELEASED_0_34_0_PINS:
        assert pin in run, pin
        assert solve([pin], [str(structural.stub)], System(cuda="12.9"), python="3.12"), pin


@pytest.mark.parametrize("pin", RELEASED_0_34_0_PINS)
def test_twin_vllm_0_34_0_released_pins_do_not_solve(structural: Structural, pin: str) -> None:
    """The pins as vLLM 0.34.0 ships them: above conda-forge's newest builds, or (oss-harmony)
    a name it does not have."""
    with pytest.raises(SolveError):
        solve([RELEASED_0_34_0_PINS[pin]], [str(structural.stub)], System(cuda="12.9"), python="3.12")


def test_structural_recipes_keep_every_requirement(tmp_path: Path) -> None:
    """The stub copy changes sources and scripts only: each output renders the same requirements."""
    copy = structural_recipes(RECIPES, tmp_path / "recipes", tmp_path / "runs.log")
    real = make_plan(RECIPES, VARIANT_CONFIG, tmp_path / "channel")
    stubbed = make_plan(copy, VARIANT_CONFIG, tmp_path / "channel")

    def requirements(plan: Plan) -> dict[str, Any]:
        return {
            b.output.filename: b.output.rendered.recipe.to_dict().get("requirements") for b in plan.builds
        }

    assert requirements(real) == requirements(stubbed)
    shutil.rmtree(copy)


def _readme_narrow_build(structural: Structural, tmp_path: Path, pythons: tuple[str, ...]) -> int:
    """The README's narrow build of the current stack for CUDA 12.9, preflight included."""
    argv = ["build", "--recipes", str(structural.recipes), "--variant-config", str(VARIANT_CONFIG)]
    argv += ["--channel", str(tmp_path / "channel"), "--source-channel", structural.stub.as_uri()]
    argv += ["--test", "skip", "--variant", "vllm_version=0.34.0", "--variant", "cuda_compiler_version=12.9"]
    for python in pythons:
        argv += ["--variant", f"python={python}"]
    return main(argv)


def test_the_readmes_narrow_build_builds_with_the_stacks_oldest_python(
    structural: Structural, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _readme_narrow_build(structural, tmp_path, ("3.11", "3.12")) == 0
    assert "10 built, 0 skipped, 0 failed" in " ".join(capsys.readouterr().out.split())


def test_twin_a_narrow_build_without_the_oldest_python_stops_at_the_preflight(
    structural: Structural, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # vllm, torchaudio and torchvision build against Python 3.11's pytorch, which it lacks.
    assert _readme_narrow_build(structural, tmp_path, ("3.12",)) == 2
    captured = capsys.readouterr()
    said = " ".join((captured.out + captured.err).split())
    assert "pytorch ==2.14.0 cuda129_pascal_* cannot be installed" in said
    assert "nothing was built" in said
