"""`pascal-forge plan` on the real recipes: rendering, the Pascal matrix, order, errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from itertools import product
from pathlib import Path

import pytest
import support.expected as expect
import yaml
from rattler_build import Stage0Recipe, VariantConfig
from support.repo import RECIPES, VARIANT_CONFIG, committed_text

from pascal_forge.build.preflight import disk_needs
from pascal_forge.cli import main
from pascal_forge.errors import RecipeError, VariantError
from pascal_forge.pascal import capabilities
from pascal_forge.recipes.plan import expensive_builds, make_plan
from pascal_forge.recipes.variants import STACK_KEYS, Stack, arch_list, load_variant_config, stacks

CUDA_VERSIONS = {"12.6", "12.9"}
# Each stack's releases and Pythons (the seed stack, then the current one).
STACKS = {name: (asdict(stack), set(expect.PYTHONS[name])) for name, stack in expect.STACKS.items()}
VERSION_OF = {"libtorch": "pytorch", "pytorch-gpu": "pytorch", "vllm": "vllm", "vllm-pascal": "vllm"}
PYTHON_OUTPUTS = {"triton", "pytorch", "torchvision", "torchaudio"}
# vllm is one abi3 package per CUDA version (its _C.abi3.so serves every Python of its stack).
CUDA_ONLY_OUTPUTS = {"libtorch", "pytorch-gpu", "vllm", "vllm-pascal"}


def _pythons(stack: str, name: str) -> set[str | None]:
    return {None} if name in expect.PYTHON_INDEPENDENT[stack] else STACKS[stack][1]


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return make_plan(RECIPES, VARIANT_CONFIG, tmp_path_factory.mktemp("channel"))


def test_every_recipe_renders_for_every_variant(plan):
    by_recipe = {b.output.recipe for b in plan.builds}
    assert by_recipe == {"triton", "pytorch", "vllm", "torchvision", "torchaudio"}
    assert {b.output.name for b in plan.builds} == PYTHON_OUTPUTS | CUDA_ONLY_OUTPUTS


@pytest.mark.parametrize("name", sorted(PYTHON_OUTPUTS))
def test_python_outputs_cover_each_stack_times_two_cuda_times_its_pythons(plan, name):
    combos = [
        (b.output.version, b.output.cuda, b.output.python) for b in plan.builds if b.output.name == name
    ]
    expected = [
        (versions[name], cuda, python)
        for stack, (versions, _) in STACKS.items()
        for cuda, python in product(CUDA_VERSIONS, _pythons(stack, name))
    ]
    assert sorted(combos) == sorted(expected)


def _write_skip_recipe(directory: Path) -> Path:
    recipe = directory / "skipper"
    recipe.mkdir(parents=True)
    (recipe / "recipe.yaml").write_text(
        "context:\n  version: ${{ pytorch_version }}\n"
        "package: {name: skipper, version: '${{ version }}'}\n"
        f'build:\n  skip:\n    - not linux64\n    - version == "{expect.SEED.pytorch}"\n'
        "requirements:\n  host:\n    - python\n"
    )
    return directory


def test_a_skip_condition_drops_its_variants_from_the_plan(tmp_path):
    plan = make_plan(_write_skip_recipe(tmp_path / "recipes"), VARIANT_CONFIG, tmp_path / "channel")
    assert {(b.output.version, b.output.python) for b in plan.builds} == {
        (expect.CURRENT.pytorch, python) for python in STACKS["current"][1]
    }


def test_twin_without_the_condition_every_variant_is_planned(tmp_path):
    recipes = _write_skip_recipe(tmp_path / "recipes")
    recipe = recipes / "skipper" / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(f'    - version == "{expect.SEED.pytorch}"\n', ""))
    plan = make_plan(recipes, VARIANT_CONFIG, tmp_path / "channel")
    assert {b.output.version for b in plan.builds} == {expect.SEED.pytorch, expect.CURRENT.pytorch}


def test_rattler_builds_own_render_keeps_a_skipped_variant(tmp_path):
    """Why pascal-forge evaluates `skip:` itself: py-rattler-build's render returns the variant
    (and its run_build builds it). The day this fails, render.py can leave skipping to it."""
    (tmp_path / "recipe.yaml").write_text(
        "package: {name: skipped, version: '1.0'}\nbuild:\n  skip:\n    - true\n"
    )
    variants = Stage0Recipe.from_file(tmp_path / "recipe.yaml").render(VariantConfig())
    assert len(variants) == 1


@pytest.mark.parametrize("name", sorted(CUDA_ONLY_OUTPUTS))
def test_python_independent_outputs_are_built_once_per_stack_and_cuda(plan, name):
    builds = [b.output for b in plan.builds if b.output.name == name]
    expected = [
        (versions[VERSION_OF[name]], cuda) for versions, _ in STACKS.values() for cuda in CUDA_VERSIONS
    ]
    assert sorted((o.version, o.cuda) for o in builds) == sorted(expected)
    assert all(o.python is None for o in builds)


def test_build_strings_keep_conda_forge_shape_and_mark_pascal(plan):
    for build in plan.builds:
        string = build.output.build_string
        assert string.startswith("cuda12"), string
        assert "_pascal_" in string, string
        assert string.startswith(f"cuda{build.output.cuda.replace('.', '')}_pascal_")
        if build.output.python and build.output.name not in ("torchvision", "torchaudio"):
            assert f"_py{build.output.python.replace('.', '')}_h" in string
    # torchvision and torchaudio carry no py tag (in one file it would tie the current stack's
    # builds to each Python too); each Python of the seed stack still gets its own hash.
    seed = [b.output.build_string for b in plan.builds if b.output.name == "torchvision"]
    assert len(seed) == len(set(seed))


def test_order_is_triton_libtorch_pytorch_vllm_vllm_pascal(plan):
    first_seen = {}
    for build in plan.builds:
        first_seen.setdefault(build.output.name, build.position)
    chain = ["triton", "libtorch", "pytorch", "vllm", "vllm-pascal"]
    assert [first_seen[n] for n in chain] == sorted(first_seen[n] for n in chain)
    assert first_seen["pytorch"] < first_seen["pytorch-gpu"] < first_seen["vllm-pascal"]


def test_every_build_comes_after_what_it_needs(plan):
    for build in plan.builds:
        assert all(need < build.position for need in build.needs), build.output.filename


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_needs_follow_the_variant(plan, stack):
    """vllm for CUDA 12.9 needs its own stack's triton, pytorch, torchvision and torchaudio for
    12.9, for each of the stack's Pythons, and nothing of the other stack or CUDA version."""
    versions, _ = STACKS[stack]
    vllm = next(
        b
        for b in plan.builds
        if b.output.name == "vllm" and (b.output.version, b.output.cuda) == (versions["vllm"], "12.9")
    )
    needed = [plan.builds[i].output for i in vllm.needs]
    assert {(o.name, o.version, o.cuda, o.python) for o in needed} == {
        (name, versions[name], "12.9", python)
        for name in ("triton", "pytorch", "torchvision", "torchaudio")
        for python in _pythons(stack, name)
    }


