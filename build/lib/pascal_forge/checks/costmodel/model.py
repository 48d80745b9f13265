"""Decode steps and prefill chunks of the configs the issue names, priced kernel by kernel.

A step is the list of launches vLLM makes for one token (decode) or one chunk of prompt
tokens (prefill) in one GPU of a tensor-parallel group; each launch's time comes from the
compiled kernel's counts (cards.Card), and the step's time is their sum. Sampling,
embedding lookups and the tensor-parallel all-reduces are not priced.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from . import kernels as k
from .cards import Card
from .compile import CostModelError
from .kernels import Kernel, Launch
from .ptx import KernelCounts, OpCounts


@dataclass(frozen=True)
class ModelShape:
    """The shapes of a Qwen3-style decoder (its config.json)."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    experts: int = 0
    top_k: int = 0
    moe_intermediate: int = 0

    def linear_parameters(self) -> int:
        """Parameters of the decoder layers' linear layers that one token reads (active experts only)."""
        attention = self.hidden * (self.heads + 2 * self.kv_heads) * self.head_dim
        attention += self.heads * self.head_dim * self.hidden
        if self.experts:
            mlp = self.top_k * 3 * self.hidden * self.moe_intermediate
        else:
            mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attention + mlp)


QWEN3_8B = ModelShape("Qwen3-8B", 4096, 36, 32, 8, 128, 12288, 151936)
QWEN3_32B = ModelShape("Qwen3-32B", 5120, 64, 64, 8, 128, 25600, 151936)
QWEN3_30B_A3B = ModelShape(
    "Qwen3-30B-A3B", 2048, 48, 32, 4, 128, 6144, 151936, experts=128, top_k=8, moe_intermediate=768
)

GROUP_SIZE = 128  # the GPTQ checkpoints' group size

# How a quantized linear layer runs: a function of (op, m, n, k, group_size, repeat) and of the
# card's capability where the path picks its kernels at run time from it.
LinearLaunches = Callable[[str, int, int, int, int, int], list[Launch]]
LinearPath = Callable[[str, int, int, int, int, int, int], list[Launch]]


def _on_every_card(launches: LinearLaunches) -> LinearPath:
    """A path that launches the same kernels whatever the card."""

    def path(op: str, m: int, n: int, kk: int, group_size: int, repeat: int, capability: int) -> list[Launch]:
        return launches(op, m, n, kk, group_size, repeat)

    return path


LINEAR_PATHS: dict[str, LinearPath | None] = {
    "fp16": None,  # cuBLAS
    "exllama": _on_every_card(k.exllama),
    "exllama-fp32": _on_every_card(k.exllama_fp32),
    "exllama-patched": k.exllama_patched,  # 0041's fp32 GEMM on 6.1 only
    "triton-w4a16": _on_every_card(k.triton_w4a16),
    "proposed-gemv": _on_every_card(k.proposed_gemv),
    # AWQ (patch 0036's Triton kernels), as released and with 0044's fp32 path below 7.0
    "awq-triton": _on_every_card(k.awq_triton),
    "awq-triton-patched": k.awq_triton_patched,
}


@dataclass(frozen=True)
class Setup:
    """One row of the table: a model, its weight format and linear path, a card, TP size."""

    model: ModelShape
    linear: str  # a key of LINEAR_PATHS
    tp: int = 1

    @property
    def label(self) -> str:
        if self.linear == "fp16":
            weights = "fp16"
        else:
            weights = f"{'AWQ' if self.linear.startswith('awq') else 'GPTQ'}-int4 [{self.linear}]"
        return f"{self.model.name} {weights}, TP={self.tp}"

    def weight_bytes_per_gpu(self) -> float:
        """Bytes one GPU reads per decode token: its share of the layers and of lm_head (fp16)."""
        parameters = self.model.linear_parameters()
        per_parameter = 2.0 if self.linear == "fp16" else 0.5 + (2.0 + 0.5) / GROUP_SIZE
        lm_head = self.model.vocab * self.model.hidden * 2.0
        return (parameters * per_parameter + lm_head) / self.tp


