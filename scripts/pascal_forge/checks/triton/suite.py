"""Run the Pascal compile suite against the stock and the patched triton wheel.

The released wheel is unpacked once under the cache (keyed by its sha256); the patched tree
is a hard-linked copy of it with the recipe's series applied (GNU patch replaces the files it
changes, so the stock tree stays intact), keyed by the series' content. Each run compiles in a
fresh subprocess with its own Triton cache, so every result comes from a real ptxas call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import PascalForgeError
from ...pascal import capabilities as pascal_capabilities
from ...recipes.patches import PatchCheckTarget, apply_series, patch_check_target, recipe_patch_series
from ...recipes.recipe import Recipe
from ...recipes.variants import arch_list
from ...upstream.artifacts import fetch
from .. import PACKAGE_ROOT

_LOG = logging.getLogger(__name__)
# Inside the wheel: the CUDA 12 ptxas Triton bundles for targets below sm_100 (12.8 in 3.6.0, 12.9.86
# in 3.8.0, byte-identical to NVIDIA's cuda-nvcc 12.9.86 one); a CUDA 13 ptxas refuses sm_6x.
BUNDLED_PTXAS = Path("triton/backends/nvidia/bin/ptxas")


class SuiteError(PascalForgeError):
    """The compile suite cannot run (no CUDA 12 ptxas, a broken tree, a crashed runner)."""


@dataclass(frozen=True)
class CaseResult:
    """One kernel compiled for one capability."""

    case: str
    group: str
    capability: int
    status: str  # "ok" or "fail"
    detail: str
    fixed_by: str | None
    refusal: str | None
    known_failure: str | None
    ptx: Path | None = None

    @property
    def as_expected(self) -> bool:
        """Compiled, or refused with the expected message, or failed as documented."""
        if self.refusal:
            return self.status == "fail" and self.refusal in self.detail
        if self.known_failure:
            return self.status == "fail"
        return self.status == "ok"


@dataclass(frozen=True)
class SuiteRun:
    """All results of one triton tree (stock or patched)."""

    label: str
    tree: Path
    results: tuple[CaseResult, ...]

    def result(self, case: str, capability: int) -> CaseResult:
        for result in self.results:
            if result.case == case and result.capability == capability:
                return result
        raise KeyError(f"{self.label}: no result for {case} on sm_{capability}")


def series_key(patches: Sequence[Path]) -> str:
    """A short digest of the patch files' names and contents, in order."""
    digest = hashlib.sha256()
    for patch in patches:
        digest.update(patch.name.encode() + b"\0" + patch.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def prepare_tree(
    target: PatchCheckTarget, patches: Sequence[Path], trees_dir: Path, upstream_cache: Path | None = None
) -> Path:
    """The wheel unpacked under `trees_dir` (stock when `patches` is empty, else with the series applied).

    The wheel itself comes from `upstream_cache` (default: sources.default_cache_dir()).
    """
    stock = trees_dir / f"{target.artifact.sha256[:16]}-stock"
    if not stock.is_dir():
        wheel = fetch(target.artifact, upstream_cache)
        _LOG.info("unpacking %s into %s", wheel.name, stock)
        _build_atomically(stock, lambda scratch: _unzip(wheel, scratch))
    if not patches:
        return stock
    patched = trees_dir / f"{target.artifact.sha256[:16]}-patched-{series_key(patches)}"
    if not patched.is_dir():

        def build(scratch: Path) -> None:
            shutil.copytree(stock, scratch, symlinks=True, copy_function=os.link, dirs_exist_ok=True)
            apply_series(list(patches), scratch, target.path_map)

        _build_atomically(patched, build)
    return patched


def _unzip(wheel: Path, destination: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            path = Path(archive.extract(member, destination))
            mode = member.external_attr >> 16
            if mode:
                path.chmod(mode & 0o777)


def _build_atomically(final: Path, build) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(scratch)
        os.replace(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def cuda12_ptxas(tree: Path, override: Path | None = None) -> Path:
    """The ptxas to compile with: `override` or the wheel's bundled one, refused unless CUDA 12."""
    ptxas = override or tree / BUNDLED_PTXAS
    try:
        version = subprocess.run([ptxas, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SuiteError(f"{ptxas}: cannot run ptxas ({exc}); pass a CUDA 12.x ptxas") from exc
    if "release 12." not in version:
        raise SuiteError(
            f"{ptxas} is not a CUDA 12 ptxas ({version.strip().splitlines()[-1]}); "
            "CUDA 13 dropped sm_60/sm_61, pass a CUDA 12.x ptxas"
        )
    return ptxas


def run_suite(
    tree: Path,
    label: str,
    capabilities: Sequence[int],
    ptxas: Path | None = None,
    match: str = "",
    ptx_dir: Path | None = None,
) -> SuiteRun:
    """Compile every case (whose name contains `match`) for each capability with `tree`'s triton."""
    ptxas = cuda12_ptxas(tree, ptxas)
    command = [sys.executable, "-m", "pascal_forge.checks.triton.runner", "--match", match]
    for capability in capabilities:
        command += ["--capability", str(capability)]
    if ptx_dir:
        command += ["--ptx-dir", str(ptx_dir)]
    with tempfile.TemporaryDirectory(prefix="pascal-kernels-cache-") as triton_cache:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tree), str(PACKAGE_ROOT)]),
            "TRITON_PTXAS_PATH": str(ptxas),
            "TRITON_CACHE_DIR": triton_cache,
            "TRITON_HOME": triton_cache,
        }
        returncode, lines, stderr = _stream_runner(command, env, label)
    if returncode != 0 or not lines or not lines[0].get("triton", "").startswith(str(tree)):
        raise SuiteError(f"{label}: the compile runner failed (exit {returncode}): {stderr[-2000:]}")
    if len(lines) == 1 and match:
        names = ", ".join(lines[0].get("cases") or [])
        raise SuiteError(f"--match {match!r}: no kernel name contains it; the suite has: {names}")
    results = tuple(
        CaseResult(
            case=line["case"],
            group=line["group"],
            capability=line["capability"],
            status=line["status"],
            detail=line["detail"],
            fixed_by=line["fixed_by"],
            refusal=line["refusal"],
            known_failure=line["known_failure"],
            ptx=Path(line["ptx"]) if line.get("ptx") else None,
        )
        for line in lines[1:]
    )
    return SuiteRun(label=label, tree=tree, results=results)


def _stream_runner(command: list[str], env: dict[str, str], label: str) -> tuple[int, list[dict], str]:
    """Run the compile runner, logging each result as it arrives: a full suite takes minutes."""
    with (
        tempfile.TemporaryFile("w+") as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env) as runner,
    ):
        lines: list[dict] = []
        assert runner.stdout is not None
        for text in runner.stdout:
            if not text.startswith("{"):
                continue
            line = json.loads(text)
            lines.append(line)
            if "case" in line:
                _LOG.info("%s sm_%s %s: %s", label, line["capability"], line["case"], line["status"])
        returncode = runner.wait()
        stderr.seek(0)
        return returncode, lines, stderr.read()


