"""Compile the GPU check's kernels for sm_61 with the patched triton and write PTX + manifest.

Run here (no GPU needed): `python scripts/gpu/make_pascal_ptx.py OUT_DIR [TRITON_VERSION]`
(default: the seed stack's triton, conda_build_config.yaml). OUT_DIR then holds only PTX and
manifest.json, which scripts/gpu/run_pascal_ptx.py loads on a GPU machine.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from pascal_forge.checks.triton.suite import prepare_tree, run_suite
from pascal_forge.pascal import P40
from pascal_forge.recipes.patches import patch_check_target, recipe_patch_series
from pascal_forge.recipes.recipe import Recipe
from pascal_forge.recipes.variants import stacks
from pascal_forge.upstream.artifacts import default_cache_dir

REPO = Path(__file__).resolve().parents[2]
VARIANT_CONFIG = REPO / "conda_build_config.yaml"
CAPABILITY = P40.capability
CASES = [
    *(
        f"atomic_add[{dtype},{order},gpu]"
        for dtype in ("fp16", "fp32", "i32")
        for order in ("relaxed", "acq_rel")
    ),
    "atomic_add[fp16,acquire,cta]",
    "atomic_add[fp16,release,sys]",
    "atomic_add[u64,acq_rel,gpu]",
    "atomic_max[fp32,acq_rel,gpu]",
    "atomic_min[i32,acquire,gpu]",
    "atomic_max[u32,release,gpu]",
    "atomic_xchg[i64,acq_rel,gpu]",
    "atomic_and[u32,acq_rel,gpu]",
    "atomic_or[i64,relaxed,gpu]",
    "atomic_xor[i32,release,cta]",
    *(f"atomic_cas[{dtype},acq_rel,gpu]" for dtype in ("fp16", "bf16", "i16", "i32", "i64")),
    "atomic_cas[u16,acquire,cta]",
    "atomic_add_scalar[fp16,acq_rel]",
    "atomic_add_scalar[i32,acq_rel]",
    "reduce[sum,fp32]",
    "reduce[max,fp16]",
    "inductor_persistent_softmax[fp32]",
    "inductor_index_put_atomic_add[fp16]",
    "inductor_index_put_atomic_add[fp32]",
]


def main(out_dir: Path, triton_version: str | None = None) -> int:
    """Write the PTX of `triton_version` (default: the seed stack's, the GPU machine's own
    triton) with that version's own series."""
    triton_version = triton_version or stacks(VARIANT_CONFIG)[0].triton
    recipe = Recipe("triton", REPO / "recipes" / "triton")
    cache = default_cache_dir().parent / "pascal-kernels"
    tree = prepare_tree(
        patch_check_target(recipe, triton_version),
        recipe_patch_series(recipe, VARIANT_CONFIG, triton_version),
        cache,
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    manifest = {}
    for case in CASES:
        run = run_suite(tree, "patched", [CAPABILITY], match=case, ptx_dir=out_dir / "raw")
        result = run.result(case, CAPABILITY)
        if result.status != "ok":
            raise SystemExit(f"{case}: did not compile: {result.detail}")
        ptx = out_dir / f"{len(manifest):02d}.ptx"
        shutil.copy(result.ptx, ptx)
        manifest[case] = ptx.name
    shutil.rmtree(out_dir / "raw")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{len(manifest)} kernels of triton {triton_version} for sm_{CAPABILITY} in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), *sys.argv[2:3]))