def test_arch_list_is_the_single_source_of_every_arch_variable(plan):
    script_env = {}
    for build in plan.builds:
        if build.output.name == "vllm":
            script_env = build.output.rendered.recipe.to_dict()["build"]["script"]["env"]
            break
    numbers = ";".join(map(str, expect.CAPABILITIES))
    assert script_env["TORCH_CUDA_ARCH_LIST"] == expect.ARCH_LIST
    assert script_env["CMAKE_CUDA_ARCHITECTURES"] == numbers
    assert script_env["CUDAARCHS"] == numbers
    assert script_env["CUTLASS_NVCC_ARCHS"] == numbers
    for recipe_file in RECIPES.glob("*/*"):
        if recipe_file.is_file():
            assert expect.ARCH_LIST not in recipe_file.read_text(), f"{recipe_file} repeats the arch list"


def _write_config(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(VARIANT_CONFIG.read_text())
    raw.update(changes)
    path = tmp_path / "conda_build_config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_repository_matrix_is_accepted():
    load_variant_config(VARIANT_CONFIG)


def test_the_config_holds_the_expected_stacks_and_arches():
    """What the product derives from conda_build_config.yaml is what the tests expect of it."""
    assert stacks(VARIANT_CONFIG) == list(expect.STACKS.values())
    assert arch_list(VARIANT_CONFIG) == expect.ARCH_LIST
    assert capabilities(arch_list(VARIANT_CONFIG)) == expect.CAPABILITIES


def _swapped(column: list) -> list:
    """The column with its first and last entries exchanged (one Python of each stack)."""
    return [column[-1], *column[1:-1], column[0]]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda raw: {"cuda_arch_list": ["6.1"]}, id="an-arch-dropped"),
        pytest.param(lambda raw: {"cuda_arch_list": ["6.0;6.1;6.2"]}, id="an-arch-added"),
        pytest.param(
            lambda raw: {"pytorch_version": raw["pytorch_version"][::-1]}, id="torch-columns-swapped"
        ),
        pytest.param(
            lambda raw: {
                "torchvision_version": raw["torchaudio_version"],
                "torchaudio_version": raw["torchvision_version"],
            },
            id="torchvision-and-torchaudio-swapped",
        ),
    ],
)
def test_twin_a_wrong_config_misses_the_expectations(tmp_path, change):
    """The derivations follow the config they read, so the check above fails on a wrong one."""
    raw = yaml.safe_load(VARIANT_CONFIG.read_text())
    config = _write_config(tmp_path, **change(raw))
    derived = (stacks(config), arch_list(config), capabilities(arch_list(config)))
    assert derived != (list(expect.STACKS.values()), expect.ARCH_LIST, expect.CAPABILITIES)