def run_stock_and_patched(
    recipe: Recipe,
    variant_config: Path,
    trees_dir: Path,
    version: str,
    capabilities: Sequence[int] | None = None,
    match: str = "",
    ptx_dir: Path | None = None,
    ptxas: Path | None = None,
) -> tuple[SuiteRun, SuiteRun]:
    """The suite on one version's released wheel, without and with that version's patch series,
    for `capabilities` (default: those of the variant config's cuda_arch_list)."""
    if capabilities is None:
        capabilities = pascal_capabilities(arch_list(variant_config))
    target = patch_check_target(recipe, version)
    if target is None:
        raise SuiteError(f"{recipe.path}: no `extra: patch-check: {version}:` wheel to compile with")
    series = recipe_patch_series(recipe, variant_config, version)
    stock_tree = prepare_tree(target, [], trees_dir)
    _LOG.info(
        "compiling the suite for sm_%s with the stock %s",
        ", sm_".join(map(str, capabilities)),
        target.artifact.filename,
    )
    stock = run_suite(stock_tree, "stock", capabilities, ptxas, match)
    patched_tree = prepare_tree(target, series, trees_dir)
    _LOG.info("compiling it again with the %d patches of %s applied", len(series), recipe.name)
    patched = run_suite(patched_tree, "patched", capabilities, ptxas, match, ptx_dir)
    return stock, patched
