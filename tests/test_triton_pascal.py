"""Triton on Pascal, for each version the recipe builds (3.6.0 and 3.8.0): that version's patch
series on its released wheel, proved with a real ptxas.

The compile suite (pascal_forge.checks.triton) compiles ~680 kernels for sm_60 and sm_61 with
the wheel's CUDA 12 ptxas (12.8 in 3.6.0, 12.9 in 3.8.0), once with the stock wheel and once with
the version's patches applied. The stock run must fail exactly the kernels whose patch concern
the suite names, which shows the suite can fail; the patched run must compile all of them. Every
test runs once per version (the `triton_version` fixture). The table is printed to the terminal.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.repo import VARIANT_CONFIG
from support.triton_wheel import (
    CAPABILITIES,
    TRITON,
    TRITON_VERSIONS,
    atomic_neighbourhood,
    triton_series,
    triton_target,
)

from pascal_forge.checks.triton.suite import (
    BUNDLED_PTXAS,
    SuiteError,
    SuiteRun,
    cuda12_ptxas,
    prepare_tree,
    run_suite,
)
from pascal_forge.checks.triton.table import format_table
from pascal_forge.recipes.patches import PatchError, apply_series, check_recipe_patches

pytestmark = pytest.mark.slow

FP8E4NV_REFUSAL = "type fp8e4nv not supported in this architecture"


@pytest.fixture(scope="session")
def trees_dir(upstream_cache: Path) -> Path:
    return upstream_cache.parent / "pascal-kernels"


@pytest.fixture(scope="session", params=TRITON_VERSIONS)
def triton_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def stock_tree(trees_dir: Path, upstream_cache: Path, triton_version: str) -> Path:
    return prepare_tree(triton_target(triton_version), [], trees_dir, upstream_cache)


@pytest.fixture(scope="session")
def patched_tree(trees_dir: Path, upstream_cache: Path, stock_tree: Path, triton_version: str) -> Path:
    return prepare_tree(
        triton_target(triton_version), triton_series(triton_version), trees_dir, upstream_cache
    )


@pytest.fixture(scope="session")
def stock_run(stock_tree: Path) -> SuiteRun:
    return run_suite(stock_tree, "stock", CAPABILITIES)


@pytest.fixture(scope="session")
def patched_run(patched_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    return run_suite(patched_tree, "patched", CAPABILITIES, ptx_dir=tmp_path_factory.mktemp("ptx"))


def test_every_triton_patch_applies_without_fuzz_to_the_released_wheel(upstream_cache: Path) -> None:
    applied = check_recipe_patches(TRITON, VARIANT_CONFIG, upstream_cache)
    assert applied == {version: len(triton_series(version)) for version in TRITON_VERSIONS}
    assert min(applied.values()) >= 4


def test_each_series_lands_exactly_on_its_wheel(
    stock_tree: Path, triton_version: str, tmp_path: Path
) -> None:
    # --fuzz=0 still lets a hunk move; a series refreshed for its version lands on the named lines.
    tree = _copy(stock_tree / "triton", tmp_path / "tree" / "triton").parent
    apply_series(triton_series(triton_version), tree, triton_target(triton_version).path_map, exact=True)


def test_the_seed_series_lands_on_3_8_0_only_with_offsets(tmp_path: Path, upstream_cache: Path) -> None:
    # The twin: 3.6.0's series lands on the 3.8.0 files only moved (or not at all), hence 3.8.0's own.
    stock = prepare_tree(triton_target("3.8.0"), [], upstream_cache.parent / "pascal-kernels", upstream_cache)
    tree = _copy(stock / "triton", tmp_path / "tree" / "triton").parent
    with pytest.raises(
        PatchError,
        match=r"0001-find-cuda-tools-in-the-conda-environment\.patch applies only with offsets: "
        r"hunk #2 of triton/knobs\.py",
    ):
        apply_series(triton_series("3.6.0"), tree, triton_target("3.6.0").path_map, exact=True)


def test_a_stale_patch_names_its_file_and_hunk(stock_tree: Path, triton_version: str, tmp_path: Path) -> None:
    # The real upstream files the eviction patch changes, in a small tree of their own.
    tree = tmp_path / "tree"
    for relative in ("triton/language/semantic.py", "triton/backends/nvidia/compiler.py"):
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(stock_tree / relative, tree / relative)
    eviction = next(p for p in triton_series(triton_version) if "eviction" in p.name)
    apply_series([eviction], _copy(tree, tmp_path / "clean"), triton_target(triton_version).path_map)

    compiler = tree / "triton/backends/nvidia/compiler.py"
    # Upstream renames a variable the hunk's context shows.
    compiler.write_text(compiler.read_text().replace("codegen_fns = {", "codegen_functions = {"))
    with pytest.raises(PatchError) as failure:
        apply_series([eviction], tree, triton_target(triton_version).path_map)
    assert eviction.name in str(failure.value)
    assert "hunk #1 of triton/backends/nvidia/compiler.py" in str(failure.value)


def test_patched_triton_compiles_the_whole_suite_for_pascal(
    stock_run: SuiteRun, patched_run: SuiteRun, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print("\n" + format_table([stock_run, patched_run], CAPABILITIES))
    unexpected = [f"sm_{r.capability} {r.case}: {r.detail}" for r in patched_run.results if not r.as_expected]
    assert not unexpected, "\n".join(unexpected)
    assert len(patched_run.results) == 2 * len({r.case for r in patched_run.results}) > 1200


def test_stock_triton_fails_exactly_the_kernels_the_patches_fix(stock_run: SuiteRun) -> None:
    fixed = {r.fixed_by for r in stock_run.results if r.fixed_by}
    assert fixed == {"eviction-hints", "atomic-memory-order", "atomic-16bit"}
    wrong = []
    for result in stock_run.results:
        must_fail = bool(result.fixed_by or result.refusal or result.known_failure)
        if (result.status == "fail") != must_fail:
            wrong.append(f"sm_{result.capability} {result.case}: {result.status} {result.detail}")
    assert not wrong, "\n".join(wrong)


def test_fp8e4nv_stays_refused_with_its_message(stock_run: SuiteRun, patched_run: SuiteRun) -> None:
    for run in (stock_run, patched_run):
        for capability in CAPABILITIES:
            result = run.result("convert[fp32->fp8e4nv]", capability)
            assert result.status == "fail"
            assert FP8E4NV_REFUSAL in result.detail


@pytest.mark.parametrize(
    ("case", "before", "after"),
    [
        ("atomic_add[fp32,relaxed,gpu]", None, None),
        ("atomic_add[fp32,acquire,gpu]", None, "membar.gl;"),
        ("atomic_xchg[i64,release,cta]", "membar.cta;", None),
        ("atomic_max[u32,acq_rel,sys]", "membar.sys;", "membar.sys;"),
        ("atomic_cas[i32,acq_rel,gpu]", "membar.gl;", "membar.gl;"),
        ("atomic_add[fp16,acq_rel,cta]", "membar.cta;", "membar.cta;"),
        ("atomic_cas[bf16,release,sys]", "membar.sys;", None),
        # Contiguous offsets (vectorisable) and a scalar lock, as 3.8's lowering emits them.
        ("atomic_add_contiguous[fp32,acq_rel,masked]", "membar.gl;", "membar.gl;"),
        ("atomic_add_contiguous[fp16,acq_rel,unmasked]", "membar.gl;", "membar.gl;"),
        ("atomic_cas_scalar[i32,acquire]", None, "membar.gl;"),
    ],
)
def test_pascal_atomics_keep_their_memory_order_as_membar(
    patched_run: SuiteRun, case: str, before: str | None, after: str | None
) -> None:
    for capability in CAPABILITIES:
        ptx = patched_run.result(case, capability).ptx.read_text()
        assert not re.search(r"\.(relaxed|acquire|release|acq_rel)\b", ptx)
        groups = atomic_neighbourhood(ptx)
        assert groups, f"{case}: no atomic in the PTX"
        for group in groups:
            fences = [line.split()[-1] for line in group if "membar" in line]
            expected = [f for f in (before, after) if f]
            assert fences == expected, f"{case} sm_{capability}: {group}"
            first, last = group[0], group[-1]
            assert (before is not None) == ("membar" in first)
            assert (after is not None) == ("membar" in last)


def test_16bit_atomics_become_a_32bit_cas_loop(patched_run: SuiteRun) -> None:
    for case in (
        "atomic_add[fp16,relaxed,gpu]",
        "atomic_cas[u16,relaxed,cta]",
        "atomic_add_contiguous[fp16,relaxed,masked]",
    ):
        ptx = patched_run.result(case, 61).ptx.read_text()
        assert ".b16" not in " ".join(re.findall(r"\batom\.[\w.]+", ptx))
        scope = "cta" if "cta" in case else "gpu"
        assert f"atom.{scope}.global.cas.b32" in ptx


def test_newer_gpus_keep_hints_and_memory_orders(
    stock_tree: Path, patched_tree: Path, tmp_path: Path
) -> None:
    cases = ("load[evict_last]", "atomic_add[fp16,acq_rel,gpu]")
    for case in cases:
        stock = run_suite(stock_tree, "stock", [70, 80], match=case, ptx_dir=tmp_path / "stock")
        patched = run_suite(patched_tree, "patched", [70, 80], match=case, ptx_dir=tmp_path / "patched")
        for capability in (70, 80):
            mine, theirs = patched.result(case, capability), stock.result(case, capability)
            assert mine.status == theirs.status == "ok", mine.detail
            assert mine.ptx.read_text() == theirs.ptx.read_text(), f"{case} sm_{capability}: PTX differs"
    ptx = (tmp_path / "patched" / "sm80").glob("load*.ptx")
    assert "evict_last" in next(ptx).read_text()


def test_a_cuda13_ptxas_is_refused(trees_dir: Path, upstream_cache: Path) -> None:
    current = prepare_tree(triton_target("3.8.0"), [], trees_dir, upstream_cache)
    assert cuda12_ptxas(current) == current / BUNDLED_PTXAS  # CUDA 12.9
    # 3.8.0's own ptxas-blackwell (for sm_100+) is a CUDA 13 one: a real ptxas to refuse.
    blackwell = current / BUNDLED_PTXAS.with_name("ptxas-blackwell")
    version = subprocess.run([blackwell, "--version"], capture_output=True, text=True).stdout
    assert "release 13." in version, version
    with pytest.raises(SuiteError, match="CUDA 13 dropped sm_60/sm_61"):
        cuda12_ptxas(current, blackwell)


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "stock"])
def test_ptxas_comes_from_the_conda_environment(
    stock_tree: Path, patched_tree: Path, tmp_path: Path, patched: bool
) -> None:
    tree = patched_tree if patched else stock_tree
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "ptxas").symlink_to(stock_tree / BUNDLED_PTXAS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITON_")}
    env.update(CONDA_PREFIX=str(prefix), PYTHONPATH=str(tree))
    # What the backend itself runs for a target: get_ptxas picks ptxas below sm_100 and
    # ptxas-blackwell from sm_100 on (3.6.0 and 3.8.0 alike).
    probe = (
        "from triton import knobs; from triton.backends.nvidia.compiler import get_ptxas; "
        "print(knobs.nvidia.ptxas.path); print(get_ptxas(60).path); print(get_ptxas(61).path); "
        "print(get_ptxas(100).path)"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    expected = prefix / "bin" / "ptxas" if patched else tree / BUNDLED_PTXAS
    assert [Path(p) for p in found[:3]] == [expected] * 3
    # No conda package ships a ptxas-blackwell, so sm_100+ keeps the wheel's lookup.
    assert Path(found[3]) == tree / BUNDLED_PTXAS.with_name("ptxas-blackwell")


def _copy(tree: Path, destination: Path) -> Path:
    shutil.copytree(tree, destination)
    return destination