def test_twin_one_python_of_a_stack_on_another_triton_is_refused(tmp_path):
    """A stack is named by its vLLM: a column that pairs it with another triton is two stacks."""
    raw = yaml.safe_load(VARIANT_CONFIG.read_text())
    config = _write_config(tmp_path, triton_version=_swapped(raw["triton_version"]))
    with pytest.raises(VariantError, match=rf"vllm_version {expect.SEED.vllm} is in 2 stacks"):
        stacks(config)


def test_stacks_refuse_columns_of_unequal_length(tmp_path):
    raw = yaml.safe_load(VARIANT_CONFIG.read_text())
    config = _write_config(tmp_path, torchaudio_version=raw["torchaudio_version"][:-1])
    with pytest.raises(VariantError, match="must be equally long: .*torchaudio_version 7"):
        stacks(config)
    with pytest.raises(VariantError, match="no torchvision_version"):
        stacks(_write_config(tmp_path, torchvision_version=[]))


def test_every_stack_field_is_a_zipped_key_of_the_config():
    raw = yaml.safe_load(VARIANT_CONFIG.read_text())
    assert list(STACK_KEYS) == list(Stack.__dataclass_fields__)
    zipped = next(group for group in raw["zip_keys"] if "python" in group)
    assert set(STACK_KEYS.values()) <= set(zipped)


