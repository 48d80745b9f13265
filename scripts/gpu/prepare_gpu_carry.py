"""Build, without a GPU, everything the Pascal-form numerics run takes to the GPU machine.

    python scripts/gpu/prepare_gpu_carry.py DEST

DEST then holds (about 25 MiB, within the 64 MiB a GPU call carries):
- triton-overlay/: the files our series for the seed stack's triton (3.6.0) changes, patched, with
  the released wheel's sha256 of each (the GPU machine has its own triton 3.6.0 and no GNU patch);
- vllm-<version>-pascal.tgz / vllm-<version>-stock.tgz for the seed's and the current stack's
  release (conda_build_config.yaml's stacks): the Python files of its sdist with and without our
  series for that version (recipes/vllm/patches/<version>/, as the recipe lists it);
- stack.env: SEED_VLLM=... and CURRENT_VLLM=..., which run_gpu_numerics.sh reads;
- wrong-tiles/: prefix_prefill.py of the patched tree with a deliberately wrong tile plan
  (the twin that the error bound must catch);
- pydeps/: einops, unpacked from its PyPI wheel: vLLM's FLA ops (since 0.33.0) import it, and the GPU
  machine's environment lacks it;
- scripts/: this folder and pascal_forge's errors and pascal (the Pascal facts) modules, the only
  ones of the package the harness imports (HARNESS_MODULES).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS / "gpu"))

from pascal_form import write_overlay  # noqa: E402

from pascal_forge.checks.vllm.compile import patched_upstream  # noqa: E402
from pascal_forge.recipes.patches import patch_check_target, recipe_patch_series, unpack_artifact  # noqa: E402
from pascal_forge.recipes.recipe import Recipe  # noqa: E402
from pascal_forge.recipes.variants import stacks  # noqa: E402
from pascal_forge.upstream.artifacts import UpstreamArtifact, fetch  # noqa: E402

VARIANT_CONFIG = REPO / "conda_build_config.yaml"
PREFIX_PREFILL = "vllm/v1/attention/ops/prefix_prefill.py"
# Pure Python; vllm/third_party/flash_linear_attention/ops/layernorm_guard.py imports it.
EINOPS = UpstreamArtifact(
    project="einops",
    filename="einops-0.8.2-py3-none-any.whl",
    sha256="54058201ac7087911181bfec4af6091bb59380360f069276601256a76af08193",
)
# Deliberately wrong Pascal tile plans for prefix_prefill, each a (name, old, new) edit of the
# patched file: the grid drops the last partial query tile; the ALiBi kernel's context loop
# drops the last partial key tile (a BLOCK_N that skips the tail).
WRONG_TILES = (
    (
        "grid-drops-query-tail",
        'grid_fn = lambda META: (batch, head, triton.cdiv(max_input_len, META["BLOCK_M"]))',
        'grid_fn = lambda META: (batch, head, max(1, max_input_len // META["BLOCK_M"]))',
    ),
    (
        "alibi-keys-skip-tail",
        "    for start_n in range(0, cur_batch_ctx_len, BLOCK_N):",
        "    for start_n in range(0, cur_batch_ctx_len - BLOCK_N + 1, BLOCK_N):",
    ),
)

# The seed stack's releases: the device's own triton is the seed's (3.6.0). The current stack's
# vLLM runs on that triton too: its triton wheel (248 MB for 3.8.0) does not fit a GPU call's 64 MiB.
STACKS = stacks(VARIANT_CONFIG)
SEED_TRITON = STACKS[0].triton
SEED_VLLM = STACKS[0].vllm
CURRENT_VLLM = STACKS[-1].vllm
VLLM_VERSIONS = (SEED_VLLM, CURRENT_VLLM)


def triton_series(repo: Path = REPO) -> list[Path]:
    """Our triton patch series in application order, wherever the recipe keeps it
    (recipes/triton/patches/ or a per-version folder): the recipe's own patch list decides."""
    return recipe_patch_series(Recipe("triton", repo / "recipes" / "triton"), VARIANT_CONFIG, SEED_TRITON)


def vllm_series(repo: Path = REPO, version: str = SEED_VLLM) -> list[Path]:
    return recipe_patch_series(Recipe("vllm", repo / "recipes" / "vllm"), VARIANT_CONFIG, version)


