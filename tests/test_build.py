"""`pascal-forge build`: real rattler-build builds of the fixture chain and of the real
metapackages into temporary channels, offline, then real py-rattler installs from them."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rattler.index import index_fs
from rich.console import Console
from support.build import (
    FIXTURE_VARIANTS,
    SUBDIR,
    build_argv,
    fixture_recipes,
    install_from,
    listed,
    offline_mirror,
    run_build,
    run_in,
    serving,
    sha256,
)
from support.repo import RECIPES, REPO, VARIANT_CONFIG

from pascal_forge.build.engine import BuildOptions, build_channel, select_builds
from pascal_forge.build.preflight import preflight
from pascal_forge.channel.local import index_channel, indexed_files, publish_package
from pascal_forge.console import LiveReporter
from pascal_forge.errors import PascalForgeError
from pascal_forge.recipes.plan import make_plan

CHAIN_ORDER = ["libchain", "libchain", "chain-tools", "chain-tools", "chain-mid", "chain-mid"]
CHAIN_ORDER += ["chain-stack", "chain-stack"]


@pytest.fixture
def mirror(tmp_path):
    return offline_mirror(tmp_path)


@pytest.fixture
def built(tmp_path, mirror, capsys):
    """The fixture chain built once into a fresh channel: (recipes, channel, output)."""
    recipes = fixture_recipes(tmp_path)
    channel = tmp_path / "channel"
    code, out = run_build(capsys, *build_argv(recipes, channel, mirror))
    assert code == 0, out
    return recipes, channel, out


def _started_order(out: str) -> list[str]:
    return [line.split()[2] for line in out.splitlines() if " building " in line and line.startswith("[")]


def test_fixture_chain_builds_in_order_and_installs_and_runs(built, tmp_path):
    _, channel, out = built
    assert _started_order(out) == CHAIN_ORDER
    records = listed(channel)
    assert len(records) == 8
    assert "built 8 package(s)" in out
    # One log file per build, next to the channel by default.
    assert len(list((tmp_path / "build-logs").glob("*.log"))) == 8

    # The exact pin points at the libchain of the same CUDA variant, in both variants.
    for name, record in records.items():
        if record["name"] == "chain-tools":
            cuda = record["build"].split("_")[0]
            (pin,) = [d for d in record["depends"] if d.startswith("libchain ")]
            assert pin.split()[2].startswith(cuda + "_"), (name, pin)

    prefix = tmp_path / "env"
    installed = install_from(channel, ["chain-stack ==2.0.0 cuda126_*"], prefix, tmp_path / "cache")
    assert set(installed) == {"chain-stack", "chain-mid", "chain-tools", "libchain"}
    assert all(build.startswith("cuda126_pascal_") for build in installed.values()), installed
    printed = run_in(prefix, "chain-mid")
    assert "chain-mid 2.0.0 on top of:" in printed
    assert "libchain 1.0.0 for sm 6.0;6.1" in printed


def test_without_narrowing_siblings_rattler_build_pins_the_wrong_variant(built, tmp_path):
    """Twin of the exact-pin check: py-rattler-build alone pins chain-tools 12.6 to libchain 12.9,
    which is why build.py hands it only the siblings of the variant it builds."""
    recipes, channel, _ = built
    plan = make_plan(recipes, FIXTURE_VARIANTS, channel)
    tools = next(b for b in plan.builds if b.output.name == "chain-tools" and b.output.cuda == "12.6")
    lib129 = next(b for b in plan.builds if b.output.name == "libchain" and b.output.cuda == "12.9")
    result = tools.output.rendered.run_build(
        output_dir=tmp_path / "raw-work", channels=[channel.resolve().as_uri()]
    )
    record = listed(result.output_dir)[Path(result.packages[0]).name]
    assert record["depends"] == [f"libchain ==1.0.0 {lib129.output.build_string}"]


def test_second_run_builds_nothing_and_says_so(built, mirror, capsys):
    recipes, channel, _ = built
    before = {p.name: p.stat().st_mtime_ns for p in (channel / SUBDIR).glob("*.conda")}
    code, out = run_build(capsys, *build_argv(recipes, channel, mirror))
    assert code == 0, out
    assert "nothing to build: all 8 selected package(s) are already in" in out
    assert "0 built, 8 skipped" in out
    assert " building " not in out
    assert {p.name: p.stat().st_mtime_ns for p in (channel / SUBDIR).glob("*.conda")} == before


def test_deleting_one_package_rebuilds_only_that_one(built, mirror, capsys):
    recipes, channel, _ = built
    (gone,) = (channel / SUBDIR).glob("chain-mid-2.0.0-cuda129_*.conda")
    gone.unlink()
    others = {p.name: p.stat().st_ino for p in (channel / SUBDIR).glob("*.conda")}
    code, out = run_build(capsys, *build_argv(recipes, channel, mirror))
    assert code == 0, out
    assert _started_order(out) == ["chain-mid"]
    assert "1 built, 7 skipped" in out
    assert gone.is_file()
    assert gone.name in listed(channel)
    assert {p.name: p.stat().st_ino for p in (channel / SUBDIR).glob("*.conda") if p != gone} == others


def test_force_rebuilds_and_the_index_describes_the_new_file(built, mirror, capsys):
    recipes, channel, _ = built
    code, out = run_build(capsys, *build_argv(recipes, channel, mirror, "--only", "chain-stack", "--force"))
    assert code == 0, out
    assert _started_order(out) == ["chain-stack", "chain-stack"]
    records = listed(channel)
    for package in (channel / SUBDIR).glob("*.conda"):
        assert records[package.name]["sha256"] == sha256(package), package.name


def test_the_staging_cache_is_shared_between_outputs_variants_and_runs(built, mirror, capsys):
    """libchain and chain-tools inherit one staging output, as libtorch and pytorch do: its
    work must not be redone for every output, variant and run (pytorch's is the C++ build).
    The staging step here uses nothing that differs between the two CUDA variants."""
    recipes, channel, _ = built
    runs = recipes / "chain-base" / "staging-runs.log"
    assert runs.read_text().splitlines() == ["staged"]
    code, out = run_build(capsys, *build_argv(recipes, channel, mirror, "--only", "libchain", "--force"))
    assert code == 0, out
    assert runs.read_text().splitlines() == ["staged"]


def _start_sleeping_build(tmp_path: Path, mirror: Path) -> tuple[Path, Path, str, subprocess.Popen]:
    """`pascal-forge build` of the fixture chain in a child process, held inside chain-mid's build.

    The sleep goes into the build script, which is not part of the build string's hash, so
    the package names are those of the unchanged recipe.
    """
    recipes = fixture_recipes(tmp_path)
    channel = tmp_path / "channel"
    recipe = recipes / "chain-mid" / "recipe.yaml"
    original = recipe.read_text(encoding="utf-8")
    recipe.write_text(original.replace("  script:\n", "  script:\n    - sleep 120\n", 1), encoding="utf-8")
    with (tmp_path / "child.out").open("w") as stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "pascal_forge.cli", *build_argv(recipes, channel, mirror)],
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=tmp_path,
        )
    deadline = time.monotonic() + 60
    while "+ sleep 120" not in _read_logs(tmp_path / "build-logs", "chain-mid"):
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the build never reached the sleeping step: {(tmp_path / 'child.out').read_text()}")
        time.sleep(0.1)
    return recipes, channel, original, process


def _read_logs(log_dir: Path, name: str) -> str:
    return "".join(p.read_text(errors="replace") for p in log_dir.glob(f"{name}-*.log"))


def _assert_usable_and_resumable(tmp_path, recipes, channel, original, mirror, capsys) -> None:
    # What the stopped run finished is in the channel and listed; nothing else is.
    assert {r["name"] for r in listed(channel).values()} == {"libchain", "chain-tools"}
    leftovers = [p.name for p in (channel / SUBDIR).iterdir() if not p.name.endswith(".conda")]
    assert leftovers == ["repodata.json"]
    asyncio.run(index_fs(channel, write_shards=False))  # another indexer reads it too
    installed = install_from(channel, ["chain-tools"], tmp_path / "env", tmp_path / "cache")
    assert set(installed) == {"chain-tools", "libchain"}

    (recipes / "chain-mid" / "recipe.yaml").write_text(original, encoding="utf-8")
    code, out = run_build(capsys, *build_argv(recipes, channel, mirror))
    assert code == 0, out
    assert "4 built, 4 skipped" in out
    assert len(listed(channel)) == 8
    prefix = tmp_path / "env2"
    install_from(channel, ["chain-stack ==2.0.0 cuda129_*"], prefix, tmp_path / "cache")
    assert "libchain 1.0.0" in run_in(prefix, "chain-mid")


def test_killed_build_leaves_a_channel_that_indexes_solves_installs_and_resumes(tmp_path, mirror, capsys):
    recipes, channel, original, process = _start_sleeping_build(tmp_path, mirror)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert "building chain-mid" in (tmp_path / "child.out").read_text()
    _assert_usable_and_resumable(tmp_path, recipes, channel, original, mirror, capsys)


def test_ctrl_c_stops_at_once_and_says_how_to_resume(tmp_path, mirror, capsys):
    """rattler-build swallows the KeyboardInterrupt raised in its callback; without the
    build's own SIGINT handler the child would go on building for minutes."""
    recipes, channel, original, process = _start_sleeping_build(tmp_path, mirror)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    try:
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert code == 2
    out = (tmp_path / "child.out").read_text()
    assert "run the same command again to resume" in out
    assert "building chain-stack" not in out
    _assert_usable_and_resumable(tmp_path, recipes, channel, original, mirror, capsys)


def test_failing_build_stops_its_dependents_not_its_siblings(tmp_path, mirror, capsys):
    recipes = fixture_recipes(tmp_path, failing=True)
    channel = tmp_path / "channel"
    code, out = run_build(
        capsys, *build_argv(recipes, channel, mirror, "--variant", "cuda_compiler_version=12.9")
    )
    assert code == 1, out
    failed_line = next(line for line in out.splitlines() if "FAILED chain-broken" in line)
    assert "recipe chain-broken" in failed_line
    assert "variant cuda_compiler_version=12.9" in failed_line
    log = (
        tmp_path
        / "build-logs"
        / next(p.name for p in (tmp_path / "build-logs").glob("chain-broken-0.1.0-*.log"))
    )
    assert str(log) in failed_line
    assert "chain-broken: failing on purpose" in log.read_text()
    assert "not built chain-broken-user" in out
    # chain-mid and chain-stack come after the failure in the order and are still built.
    assert _started_order(out) == ["libchain", "chain-tools", "chain-broken", "chain-mid", "chain-stack"]
    names = {r["name"] for r in listed(channel).values()}
    assert names == {"libchain", "chain-tools", "chain-mid", "chain-stack"}
    assert "1 failed, 1 blocked" in out


def test_real_metapackages_build_offline(tmp_path, mirror, capsys):
    """vllm-pascal and pytorch-gpu from recipes/, for real; their tests are skipped (--test skip)
    because those import torch and vllm, which only a full channel provides."""
    channel = tmp_path / "channel"
    argv = ["build", "--recipes", str(RECIPES), "--variant-config", str(VARIANT_CONFIG)]
    argv += ["--channel", str(channel), "--source-channel", mirror.as_uri(), "--test", "skip"]
    argv += ["--variant", "cuda_compiler_version=12.9", "--variant", "vllm_version=0.14.0"]
    argv += ["--only", "vllm-pascal", "--only", "pytorch-gpu"]
    code, out = run_build(capsys, *argv)
    assert code == 0, out
    # --only leaves out what they need at run time; the operator is told so, and it is not fatal.
    assert "preflight warning: recipe vllm: vllm-pascal" in out
    assert "neither in the channel nor selected" in out
    records = {r["name"]: r for r in listed(channel).values()}
    assert set(records) == {"vllm-pascal", "pytorch-gpu"}
    assert records["pytorch-gpu"]["build"].startswith("cuda129_pascal_h")
    assert records["pytorch-gpu"]["depends"] == ["pytorch ==2.9.1 cuda129_pascal_*_200"]
    assert "vllm ==0.14.0 cuda129_pascal_*" in records["vllm-pascal"]["depends"]
    assert "pytorch-gpu ==2.9.1 cuda129_pascal_*" in records["vllm-pascal"]["depends"]


def test_a_metapackage_that_inherits_the_source_cannot_build_offline(tmp_path, mirror, capsys):
    """Twin of the test above: with vLLM's source at the top of the recipe again, building
    vllm-pascal clones it and fails offline, naming the recipe."""
    recipes = tmp_path / "recipes"
    shutil.copytree(RECIPES / "vllm", recipes / "vllm")
    data = yaml.safe_load((RECIPES / "vllm" / "recipe.yaml").read_text(encoding="utf-8"))
    data["source"] = data["outputs"][0].pop("source")
    (recipes / "vllm" / "recipe.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    argv = ["build", "--recipes", str(recipes), "--variant-config", str(VARIANT_CONFIG)]
    argv += ["--channel", str(tmp_path / "channel"), "--source-channel", mirror.as_uri(), "--test", "skip"]
    argv += ["--variant", "cuda_compiler_version=12.9", "--only", "vllm-pascal", "--no-preflight"]
    code, out = run_build(capsys, *argv)
    assert code == 1, out
    assert "FAILED vllm-pascal" in out
    assert "recipe vllm" in out


def test_dry_run_prints_the_full_ordered_plan_of_the_real_recipes(tmp_path, capsys):
    channel = tmp_path / "channel"
    argv = ["build", "--dry-run", "--recipes", str(RECIPES), "--variant-config", str(VARIANT_CONFIG)]
    # The table alone: no conda-forge to solve against here (tests/test_preflight_solvable.py).
    code, out = run_build(capsys, *argv, "--channel", str(channel), "--no-preflight")
    assert code == 0, out
    plan = make_plan(RECIPES, VARIANT_CONFIG, channel)
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == len(plan.builds) == 68
    for row, build in zip(rows, plan.builds, strict=True):
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[0] == str(build.position + 1)
        assert cells[1] == build.output.name
        assert cells[-1] == "build"
    assert not channel.exists()  # a dry run writes nothing


def test_dry_run_marks_what_the_channel_has_and_what_is_not_selected(built, mirror, capsys):
    recipes, channel, _ = built
    (channel / SUBDIR / next(p.name for p in (channel / SUBDIR).glob("chain-stack-*cuda126*"))).unlink()
    index_channel(channel)
    code, out = run_build(
        capsys, *build_argv(recipes, channel, mirror, "--dry-run", "--up-to", "chain-stack")
    )
    assert code == 0
    assert out.count("skip (in channel)") == 7
    assert out.count("│ build ") == 1


def test_only_and_up_to_select_by_package_or_recipe(tmp_path):
    plan = make_plan(fixture_recipes(tmp_path), FIXTURE_VARIANTS, tmp_path / "channel")
    assert [b.output.name for b in select_builds(plan, only=["chain-tools"])] == ["chain-tools"] * 2
    up_to = select_builds(plan, up_to=["chain-mid"])
    assert [b.output.name for b in up_to] == CHAIN_ORDER[:6]
    assert [b.output.name for b in select_builds(plan, only=["chain-base"])] == CHAIN_ORDER[:4]
    with pytest.raises(PascalForgeError, match="no package or recipe named chain-nope"):
        select_builds(plan, only=["chain-nope"])


def test_live_view_on_a_terminal_shows_the_build_and_its_result(tmp_path, mirror):
    channel = tmp_path / "channel"
    index_channel(channel)
    plan = make_plan(fixture_recipes(tmp_path), FIXTURE_VARIANTS, channel)
    options = BuildOptions.for_channel(channel, source_channels=(mirror.as_uri(),))
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200)
    with LiveReporter(console) as reporter:
        report = build_channel(plan, select_builds(plan, only=["libchain"]), options, reporter)
    assert report.ok and report.count("built") == 2
    assert "built libchain 1.0.0 cuda126_pascal_" in screen.getvalue()
    assert 0 < report.engine_seconds < report.seconds


def test_a_package_moved_in_but_not_indexed_is_invisible_until_indexed(built, tmp_path):
    _, channel, _ = built
    extra = tmp_path / "extra"
    extra.mkdir()
    source = next((channel / SUBDIR).glob("libchain-*.conda"))
    copy = extra / source.name.replace("libchain-1.0.0", "libchain-1.0.1")
    copy.write_bytes(source.read_bytes())
    published = publish_package(copy, channel, SUBDIR)
    assert published.is_file()
    assert published.name not in indexed_files(channel, SUBDIR)
    assert not list(channel.glob(".pascal-forge-*"))


def test_cuda_13_in_the_matrix_is_refused_before_building(tmp_path, mirror, capsys):
    variants = tmp_path / "cbc.yaml"
    variants.write_text('cuda_compiler_version: ["13.0"]\ncuda_arch_list: ["6.0;6.1"]\n', encoding="utf-8")
    argv = build_argv(fixture_recipes(tmp_path), tmp_path / "channel", mirror)
    argv[argv.index("--variant-config") + 1] = str(variants)
    code, out = run_build(capsys, *argv)
    assert code == 2
    assert "CUDA 13 dropped sm_60/sm_61" in out
    assert not (tmp_path / "build-logs").exists()


def _payload_recipe(tmp_path: Path, url: str, sha: str, disk_gib: float | None = None) -> Path:
    recipe = tmp_path / "payload-recipes" / "payload"
    recipe.mkdir(parents=True, exist_ok=True)
    text = (
        'package: {name: payload, version: "1.0"}\n'
        f"source: {{url: {url}, sha256: {sha}}}\n"
        'build: {string: "cuda129_pascal_0", script: ["mkdir -p $PREFIX/share", '
        '"cp hello.txt $PREFIX/share/"]}\n'
    )
    if disk_gib is not None:
        text += f"extra: {{build-disk-gib: {disk_gib}}}\n"
    (recipe / "recipe.yaml").write_text(text, encoding="utf-8")
    return recipe.parent


def test_preflight_names_an_unreachable_source_and_trusts_the_source_cache(tmp_path, mirror, capsys):
    served = tmp_path / "served"
    served.mkdir()
    (served / "hello.txt").write_text("hello\n")
    subprocess.run(["tar", "czf", "payload-1.0.tar.gz", "hello.txt"], cwd=served, check=True)
    sha = sha256(served / "payload-1.0.tar.gz")
    channel = tmp_path / "channel"
    work = tmp_path / "build-work"
    with serving(served) as base:
        url = f"{base}/payload-1.0.tar.gz"
        recipes = _payload_recipe(tmp_path, url, sha)
        plan = make_plan(recipes, FIXTURE_VARIANTS, channel)
        assert preflight(plan.builds, work, timeout=5) == []
        code, out = run_build(capsys, *build_argv(recipes, channel, mirror))
        assert code == 0, out

    # The server is gone: the cached source still counts, a missing one is named.
    assert preflight(plan.builds, work, timeout=5) == []
    findings = preflight(plan.builds, tmp_path / "empty-work", timeout=5)
    assert [f.severity for f in findings] == ["error"]
    assert "recipe payload: source " + url in findings[0].message
    argv = build_argv(recipes, tmp_path / "other", mirror, "--work-dir", str(tmp_path / "w2"))
    code, out = run_build(capsys, *argv)
    assert code == 2
    assert "recipe payload: source" in out
    assert "--no-preflight" in out


def test_preflight_refuses_a_build_the_disk_cannot_hold(tmp_path):
    recipes = _payload_recipe(tmp_path, "http://127.0.0.1:9/payload.tar.gz", "0" * 64, disk_gib=10**9)
    plan = make_plan(recipes, FIXTURE_VARIANTS, tmp_path / "channel")
    findings = preflight(plan.builds, tmp_path / "work", check_sources=False)
    assert len(findings) == 1
    assert "recipe payload: its build needs about 1e+09 GiB of disk" in findings[0].message
    small = _payload_recipe(tmp_path, "http://127.0.0.1:9/payload.tar.gz", "0" * 64, disk_gib=0.001)
    plan = make_plan(small, FIXTURE_VARIANTS, tmp_path / "channel")
    assert preflight(plan.builds, tmp_path / "work", check_sources=False) == []


def test_the_default_folders_sit_next_to_the_channel():
    options = BuildOptions.for_channel(REPO / "channel")
    assert options.work_dir == REPO / "build-work"
    assert options.log_dir == REPO / "build-logs"
    assert options.source_channels == ("conda-forge",)