def test_one_arch_list_for_the_checks(tmp_path):
    with pytest.raises(VariantError, match="cuda_arch_list has 2 values"):
        arch_list(_write_config(tmp_path, cuda_arch_list=["6.0", "6.1"]))
    assert capabilities("6.0;6.1;6.2+PTX") == (60, 61, 62)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cuda_compiler_version": ["12.9", "13.0"]}, "cuda_compiler_version: '13.0' cannot target Pascal"),
        ({"cuda_arch_list": ["6.0;7.0"]}, "cuda_arch_list: '7.0' in '6.0;7.0' is not a Pascal architecture"),
        ({"cuda_arch_list": ["8.6"]}, "'8.6' in '8.6' is not a Pascal architecture"),
        ({"cuda_arch_list": [""]}, "cuda_arch_list: '' is empty"),
        ({"cuda_arch_list": []}, "cuda_arch_list is missing"),
        ({"cuda_compiler_version": ["None", "12.9"]}, "builds without CUDA"),
    ],
)
def test_variants_that_cannot_serve_pascal_are_refused(tmp_path, changes, message):
    config = _write_config(tmp_path, **changes)
    with pytest.raises(VariantError, match="conda_build_config.yaml") as error:
        make_plan(RECIPES, config, tmp_path / "channel")
    assert message in str(error.value)


def test_pascal_arch_with_ptx_suffix_is_accepted(tmp_path):
    load_variant_config(_write_config(tmp_path, cuda_arch_list=["6.0;6.1;6.2+PTX"]))


def test_variant_override_narrows_zipped_keys_together():
    config = load_variant_config(VARIANT_CONFIG, {"cuda_compiler_version": "12.6", "python": "3.12"})
    assert config["cuda_compiler_version"] == ["12.6"]
    assert config["cxx_compiler_version"] == ["13"]
    # Python 3.12 is in both stacks, so both stay.
    assert config["python"] == ["3.12.* *_cpython", "3.12.* *_cpython"]
    assert config["pytorch_version"] == [expect.SEED.pytorch, expect.CURRENT.pytorch]


def test_variant_override_picks_one_stack_by_any_of_its_versions():
    config = load_variant_config(VARIANT_CONFIG, {"vllm_version": expect.CURRENT.vllm})
    assert config["python"] == ["3.11.* *_cpython", "3.12.* *_cpython", "3.13.* *_cp313", "3.14.* *_cp314"]
    assert set(config["triton_version"]) == {expect.CURRENT.triton}
    assert set(config["pytorch_version"]) == {expect.CURRENT.pytorch}


def test_variant_override_with_unknown_value_names_it():
    with pytest.raises(VariantError, match="python has no value '3.9'"):
        load_variant_config(VARIANT_CONFIG, {"python": "3.9"})


@pytest.fixture
def recipes_copy(tmp_path):
    target = tmp_path / "recipes"
    shutil.copytree(RECIPES, target)
    return target


def test_yaml_error_names_the_recipe_file(recipes_copy, tmp_path):
    broken = recipes_copy / "triton" / "recipe.yaml"
    text = broken.read_text()
    assert "  - package:\n      name: triton" in text
    broken.write_text(text.replace("  - package:\n      name: triton", "  - package:\n      name: [triton"))
    with pytest.raises(RecipeError, match=str(broken)):
        make_plan(recipes_copy, VARIANT_CONFIG, tmp_path / "channel")


def test_jinja_error_names_the_recipe_file(recipes_copy, tmp_path):
    broken = recipes_copy / "vllm" / "recipe.yaml"
    broken.write_text(
        broken.read_text().replace("${{ pascal_string }}_h", "${{ pascal_string | no_such_filter }}_h")
    )
    with pytest.raises(RecipeError, match=str(broken)):
        make_plan(recipes_copy, VARIANT_CONFIG, tmp_path / "channel")


def test_listed_patch_that_does_not_exist_is_an_error(recipes_copy, tmp_path):
    recipe = recipes_copy / "triton" / "recipe.yaml"
    text = recipe.read_text()
    listed = "    patches:\n      - patches/9999-not-there.patch\n"
    recipe.write_text(text.replace("    patches: []\n", listed, 1) if "patches: []" in text else text)
    if "patches: []" not in text:
        # The series is filled: point its first entry at a missing file instead.
        lines = recipe.read_text().splitlines(keepends=True)
        first = next(i for i, line in enumerate(lines) if line.strip().startswith("- patches/"))
        lines[first] = lines[first].split("- patches/")[0] + "- patches/9999-not-there.patch\n"
        recipe.write_text("".join(lines))
    with pytest.raises(RecipeError, match="9999-not-there.patch"):
        make_plan(recipes_copy, VARIANT_CONFIG, tmp_path / "channel")