def _linear(setup: Setup, capability: int, op: str, m: int, n: int, kk: int) -> list[Launch]:
    path = LINEAR_PATHS[setup.linear]
    if path is None:
        return [k.gemm(op, m, n, kk, setup.model.layers)]
    return path(op, m, n, kk, GROUP_SIZE, setup.model.layers, capability)


def step_launches(
    setup: Setup, tokens: int, context: int, sequences: int = 1, *, capability: int
) -> list[Launch]:
    """Every launch of one step of `tokens` new tokens over `sequences` sequences of `context`
    cached tokens each (decode: one token per sequence; prefill: one sequence), per GPU, on a
    card of `capability`."""
    s, tp, m = setup.model, setup.tp, tokens

    layers = s.layers
    heads, kv_heads = s.heads // tp, max(1, s.kv_heads // tp)
    qkv = (heads + 2 * kv_heads) * s.head_dim
    launches = [
        k.elementwise("input_layernorm", k.FUSED_ADD_RMS_NORM, m * s.hidden, 3 * k.FP16, layers),
        *_linear(setup, capability, "qkv_proj", m, qkv, s.hidden),
        k.elementwise(
            "q_norm + k_norm", k.RMS_NORM, m * (heads + kv_heads) * s.head_dim, 2 * k.FP16, 2 * layers
        ),
        k.elementwise("rotary", k.ROTARY, m * (heads + kv_heads) * s.head_dim, 2 * k.FP16, layers),
        k.elementwise(
            "reshape_and_cache", k.RESHAPE_AND_CACHE, m * 2 * kv_heads * s.head_dim, 2 * k.FP16, layers
        ),
        k.attention("attention", m, context, heads, kv_heads, s.head_dim, layers, sequences),
        *_linear(setup, capability, "o_proj", m, s.hidden, heads * s.head_dim),
        k.elementwise("post_attention_layernorm", k.FUSED_ADD_RMS_NORM, m * s.hidden, 3 * k.FP16, layers),
    ]
    if s.experts:
        inter = s.moe_intermediate // tp
        launches += [
            k.gemm("router", m, s.experts, s.hidden, layers),
            k.elementwise("topk_softmax", k.TOPK_SOFTMAX, m * s.experts, 4, layers),
            *moe_experts(setup, "experts w13", m, 2 * inter, s.hidden),
            k.elementwise("silu_and_mul", k.SILU_AND_MUL, m * s.top_k * inter, 3 * k.FP16, layers),
            *moe_experts(setup, "experts w2", m, s.hidden, inter),
        ]
    else:
        inter = s.intermediate // tp
        launches += [
            *_linear(setup, capability, "gate_up_proj", m, 2 * inter, s.hidden),
            k.elementwise("silu_and_mul", k.SILU_AND_MUL, m * inter, 3 * k.FP16, layers),
            *_linear(setup, capability, "down_proj", m, s.hidden, inter),
        ]
    launches += [
        k.elementwise("norm", k.RMS_NORM, m * s.hidden, 2 * k.FP16, 1),
        # vLLM computes logits for the last token of each sequence only.
        k.gemm("lm_head", sequences, s.vocab // tp, s.hidden, 1),
    ]
    return launches


def moe_experts(setup: Setup, op: str, m: int, n: int, kk: int) -> list[Launch]:
    s = setup.model
    if setup.linear == "fp16":
        return [k.gemm(op, m * s.top_k, n, kk, s.layers)]
    if setup.linear == "proposed-gemv" and m == 1:  # the same GEMV, one expert slot per launch
        return k.proposed_gemv(op, 1, n, kk, GROUP_SIZE, s.layers * s.top_k)
    if m * s.top_k / s.experts <= 6:  # should_moe_wna16_use_cuda (fused_moe.py:1384 in 0.34.0)
        kernel = {"exllama": k.MOE_WNA16, "triton-w4a16": k.MOE_WNA16, "exllama-patched": k.MOE_WNA16_PATCHED}
        kernel = kernel.get(setup.linear, k.MOE_WNA16_FP32)
        return k.moe_wna16(op, m, s.top_k, n, kk, GROUP_SIZE, s.layers, kernel)
    # Longer chunks run the Triton fused_moe kernel; priced here as its own GEMMs.
    return k.triton_w4a16(op, m * s.top_k, n, kk, GROUP_SIZE, s.layers)


# --------------------------------------------------------------------------- pricing


@dataclass(frozen=True)
class PricedLaunch:
    launch: Launch
    counts: OpCounts  # of one launch (zero where priced from shape only)
    seconds: float  # of one launch
    bound: str  # "DRAM" | "ALU" | "fp16" | "LSU"
    fp16_hot_loop: bool

    @property
    def total_seconds(self) -> float:
        return self.seconds * self.launch.repeat


KernelTable = Mapping[tuple[str, int], KernelCounts]  # (kernel name, capability) -> its PTX counts


def fp16_in_hot_loop(counts: KernelCounts) -> bool:
    """The kernel's hottest loop (or its body, without loops) runs fp16 arithmetic."""
    chain = counts.hot_chain()
    return any(loop.body.fp16 for loop in chain) if chain else counts.outside.fp16 > 0


def price(launch: Launch, card: Card, table: KernelTable) -> PricedLaunch:
    """One launch's time on `card`: the slowest of DRAM, arithmetic issue and load/store issue."""
    dram = launch.dram_bytes / card.bandwidth
    counts = OpCounts()
    flagged = False
    compiled = table.get((launch.kernel.name, card.capability))
    if compiled is None and launch.kernel.source is not None:
        raise CostModelError(
            f"no PTX counts for {launch.kernel.name} on sm_{card.capability}: compile the table "
            "for every kernel the steps launch (report.compile_table)"
        )
    if compiled is not None:
        flagged = fp16_in_hot_loop(compiled)
    if launch.kernel.origin in ("cuBLAS", "shape"):
        alu = launch.fp32_flops / (card.fp32_tflops * 1e12) + launch.fp16_flops / (card.fp16_tflops * 1e12)
        flagged = launch.fp16_flops > 0
        times = {"DRAM": dram, "ALU" if not launch.fp16_flops else "fp16": alu}
    elif compiled is not None and launch.kernel.traced:
        counts = compiled.launch(launch.threads, launch.iterations, launch.tail_share)
        if launch.kernel.fp32_rewrite:
            counts = counts.fp32_rewrite()
            flagged = False
        compute = card.compute_seconds(counts)
        fp16_share = counts.fp16 / card.fp16_rate
        times = {
            "DRAM": dram,
            "fp16" if fp16_share > compute / 2 else "ALU": compute,
            "LSU": card.load_store_seconds(counts),
        }
    else:
        times = {"DRAM": dram}
    bound = max(times, key=times.__getitem__)
    return PricedLaunch(launch, counts, times[bound], bound, flagged)


@dataclass(frozen=True)
class Prediction:
    setup: Setup
    card: Card
    tokens: int
    launches: list[PricedLaunch]

    @property
    def seconds(self) -> float:
        return sum(p.total_seconds for p in self.launches)

    @property
    def launch_count(self) -> int:
        return sum(p.launch.repeat for p in self.launches)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    @property
    def bandwidth_bound_tokens_per_second(self) -> float:
        """One stream's bound as the issue defines it: weight bytes per token / bandwidth."""
        return self.card.bandwidth / self.setup.weight_bytes_per_gpu()

    @property
    def dram_roof_tokens_per_second(self) -> float:
        """Tokens per second if the step took only its DRAM bytes time (weights, KV, activations)."""
        step_bytes = sum(p.launch.dram_bytes * p.launch.repeat for p in self.launches)
        return self.tokens * self.card.bandwidth / step_bytes


def predict(
    setup: Setup, card: Card, table: KernelTable, tokens: int = 1, context: int = 1024, sequences: int = 1
) -> Prediction:
    steps = step_launches(setup, tokens, context, sequences, capability=card.capability)
    launches = [price(launch, card, table) for launch in steps]
    return Prediction(setup, card, tokens, launches)


def kernels_of(setups: list[Setup], tokens: list[int], capabilities: Iterable[int]) -> list[Kernel]:
    """Every compiled kernel the setups launch on cards of `capabilities` (what the PTX table
    must hold), once each."""
    found: dict[str, Kernel] = {}
    for setup, m, capability in itertools.product(setups, tokens, capabilities):
        for launch in step_launches(setup, m, 1024, m, capability=capability):
            if launch.kernel.source is not None:
                found.setdefault(launch.kernel.name, launch.kernel)
    return list(found.values())


def fits(setup: Setup, card: Card) -> bool:
    """All weights (every expert, the embedding too) fit each card with 10% to spare for the KV cache."""
    s = setup.model
    if s.experts:
        dense = s.linear_parameters() - s.layers * s.top_k * 3 * s.hidden * s.moe_intermediate
        parameters = dense + s.layers * s.experts * 3 * s.hidden * s.moe_intermediate
    else:
        parameters = s.linear_parameters()
    per_parameter = 2.0 if setup.linear == "fp16" else 0.5 + (2.0 + 0.5) / GROUP_SIZE
    embeddings = 2 * s.vocab * s.hidden * 2.0
    return (parameters * per_parameter + embeddings) / setup.tp * 1.1 < card.memory_gib * 2**30


def bytes_text(value: float) -> str:
    if value >= 1e8:
        return f"{value / 1e9:.2f} GB"
    return f"{value / 1e6:.1f} MB" if value >= 1e5 else f"{value / 1e3:.1f} KB"


def format_prediction(prediction: Prediction) -> str:
    """The launches of one step, one row per op, and the sum beside the bandwidth bound."""
    card = prediction.card
    header = (
        f"{'op':<28} {'kernel':<48} {'n':>4} {'DRAM':>9} {'us each':>9} {'bound':>5} {'fp16 hot loop':>13}"
    )
    lines = [header, "-" * len(header)]
    for priced in prediction.launches:
        launch = priced.launch
        flag = "FP16 (sm_61)" if priced.fp16_hot_loop and card.capability == 61 else ""
        flag = flag or ("fp16" if priced.fp16_hot_loop else "")
        lines.append(
            f"{launch.op:<28} {launch.kernel.name[:48]:<48} {launch.repeat:>4} "
            f"{bytes_text(launch.dram_bytes):>9} {priced.seconds * 1e6:>9.1f} {priced.bound:>5} {flag:>13}"
        )
    bound = prediction.bandwidth_bound_tokens_per_second
    rate = prediction.tokens_per_second
    lines.append(
        f"step: {prediction.seconds * 1e3:.2f} ms for {prediction.tokens} token(s) -> {rate:.1f} tok/s; "
        f"bandwidth bound {bound:.1f} tok/s ({bytes_text(prediction.setup.weight_bytes_per_gpu())} per GPU); "
        f"{100 * rate / bound:.0f}% of it"
    )
    return "\n".join(lines)


def summary_rows(predictions: list[Prediction], roof: str = "bandwidth") -> str:
    """One line per (setup, card): predicted tok/s beside the bandwidth bound (one stream), the
    DRAM roof (all the step's bytes at full bandwidth: batched decode) or the FP32 roof
    (prefill: two FLOP per active parameter per token at the card's FP32 rate)."""
    header = f"{'config':<52} {'card':<22} {'tok/s':>7} {'bound':>7} {'%':>4} {'launches':>8}"
    header += f"  {'slowest op (share)':<34}"
    header = header.replace("  bound", {"fp32": "FP32roof", "dram": "DRAMroof"}.get(roof, "  bound"))
    lines = [header, "-" * len(header)]
    for p in predictions:
        slowest = max(p.launches, key=lambda priced: priced.total_seconds)
        share = slowest.total_seconds / p.seconds
        if roof == "fp32":
            bound = p.card.fp32_tflops * 1e12 * p.setup.tp / (2.0 * p.setup.model.linear_parameters())
        elif roof == "dram":
            bound = p.dram_roof_tokens_per_second
        else:
            bound = p.bandwidth_bound_tokens_per_second
        lines.append(
            f"{p.setup.label:<52} {f'{p.setup.tp}x {p.card.name}':<22} {p.tokens_per_second:>7.1f} "
            f"{bound:>7.1f} {100 * p.tokens_per_second / bound:>4.0f} {p.launch_count:>8}"
            f"  {slowest.launch.op} ({share:.0%}, {slowest.bound})"
        )
    return "\n".join(lines)


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
