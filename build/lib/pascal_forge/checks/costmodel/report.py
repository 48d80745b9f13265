"""The cost model's report: every config on both cards, decode and a prefill chunk, kernel by kernel."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .cards import P40, P100, Card
from .kernels import FP32_MATH_PATCHES, Kernel
from .model import (
    QWEN3_8B,
    QWEN3_30B_A3B,
    QWEN3_32B,
    KernelTable,
    Prediction,
    Setup,
    fits,
    format_prediction,
    kernels_of,
    predict,
    summary_rows,
)
from .table import Toolchain, build_table

# The configs of issue 26, each with the linear paths to compare. "before": what vLLM 0.34.0
# runs today (Exllama for GPTQ below 7.5, or the Triton W4A16 path if the engine picks it);
# "after": the fp32 rewrite of Exllama and the proposed fp32 GEMV (on paper, not in vLLM).
SETUPS = [
    Setup(QWEN3_8B, "fp16", 1),
    Setup(QWEN3_8B, "fp16", 2),
    Setup(QWEN3_8B, "exllama", 1),
    Setup(QWEN3_8B, "triton-w4a16", 1),
    Setup(QWEN3_8B, "exllama-fp32", 1),
    Setup(QWEN3_8B, "proposed-gemv", 1),
    Setup(QWEN3_32B, "exllama", 2),
    Setup(QWEN3_32B, "triton-w4a16", 2),
    Setup(QWEN3_32B, "exllama-fp32", 2),
    Setup(QWEN3_32B, "proposed-gemv", 2),
    Setup(QWEN3_30B_A3B, "exllama", 2),
    Setup(QWEN3_30B_A3B, "exllama-fp32", 2),
    Setup(QWEN3_30B_A3B, "proposed-gemv", 2),
]
CARDS: tuple[Card, ...] = (P40, P100)
CAPABILITIES = tuple(card.capability for card in CARDS)
DECODE_CONTEXT = 1024  # cached tokens at the decode step
PREFILL_CHUNK = 512  # prompt tokens in one prefill chunk (context 0)
BATCHED_STREAMS = 16  # concurrent streams of the batched decode row (what `pascal-forge bench` runs)

DISCLAIMER = """\
These figures are a MODEL, not a measurement: no Pascal card ran anything. Each launch's time
is the slowest of (bytes it must move / the card's bandwidth), (its instructions, counted from
the compiled PTX, at the card's published issue rates) and (its load/store instructions at 1/4
of the lane rate); a step is the sum of its launches. It ignores launch gaps and CPU time
between kernels (vLLM's CUDA graphs hide part of them), occupancy and latency (it assumes
enough warps to reach the rates), caches (every weight byte comes from DRAM once, re-read
activations are free), ptxas's own rewriting of the PTX, the tensor-parallel all-reduces over
PCIe, sampling and the embedding lookup. Attention is priced from its shape, not its PTX."""


@dataclass(frozen=True)
class Report:
    decode: list[Prediction]
    batched: list[Prediction]
    prefill: list[Prediction]

    def text(self, detail: bool = True) -> str:
        parts = [DISCLAIMER, "", f"Decode, one stream, context {DECODE_CONTEXT} (tok/s per stream):"]
        parts.append(summary_rows(self.decode))
        parts += [
            "",
            f"Decode, {BATCHED_STREAMS} streams, context {DECODE_CONTEXT} each (tok/s, all streams):",
        ]
        parts.append(summary_rows(self.batched, roof="dram"))
        parts += ["", f"Prefill, one chunk of {PREFILL_CHUNK} tokens (prompt tok/s):"]
        parts.append(summary_rows(self.prefill, roof="fp32"))
        if detail:
            for prediction in self.decode + self.batched + self.prefill:
                kind = {1: "decode", BATCHED_STREAMS: f"decode, {BATCHED_STREAMS} streams"}.get(
                    prediction.tokens, f"prefill {prediction.tokens}"
                )
                parts += ["", f"== {prediction.setup.label} on {prediction.card.name} ({kind})"]
                parts.append(format_prediction(prediction))
        return "\n".join(parts)


def make_report(table: KernelTable, setups: list[Setup] = SETUPS) -> Report:
    decode, batched, prefill = [], [], []
    for setup in setups:
        for card in CARDS:
            if not fits(setup, card):
                continue
            decode.append(predict(setup, card, table, 1, DECODE_CONTEXT))
            streams = BATCHED_STREAMS
            batched.append(predict(setup, card, table, streams, DECODE_CONTEXT, sequences=streams))
            # A causal chunk attends on average to half of itself.
            prefill.append(predict(setup, card, table, PREFILL_CHUNK, PREFILL_CHUNK // 2))
    return Report(decode, batched, prefill)


def compile_table(tools: Toolchain) -> KernelTable:
    kernels = kernels_of(SETUPS, [1, BATCHED_STREAMS, PREFILL_CHUNK], CAPABILITIES)
    return build_table(kernels, CAPABILITIES, tools)


def _vllm_tree(repository: Path, upstream_cache: Path, work_dir: Path, patched: bool) -> Path:
    """The current stack's vLLM sdist with this repository's series, kept under `work_dir`.

    Not `patched`: the series without the patches of the `patched` kernels
    (kernels.FP32_MATH_PATCHES: 0040/0041 to q_gemm.cu, 0042 to moe_wna16.cu), so that those
    kernels are counted as released (the "before" rows; moe_wna16.cu keeps 0003, without which
    it does not compile below sm_70).
    """
    from ...recipes.recipe import Recipe
    from ..vllm.compile import current_release, patched_upstream

    config = repository / "conda_build_config.yaml"
    version = current_release(config).version
    leave_out = () if patched else FP32_MATH_PATCHES
    # Named apart from each other and from the single tree older versions kept in a --work-dir.
    vllm_dir = work_dir / f"vllm-{version}-{'whole-series' if patched else 'before'}"
    if (vllm_dir / f"vllm-{version}").is_dir():
        return vllm_dir / f"vllm-{version}"
    vllm = Recipe(name="vllm", directory=repository / "recipes" / "vllm")
    return patched_upstream(vllm, config, vllm_dir, upstream_cache, version, leave_out_patches=leave_out)


def patched_kernels(shipped: KernelTable) -> list[Kernel]:
    """What the patched rows compile: the kernels marked `patched` (from the whole series), and
    the released kernels of those rows that the shipped counts lack (the Triton AWQ GEMM)."""
    kernels = kernels_of(PATCHED_SETUPS, [1, BATCHED_STREAMS, PREFILL_CHUNK], CAPABILITIES)
    return [k for k in kernels if k.patched or any((k.name, c) not in shipped for c in CAPABILITIES)]


def default_toolchain(repository: Path, upstream_cache: Path, work_dir: Path, nvcc: Path) -> Toolchain:
    """The current stack's vLLM and triton (conda_build_config.yaml) with this repository's series."""
    import torch

    from ...recipes.recipe import Recipe
    from ..vllm.compile import current_release, triton_tree

    release = current_release(repository / "conda_build_config.yaml")
    triton = Recipe(name="triton", directory=repository / "recipes" / "triton")
    triton_dir = work_dir / f"triton-{release.triton_version}"
    if (triton_dir / "triton").is_dir():
        triton_root = triton_dir
    else:
        config = repository / "conda_build_config.yaml"
        triton_root, _ = triton_tree(triton, config, triton_dir, upstream_cache, release.triton_version)
    return Toolchain(
        vllm_tree=_vllm_tree(repository, upstream_cache, work_dir, patched=False),
        repository=repository,
        triton_tree=triton_root,
        torch_include=Path(torch.__file__).parent / "include",
        nvcc=nvcc,
        cache_dir=repository / ".cache" / "costmodel-ptx",
    )


def attention_hot_loops(repository: Path, upstream_cache: Path, work_dir: Path) -> str:
    """The hot loops of TRITON_ATTN's decode kernels, as the seed stack's vLLM's own launchers
    compile them.

    Its Triton probe (vllm.compile.run_triton_probe: its launchers, a CPU torch answering as a
    P40/P100, the stack's patched triton) runs the decode cases of vllm_kernel_cases; the PTX
    Triton leaves in its cache is counted here. The current stack's probe needs its own Python
    packages (scripts/setup-vllm-deps.sh), which this does not install.
    """
    from ...recipes.recipe import Recipe
    from ..vllm.compile import patched_upstream, run_triton_probe, seed_release, triton_tree
    from .model import fp16_in_hot_loop
    from .ptx import count_ptx

    config = repository / "conda_build_config.yaml"
    release = seed_release(config)
    vllm_tree = patched_upstream(
        Recipe(name="vllm", directory=repository / "recipes" / "vllm"),
        config,
        work_dir / f"vllm-{release.version}",
        upstream_cache,
        release.version,
    )
    triton_root, ptxas = triton_tree(
        Recipe(name="triton", directory=repository / "recipes" / "triton"),
        config,
        work_dir / f"triton-{release.triton_version}",
        upstream_cache,
        release.triton_version,
    )
    lines = [
        f"{'kernel (sm)':<36} {'fp16 in hot loop':>16} {'fp32 FMA':>9} {'cvt':>5} {'shared':>7}"
        "  (per thread, hot loop body)"
    ]
    for card in CARDS:
        cache = work_dir / f"attention-{card.capability}"
        run_triton_probe(
            triton_root,
            ptxas,
            vllm_tree,
            card.capability,
            release.version,
            only="unified_attn decode",
            triton_cache=cache,
        )
        for ptx in sorted(cache.glob("*/*.ptx")):
            for name, counts in count_ptx(ptx.read_text()).items():
                if not name.startswith("kernel_unified_attention"):
                    continue
                hot, flag = counts.hot, "yes" if fp16_in_hot_loop(counts) else "no"
                label = f"{name} (sm_{card.capability})"
                lines.append(
                    f"{label:<36} {flag:>16} {hot.fp32_fma:>9} {hot.cvt:>5} {hot.shared_accesses:>7}"
                )
    return "\n".join(lines)


# Exllama and moe_wna16 before and after vLLM patches 0040/0041/0042 (issue 26 item 2), on the
# 4-bit configs (the MoE on one card and two; one P100 cannot hold it, `fits` drops that row).
PATCHED_SETUPS = [
    Setup(QWEN3_8B, "exllama", 1),
    Setup(QWEN3_8B, "exllama-patched", 1),
    Setup(QWEN3_32B, "exllama", 2),
    Setup(QWEN3_32B, "exllama-patched", 2),
    Setup(QWEN3_30B_A3B, "exllama", 1),
    Setup(QWEN3_30B_A3B, "exllama-patched", 1),
    Setup(QWEN3_30B_A3B, "exllama", 2),
    Setup(QWEN3_30B_A3B, "exllama-patched", 2),
    Setup(QWEN3_8B, "awq-triton", 1),
    Setup(QWEN3_8B, "awq-triton-patched", 1),
]


def patched_toolchain(repository: Path, upstream_cache: Path, work_dir: Path, nvcc: Path) -> Toolchain:
    """default_toolchain, with the current stack's vLLM and this repository's whole series (0040
    to 0044 included) as its patched tree.

    The patched rows take the other kernels from the counts shipped with the package
    (table.SHIPPED_COUNTS), so only q_gemm.cu (about 5 minutes per capability on 2 busy cores),
    moe_wna16.cu (about 20 s) and the Triton AWQ GEMM (seconds) are compiled here, then cached.
    """
    tools = default_toolchain(repository, upstream_cache, work_dir, nvcc)
    return replace(tools, patched_vllm_tree=_vllm_tree(repository, upstream_cache, work_dir, patched=True))


def patched_exllama_report(shipped: KernelTable, tools: Toolchain) -> str:
    """Decode (one stream and 16) and a prefill chunk, Exllama and moe_wna16 as released vs with
    0040/0041/0042, and the Triton AWQ GEMM as released vs with 0044."""
    from ..vllm.compile import current_release

    version = current_release(tools.repository / "conda_build_config.yaml").version
    table = {**shipped, **build_table(patched_kernels(shipped), CAPABILITIES, tools)}
    report = make_report(table, PATCHED_SETUPS)
    note = (
        f"exllama: vLLM {version} as released (the counts shipped with the package); exllama-patched:\n"
        f"q_gemm.cu (0040, 0041) and moe_wna16.cu (0042, the MoE experts) of vLLM {version} with\n"
        f"recipes/vllm/patches/{version}, counted from their compute_61/compute_60 PTX. On a P100 the\n"
        "patched build keeps cublasHgemm for prefill (0041 is for capability 6.1 only,\n"
        "kernels.FP32_GEMM_CAPABILITIES) and moe_wna16's half2 loop (0042 is for compute_61 only).\n"
        "awq-triton: patch 0036's Triton AWQ GEMM as released (fp16 dequant and accumulator);\n"
        "awq-triton-patched: with 0044, whose fp32 path runs below 7.0 (both cards)."
    )
    return note + "\n\n" + report.text()