def test_patch_file_that_no_recipe_lists_is_an_error(recipes_copy, tmp_path):
    (recipes_copy / "pytorch" / "patches" / "0999-stray.patch").write_text("")
    with pytest.raises(RecipeError, match="0999-stray.patch"):
        make_plan(recipes_copy, VARIANT_CONFIG, tmp_path / "channel")


def test_plan_marks_what_the_channel_index_lists(plan, tmp_path):
    built = plan.builds[0].output
    subdir = tmp_path / "channel" / built.subdir
    subdir.mkdir(parents=True)
    (subdir / built.filename).write_bytes(b"")
    repodata = {"info": {"subdir": built.subdir}, "packages": {}, "packages.conda": {built.filename: {}}}
    (subdir / "repodata.json").write_text(json.dumps(repodata))
    replanned = make_plan(RECIPES, VARIANT_CONFIG, tmp_path / "channel")
    assert [b.output.filename for b in replanned.builds if b.in_channel] == [built.filename]


def test_a_file_the_index_does_not_list_is_not_in_the_channel(plan, tmp_path):
    built = plan.builds[0].output
    subdir = tmp_path / "channel" / built.subdir
    subdir.mkdir(parents=True)
    (subdir / built.filename).write_bytes(b"")
    replanned = make_plan(RECIPES, VARIANT_CONFIG, tmp_path / "channel")
    assert not any(b.in_channel for b in replanned.builds)


def test_cli_prints_table_and_json(capsys, monkeypatch, tmp_path):
    args = ["--recipes", str(RECIPES), "-m", str(VARIANT_CONFIG), "--channel", str(tmp_path)]
    assert main(["plan", *args]) == 0
    table = capsys.readouterr().out
    assert "vllm-pascal" in table and "cuda129_pascal_py312_h" in table
    assert main(["plan", "--json", *args]) == 0
    records = json.loads(capsys.readouterr().out)
    # 48 packages of triton, pytorch and vllm; torchvision and torchaudio 16 each for the seed
    # stack (one per Python) and 4 each for the current one (one per CUDA version).
    assert len(records) == 68
    assert {"order", "name", "version", "build", "cuda", "python", "in_channel"} <= records[0].keys()


def test_cli_reports_refused_variant_without_traceback(capsys, tmp_path):
    config = _write_config(tmp_path, cuda_compiler_version=["13.0", "13.0"])
    assert main(["plan", "--recipes", str(RECIPES), "-m", str(config)]) == 2
    err = capsys.readouterr().err
    assert "cannot target Pascal" in err and "Traceback" not in err


def test_plan_counts_each_expensive_build(plan):
    """LLVM once per triton release for every variant, libtorch's C++ build and vLLM's extension
    once per stack and CUDA version."""
    counts = {(e.recipe, e.total): e.per_cuda for e in expensive_builds(plan)}
    assert counts == {
        ("triton", 2): {"12.6": 2, "12.9": 2},
        ("pytorch", 4): {"12.6": 2, "12.9": 2},
        ("vllm", 4): {"12.6": 2, "12.9": 2},
        # The seed stack's once per Python, as conda-forge builds them; the current stack's
        # (Python-independent libraries) once per CUDA version: 5 per CUDA, not 8.
        ("torchvision", 10): {"12.6": 5, "12.9": 5},
        ("torchaudio", 10): {"12.6": 5, "12.9": 5},
    }