def _changed_package_files(series: list[Path], path_map: dict[str, str]) -> list[str]:
    """Package-relative paths (triton/...) of the files the series changes."""
    names = []
    for patch in series:
        for line in patch.read_text(encoding="utf-8").splitlines():
            if line.startswith("+++ b/"):
                path = line.removeprefix("+++ b/").strip()
                for source, target in path_map.items():
                    if path.startswith(source):
                        path = target + path[len(source) :]
                names.append(path.removeprefix("triton/"))
    return sorted(set(names))


def _python_tarball(tree: Path, destination: Path) -> None:
    with tarfile.open(destination, "w:gz") as archive:
        for path in sorted((tree / "vllm").rglob("*.py")):
            archive.add(path, arcname=str(path.relative_to(tree)))


def wrong_tile_variants(patched_prefix_prefill: str) -> dict[str, str]:
    variants = {}
    for name, old, new in WRONG_TILES:
        if patched_prefix_prefill.count(old) != 1:
            raise SystemExit(f"wrong-tile variant {name}: {old!r} is not in prefix_prefill.py once")
        variants[name] = patched_prefix_prefill.replace(old, new)
    return variants


def write_triton_overlay(destination: Path, scratch_dir: Path) -> None:
    """destination/triton-overlay: our seed triton series' files for the device's own triton."""
    triton = Recipe("triton", REPO / "recipes" / "triton")
    target = patch_check_target(triton, SEED_TRITON)
    assert target is not None
    stock = unpack_artifact(target, scratch_dir / "triton-stock") / "triton"
    patched = (
        patched_upstream(triton, VARIANT_CONFIG, scratch_dir / "triton-patched", None, SEED_TRITON) / "triton"
    )
    files = _changed_package_files(triton_series(), dict(target.path_map))
    shutil.rmtree(destination / "triton-overlay", ignore_errors=True)
    write_overlay(stock, patched, files, destination / "triton-overlay")
    print(f"triton overlay: {files}")


# The pascal_forge modules the harness imports on the GPU machine (stdlib only: the machine lacks
# the tool's dependencies).
HARNESS_MODULES = ("__init__.py", "errors.py", "pascal.py")


def copy_scripts(destination: Path) -> None:
    """destination/scripts: this folder and the pascal_forge modules the harness imports."""
    scripts = destination / "scripts"
    shutil.rmtree(scripts, ignore_errors=True)
    shutil.copytree(SCRIPTS / "gpu", scripts / "gpu", ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "pascal_forge").mkdir(parents=True)
    for name in HARNESS_MODULES:
        shutil.copy(SCRIPTS / "pascal_forge" / name, scripts / "pascal_forge" / name)


def main(destination: Path) -> int:
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pascal-forge-gpu-carry-") as scratch:
        scratch_dir = Path(scratch)
        write_triton_overlay(destination, scratch_dir)

        vllm = Recipe("vllm", REPO / "recipes" / "vllm")
        trees = {}
        for version in VLLM_VERSIONS:
            vllm_target = patch_check_target(vllm, version)
            assert vllm_target is not None
            trees[version] = patched_upstream(
                vllm, VARIANT_CONFIG, scratch_dir / f"vllm-{version}-pascal", None, version
            )
            stock_tree = unpack_artifact(vllm_target, scratch_dir / f"vllm-{version}-stock")
            _python_tarball(trees[version], destination / f"vllm-{version}-pascal.tgz")
            _python_tarball(stock_tree, destination / f"vllm-{version}-stock.tgz")
        pascal_tree = trees[SEED_VLLM]
        (destination / "stack.env").write_text(f"SEED_VLLM={SEED_VLLM}\nCURRENT_VLLM={CURRENT_VLLM}\n")

        wrong = destination / "wrong-tiles"
        shutil.rmtree(wrong, ignore_errors=True)
        wrong.mkdir()
        for name, text in wrong_tile_variants((pascal_tree / PREFIX_PREFILL).read_text()).items():
            (wrong / f"{name}.py").write_text(text)

    pydeps = destination / "pydeps"
    shutil.rmtree(pydeps, ignore_errors=True)
    with zipfile.ZipFile(fetch(EINOPS)) as wheel:
        wheel.extractall(pydeps)

    copy_scripts(destination)
    size = sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())
    print(f"{destination}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("destination", type=Path)
    sys.exit(main(parser.parse_args().destination))