def test_twin_a_current_torchvision_that_hosts_every_python_runs_per_python(recipes_copy, tmp_path):
    recipe = recipes_copy / "torchvision" / "recipe.yaml"
    text = recipe.read_text()
    independent = "        - python ${{ python_min }}.*\n        - python-abi3 ${{ python_min }}.*\n"
    assert independent in text
    recipe.write_text(text.replace(independent, "        - python\n", 1))
    narrowed = make_plan(recipes_copy, VARIANT_CONFIG, tmp_path / "channel")
    (torchvision,) = [e for e in expensive_builds(narrowed) if e.recipe == "torchvision"]
    assert torchvision.total == 16


def test_twin_an_llvm_build_that_uses_cuda_runs_per_cuda_version(recipes_copy, tmp_path):
    recipe = recipes_copy / "triton" / "recipe.yaml"
    text = recipe.read_text()
    marker = (
        "    requirements:\n      build:\n        - ${{ compiler('c') }}\n"
        "        - ${{ compiler('cxx') }}\n        - ${{ stdlib('c') }}\n"
    )
    assert marker in text
    recipe.write_text(text.replace(marker, marker + "        - ${{ compiler('cuda') }}\n", 1))
    narrowed = make_plan(recipes_copy, VARIANT_CONFIG, tmp_path / "channel")
    (llvm,) = [e for e in expensive_builds(narrowed) if e.recipe == "triton"]
    assert llvm.total == 4


def test_cli_plan_prints_the_expensive_builds(tmp_path, capsys):
    args = ["--recipes", str(RECIPES), "-m", str(VARIANT_CONFIG), "--channel", str(tmp_path)]
    assert main(["plan", *args]) == 0
    out = capsys.readouterr().out
    assert "expensive builds: how many times each runs" in out
    assert "LLVM and MLIR" in out and "the C++/CUDA build of libtorch" in out


# Libraries conda-forge pins globally because their ABI changes between versions; the
# pytorch recipe hosts each of them, so each must be pinned as conda-forge pins it.
GLOBALLY_PINNED = {
    "libprotobuf": "libprotobuf",
    "libabseil": "libabseil",
    "fmt": "fmt",
    "mkl-devel": "mkl_devel",
}


def _unpinned(plan) -> dict[str, list[str]]:
    found = {}
    for build in plan.builds:
        if build.output.name != "libtorch":
            continue
        host = build.output.rendered.recipe.to_dict()["staging_caches"][0]["requirements"]["host"]
        missing = [
            name for name, key in GLOBALLY_PINNED.items() if name in host and key not in build.output.variant
        ]
        found[build.output.build_string] = missing
    return found


def test_libtorch_pins_abi_sensitive_libraries_as_conda_forge_does(plan):
    unpinned = _unpinned(plan)
    assert len(unpinned) == 4 and not any(unpinned.values()), unpinned
    config = yaml.safe_load(VARIANT_CONFIG.read_text())
    # conda-forge/pytorch-cpu-feedstock 74dd3d4, .ci_support for CUDA 12.9.
    assert {key: config[key] for key in GLOBALLY_PINNED.values()} == {
        "libprotobuf": ["7.35.1"],
        "libabseil": ["20260526"],
        "fmt": ["12.1"],
        "mkl_devel": ["2026"],
    }


def test_twin_the_variant_config_before_this_review_left_them_unpinned(tmp_path):
    old = tmp_path / "conda_build_config.yaml"
    old.write_text(committed_text("ea1b55a", "conda_build_config.yaml"))
    unpinned = _unpinned(make_plan(RECIPES, old, tmp_path / "channel"))
    assert unpinned and all(missing == list(GLOBALLY_PINNED) for missing in unpinned.values())


def test_the_preflight_reads_pytorchs_disk_need_from_its_recipe(plan):
    # The 30 GiB lives in recipes/pytorch/recipe.yaml only; metapackages compile nothing.
    assert disk_needs(list(plan.builds)) == {"pytorch": 30.0}
    metapackages = [b for b in plan.builds if b.output.name in ("vllm-pascal", "pytorch-gpu")]
    assert {b.output.recipe for b in metapackages} == {"vllm", "pytorch"}
    assert disk_needs(metapackages) == {}
