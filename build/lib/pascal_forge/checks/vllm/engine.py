"""vLLM's engine built as a P40 (sm_61) or a P100 (sm_60) would build it, on a CPU host.

For every cell of a matrix (model family x quantization x KV-cache dtype), a child process that
answers the device queries as the Pascal GPU (vllm_checks._pascal_gpu) runs vLLM's own start-up
code up to the weights:

- config: `EngineArgs(...).create_engine_config()` on a tiny model folder written here
  (config.json and a word-level tokenizer; no hub);
- model: `initialize_model` on the meta device: the model class, every layer's quantization
  method and its `create_weights`, and each attention layer's backend;
- kv_cache: every attention/mamba layer's KV-cache spec;
- sampler: the V1 `Sampler` (and its TopKTopPSampler), and what the V2 runner's sampler asks
  (`flashinfer_sampler_supported`) where the release has one;
- structured_output: vLLM's xgrammar backend on the model's tokenizer compiles a JSON grammar.

A cell either works (every stage), is refused (by vLLM's config checks, or while the model is
built with a message that names a way out), or fails: that last is the bug this matrix is for.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import PACKAGE_ROOT

STAGES = ("config", "model", "kv_cache", "sampler", "structured_output")

# Shapes small enough to build in a blink, large enough for every kernel's divisibility rules
# (group size 128, Marlin/Exllama tile multiples of 64).
_HIDDEN = 256
_INTERMEDIATE = 512
_VOCAB = 512


def _text_config(model_type: str, **extra: object) -> dict:
    return {
        "model_type": model_type,
        "hidden_size": _HIDDEN,
        "intermediate_size": _INTERMEDIATE,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "num_hidden_layers": 2,
        "vocab_size": _VOCAB,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        **extra,
    }


_MOE = {
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 256,
    "decoder_sparse_step": 1,
    "norm_topk_prob": True,
    "mlp_only_layers": [],
}
_GDN = {
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_key_head_dim": 64,
    "linear_value_head_dim": 64,
    "linear_conv_kernel_dim": 4,
    "full_attention_interval": 2,
    "layer_types": ["linear_attention", "full_attention"],
    "partial_rotary_factor": 0.25,
}
_SIGLIP = {
    "model_type": "siglip_vision_model",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "image_size": 224,
    "patch_size": 14,
    "vision_use_head": False,
}


def family_configs(version: str) -> dict[str, dict]:
    """config.json of each model family, as that release's transformers spells it."""
    dense = {"architectures": ["Qwen3ForCausalLM"], **_text_config("qwen3")}
    gemma3 = {
        "architectures": ["Gemma3ForCausalLM"],
        **_text_config(
            "gemma3_text",
            sliding_window=512,
            sliding_window_pattern=2,
            layer_types=["sliding_attention", "full_attention"],
            query_pre_attn_scalar=64,
        ),
    }
    moe = {"architectures": ["Qwen3MoeForCausalLM"], **_text_config("qwen3_moe", **_MOE)}
    # Qwen3-Next: the gated delta net layer of Qwen3.5 (Qwen3_5ForCausalLM shares it), without
    # Qwen3.5's vision processor, which transformers 5 builds on torchvision.
    hybrid = {
        "architectures": ["Qwen3NextForCausalLM"],
        **_text_config("qwen3_next", **_MOE, **_GDN, shared_expert_intermediate_size=256),
    }
    vision = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": gemma3 | {"architectures": None},
        "vision_config": _SIGLIP,
        "mm_tokens_per_image": 16,
        "image_token_index": 500,
        "boi_token_index": 498,
        "eoi_token_index": 499,
        "torch_dtype": "bfloat16",
    }
    families = {"dense": dense, "gemma3": gemma3, "hybrid": hybrid, "moe": moe, "vision": vision}
    if version != "0.14.0":
        # transformers 5's Gemma3/Qwen-VL image processors import torchvision, whose only build
        # for this host's CPU torch is missing (PyPI's is a CUDA build): the VLM is left out.
        del families["vision"]
    return families


def _ct_weights(bits: int, strategy: str, symmetric: bool = True) -> dict:
    group = {"group_size": 128} if strategy == "group" else {}
    return {
        "num_bits": bits,
        "type": "int",
        "symmetric": symmetric,
        "strategy": strategy,
        "dynamic": False,
        "actorder": None,
        **group,
    }


def _compressed_tensors(fmt: str, weights: dict, activations: dict | None) -> dict:
    return {
        "quant_method": "compressed-tensors",
        "format": fmt,
        "quantization_status": "compressed",
        "ignore": ["lm_head"],
        "config_groups": {
            "group_0": {"targets": ["Linear"], "weights": weights, "input_activations": activations}
        },
    }


def _gptq(bits: int) -> dict:
    """As GPTQModel writes it; naming the quantized modules keeps vLLM from reading the weights'
    metadata (there are no weight files here) to decide which layers are quantized."""
    return {
        "quant_method": "gptq",
        "bits": bits,
        "group_size": 128,
        "desc_act": False,
        "sym": True,
        "modules_in_block_to_quantize": [
            ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"],
            ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
        ],
    }


# quantization_config as each tool writes it into config.json (None: an unquantized checkpoint).
QUANTIZATIONS: dict[str, dict | None] = {
    "fp16": None,
    "gptq-4bit": _gptq(4),
    "gptq-8bit": _gptq(8),
    "awq": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
    "ct-w4a16": _compressed_tensors("pack-quantized", _ct_weights(4, "group"), None),
    "ct-w8a16": _compressed_tensors("pack-quantized", _ct_weights(8, "channel"), None),
    # With zero points (llm-compressor's asymmetric presets).
    "ct-w4a16-asym": _compressed_tensors("pack-quantized", _ct_weights(4, "group", symmetric=False), None),
    "ct-w8a16-asym": _compressed_tensors("pack-quantized", _ct_weights(8, "group", symmetric=False), None),
    "ct-w8a8": _compressed_tensors(
        "int-quantized",
        _ct_weights(8, "channel"),
        {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True},
    ),
    "fp8": {"quant_method": "fp8", "activation_scheme": "dynamic"},
    # Block scales as DeepSeek/Qwen FP8 checkpoints carry them (weight_scale_inv per 128 x 128).
    "fp8-block": {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]},
    "autoround": {
        "quant_method": "auto-round",
        "bits": 4,
        "group_size": 128,
        "sym": True,
        "packing_format": "auto_round:auto_gptq",
    },
    "bitsandbytes": {
        "quant_method": "bitsandbytes",
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "float16",
    },
}


@dataclass(frozen=True)
class Cell:
    family: str
    quantization: str
    kv_cache_dtype: str = "auto"
    dtype: str = "auto"  # --dtype; the matrix runs auto, a refusal's named flag is followed

    @property
    def name(self) -> str:
        dtype = "" if self.dtype == "auto" else f"/dtype={self.dtype}"
        return f"{self.family}/{self.quantization}/kv={self.kv_cache_dtype}{dtype}"


@dataclass
class CellResult:
    cell: Cell
    capability: int
    # "works", "refused" (at the config stage) or "fails" (at a later stage)
    verdict: str
    stage: str = ""  # where it stopped ("" when it works)
    message: str = ""
    details: dict = field(default_factory=dict)

    @property
    def summary(self) -> str:
        if self.verdict == "works":
            return "works"
        return f"{self.verdict} at {self.stage}: {self.user_message}"

    @property
    def user_message(self) -> str:
        """The message as `vllm serve` prints it: pydantic's wrapping of a config error removed."""
        match = re.search(r"Value error, (.*?) \[type=", self.message, re.DOTALL)
        text = match.group(1) if match else self.message
        return " ".join(text.split())


# Beyond the dense model, each family is built with the methods whose layers differ for it: the
# MoE experts (GPTQ 4/8-bit, AutoRound, AWQ, FP8) and AWQ on the others.
FAMILY_QUANTIZATIONS = ("fp16", "gptq-4bit", "awq")
MOE_QUANTIZATIONS = ("fp16", "gptq-4bit", "gptq-8bit", "autoround", "awq", "fp8")


def matrix(
    version: str,
    kv_cache_dtypes: Sequence[str],
    families: Sequence[str] | None = None,
    quantizations: Sequence[str] | None = None,
    full: bool = False,
) -> list[Cell]:
    """The cells to build: every method on the dense model, FAMILY_QUANTIZATIONS (MoE:
    MOE_QUANTIZATIONS) on the others, then every KV-cache dtype on the dense fp16 model.

    `full` builds every family with every method (docs/vllm-engine-matrix.md's tables).
    """
    families = list(families or family_configs(version))
    every = list(quantizations or QUANTIZATIONS)
    cells = []
    for family in families:
        chosen = (
            every
            if full or family == families[0]
            else (MOE_QUANTIZATIONS if family in ("moe", "hybrid") else FAMILY_QUANTIZATIONS)
        )
        cells += [Cell(family, q) for q in every if q in chosen]
    return cells + [Cell(families[0], "fp16", kv) for kv in kv_cache_dtypes if kv != "auto"]


# --------------------------------------------------------------------------- driver side


def run_engine_matrix(
    vllm_tree: Path,
    deps: Path | None,
    capability: int,
    version: str,
    cells: Sequence[Cell] | None = None,
    triton_dir: Path | None = None,
    full: bool = False,
    extra: Sequence[Cell] = (),
) -> list[CellResult]:
    """Build each cell in one child process that answers as a GPU of `capability`.

    `triton_dir` (the stack's patched triton) goes first on the path: a P40 owner has triton,
    and vLLM picks its runner (V2 needs Triton) and several kernels by whether it imports.
    `cells` defaults to `matrix()` over every KV-cache dtype the release offers (`full`: every
    family with every method); `extra` cells are built after them in the same child (one vLLM
    import instead of two).
    """
    with tempfile.TemporaryDirectory(prefix="pascal-forge-engine-") as scratch:
        report = Path(scratch) / "report.json"
        request = Path(scratch) / "cells.json"
        asked = [asdict(c) for c in cells] if cells is not None else "full" if full else None
        request.write_text(json.dumps({"cells": asked, "extra": [asdict(c) for c in extra]}))
        scripts = PACKAGE_ROOT
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "CUDA_", "TRITON_"))}
        env |= {
            "PYTHONPATH": os.pathsep.join(
                str(p) for p in (triton_dir, deps, vllm_tree, scripts) if p is not None
            ),
            "CUDA_VISIBLE_DEVICES": "",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_CONFIGURE_LOGGING": "0",
            "HOME": scratch,
        }
        # Imported here: vllm_checks needs rattler-build, which the GPU machine's copy lacks.
        from .compile import run_child_report

        args = ["pascal_forge.checks.vllm.engine", version, str(capability), str(request), str(report),
                str(Path(scratch) / "models")]  # fmt: skip
        rows = run_child_report(args, env, report, f"the engine probe for capability {capability}")
        return [CellResult(**(row | {"cell": Cell(**row["cell"])})) for row in rows]


def format_matrix(results: Sequence[CellResult]) -> str:
    """A markdown table: one row per cell, one column per capability."""
    capabilities = sorted({r.capability for r in results})
    by_cell: dict[Cell, dict[int, CellResult]] = {}
    for r in results:
        by_cell.setdefault(r.cell, {})[r.capability] = r
    header = "| family | quantization | KV cache | " + " | ".join(f"sm_{c}" for c in capabilities) + " |"
    lines = [header, "|" + "---|" * (3 + len(capabilities))]
    for cell, row in by_cell.items():
        cells = []
        for c in capabilities:
            r = row.get(c)
            text = "-" if r is None else r.summary
            cells.append(text.replace("|", "\\|").replace("\n", " "))
        quantization = cell.quantization + ("" if cell.dtype == "auto" else f" (--dtype {cell.dtype})")
        columns = [cell.family, quantization, cell.kv_cache_dtype, *cells]
        lines.append("| " + " | ".join(columns) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- child side


def write_tokenizer(folder: Path) -> None:
    """A word-level tokenizer of _VOCAB entries (no hub, no sentencepiece model)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    words = [*specials, *[chr(c) for c in range(33, 127)]]
    words += [f"w{i}" for i in range(_VOCAB - len(words))]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    fast.save_pretrained(folder)


def write_model(folder: Path, config: dict, quantization: dict | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    if quantization is not None:
        config["quantization_config"] = quantization
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    write_tokenizer(folder)
    return folder


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()[:1500]


def _build_samplers(config: object) -> dict:
    """The V1 Sampler where the release has one, and the V2 runner's Sampler where it has that.

    Reports which path each samples by: "forward_native", or FlashInfer's.
    """
    import importlib

    found: dict = {}
    try:
        v1 = importlib.import_module("vllm.v1.sample.sampler")
    except ModuleNotFoundError as exc:
        if exc.name != "vllm.v1.sample.sampler":
            raise
    else:
        sampler = v1.Sampler(logprobs_mode=config.model_config.logprobs_mode)
        found["sampler"] = sampler.topk_topp_sampler.forward.__name__
    try:
        v2 = importlib.import_module("vllm.v1.worker.gpu.sample.sampler")
    except ModuleNotFoundError as exc:
        if exc.name != "vllm.v1.worker.gpu.sample.sampler":
            raise
    else:
        if not hasattr(v2, "flashinfer_sampler_supported"):  # 0.14.0's V2 sampler has no FlashInfer
            return found
        # The V2 Sampler's buffers are pinned host memory, which needs a GPU; its __init__
        # decides FlashInfer or native by this call (v1/worker/gpu/sample/sampler.py), run here.
        use_flashinfer = bool(v2.flashinfer_sampler_supported())
        found["v2_sampler_flashinfer"] = use_flashinfer
        found.setdefault("sampler", "flashinfer" if use_flashinfer else "forward_native")
    return found


def _build_cell(cell: Cell, model: Path, details: dict, touched: set[str]) -> tuple[str, str]:
    """Run the stages of one cell; return ("", "") or (stage, message) where it stopped."""
    import torch
    from vllm.config import set_current_vllm_config
    from vllm.engine.arg_utils import EngineArgs

    stage = "config"
    try:
        args = EngineArgs(
            model=str(model), dtype=cell.dtype, kv_cache_dtype=cell.kv_cache_dtype, max_model_len=1024
        )
        config = args.create_engine_config()
        model_config = config.model_config
        details["dtype"] = str(model_config.dtype)
        details["cache_dtype"] = str(config.cache_config.cache_dtype)  # as the platform left it
        details["quantization"] = str(model_config.quantization)
        compilation = config.compilation_config
        details["compilation"] = str(getattr(compilation, "mode", getattr(compilation, "level", "")))
        details["cudagraph_mode"] = str(compilation.cudagraph_mode)

        stage = "model"
        from vllm.model_executor.model_loader.utils import get_model_architecture, initialize_model

        get_model_architecture(model_config)  # imports the model's module before the stand-ins
        from vllm.utils.torch_utils import set_default_torch_dtype

        # As the model loader builds it (base_loader.load_model), on the meta device.
        with (
            set_current_vllm_config(config),
            set_default_torch_dtype(model_config.dtype),
            torch.device("meta"),
            _stand_in_compiled_ops(touched),
        ):
            network = initialize_model(vllm_config=config, model_config=model_config)
        details["model_class"] = type(network).__name__
        methods = sorted(
            {type(m.quant_method).__name__ for m in network.modules() if getattr(m, "quant_method", None)}
        )
        details["quant_methods"] = methods
        # The mixed-precision kernel: the method's own, or (compressed-tensors) its layer scheme's.
        holders = [getattr(m, "quant_method", None) for m in network.modules()]
        holders += [getattr(m, "scheme", None) for m in network.modules()]
        kernels = sorted({type(h.kernel).__name__ for h in holders if getattr(h, "kernel", None) is not None})
        details["linear_kernels"] = kernels
        # The quantized MoE experts' backend, where the method picks it at construction.
        details["moe_backends"] = sorted(
            {
                str(m.quant_method.wna16_moe_backend)
                for m in network.modules()
                if getattr(getattr(m, "quant_method", None), "wna16_moe_backend", None) is not None
            }
        )

        stage = "kv_cache"
        layers = compilation.static_forward_context
        backends = sorted(
            {layer.attn_backend.get_name() for layer in layers.values() if hasattr(layer, "attn_backend")}
        )
        details["attention_backends"] = backends
        with set_current_vllm_config(config):
            specs = {
                type(layer.get_kv_cache_spec(config)).__name__
                for layer in layers.values()
                if hasattr(layer, "get_kv_cache_spec")
            }
        details["kv_cache_specs"] = sorted(specs)

        stage = "sampler"
        details["model_runner"] = "v2" if getattr(config, "use_v2_model_runner", False) else "v1"
        with set_current_vllm_config(config):
            details.update(_build_samplers(config))

        stage = "structured_output"
        from vllm.v1.structured_output.backend_types import StructuredOutputOptions
        from vllm.v1.structured_output.backend_xgrammar import XgrammarBackend

        try:
            from vllm.tokenizers import get_tokenizer
        except ImportError:
            from vllm.transformers_utils.tokenizer import get_tokenizer
        tokenizer = get_tokenizer(str(model))
        backend = XgrammarBackend(config, tokenizer=tokenizer, vocab_size=model_config.get_vocab_size())
        grammar = backend.compile_grammar(StructuredOutputOptions.JSON, json.dumps({"type": "object"}))
        details["structured_output"] = type(grammar).__name__
    except Exception as exc:  # the stage and message are the result
        return stage, _error(exc)
    return "", ""


class _MissingOp:
    """An op of the compiled extension: its overloads (.default) are itself; a call raises."""

    def __init__(self, qualified: str) -> None:
        self.qualified = qualified

    def __getattr__(self, name: str) -> _MissingOp:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(f"torch.ops.{self.qualified} is compiled CUDA code, not run on this host")


class _CompiledOps:
    """torch.ops.<namespace> of vLLM's compiled extension, which a CPU host cannot load.

    Ops registered here (vllm_checks' capability queries) answer; any other name gives a
    function that raises if called, so that layers which keep a reference to their op at
    construction can be built. Every such name is recorded: the report lists them.
    """

    def __init__(self, real: object, namespace: str, touched: set[str]) -> None:
        self._real, self._namespace, self._touched = real, namespace, touched

    def __getattr__(self, name: str) -> object:
        try:
            return getattr(self._real, name)
        except (AttributeError, RuntimeError):
            qualified = f"{self._namespace}.{name}"
            self._touched.add(qualified)
            return _MissingOp(qualified)


@contextmanager
def _stand_in_compiled_ops(touched: set[str]) -> Iterator[None]:
    """While models are built only: vLLM's imports ask hasattr(torch.ops._C, ...) to pick paths."""
    import torch

    namespaces = ("_C", "_moe_C", "_C_cache_ops", "_C_custom_ar")
    saved = {name: getattr(torch.ops, name) for name in namespaces}
    for name, real in saved.items():
        setattr(torch.ops, name, _CompiledOps(real, name, touched))
    try:
        yield
    finally:
        for name, real in saved.items():
            setattr(torch.ops, name, real)


def _cpu_host_stand_ins() -> None:
    """What only a real GPU can give, answered so that construction goes on (weights on meta).

    The MoE shared-expert side stream is a CUDA object (none is kept, as on a GPU vLLM does
    not see as CUDA); layers that place buffers on current_device() get the meta device.
    """
    import torch
    import vllm.utils.torch_utils as torch_utils
    from vllm.platforms import current_platform

    torch_utils.aux_stream = lambda: None
    type(current_platform).current_device = classmethod(lambda cls: torch.device("meta"))


# A refusal names a way out: a flag, an environment variable, or the methods to pick from.
WAY_OUT = re.compile(r"--[a-z][a-z-]+|VLLM_[A-Z_]+|Must be one of \[")


def _is_refusal(stage: str, message: str) -> bool:
    """vLLM's config checks refuse; a later stage refuses only with a message that names a way out.

    Every stage here runs before the server binds (start-up); an error without a way out
    there, or any error after, is a failure.
    """
    return stage == "config" or (stage == "model" and bool(WAY_OUT.search(message)))


def _engine_main(version: str, capability: int, request: Path, report: Path, models: Path) -> None:
    from .compile import _compile_only_launches, _pascal_gpu, _use_cuda_platform

    triton = importlib.util.find_spec("triton") is not None
    # Triton's driver answers as the Pascal GPU too (a CPU host has no libcuda to ask).
    launches = _compile_only_launches(capability) if triton else nullcontext()
    with _pascal_gpu(capability), launches:
        _use_cuda_platform()
        _cpu_host_stand_ins()
        touched: set[str] = set()
        import typing

        from vllm.config.cache import CacheDType
        from vllm.distributed import init_distributed_environment, initialize_model_parallel

        asked = json.loads(request.read_text())
        kv_cache_dtypes = typing.get_args(CacheDType)
        if isinstance(asked["cells"], list):
            cells = [Cell(**c) for c in asked["cells"]]
        else:  # "full" or None
            cells = matrix(version, kv_cache_dtypes, full=asked["cells"] == "full")
        cells += [Cell(**c) for c in asked["extra"]]
        from vllm.config import VllmConfig, set_current_vllm_config

        # One process group of one rank (gloo), as a single-GPU worker has; 0.33 reads the
        # current config while it makes the groups.
        with set_current_vllm_config(VllmConfig()):
            init_distributed_environment(1, 0, f"file://{models}.rendezvous", 0, "gloo")
            initialize_model_parallel(1, 1)
        configs = family_configs(version)
        rows = []
        for number, cell in enumerate(cells):
            folder = write_model(models / str(number), configs[cell.family], QUANTIZATIONS[cell.quantization])
            details: dict = {}
            touched.clear()
            stage, message = _build_cell(cell, folder, details, touched)
            details["compiled_ops_referenced"] = sorted(touched)
            verdict = "works" if not stage else "refused" if _is_refusal(stage, message) else "fails"
            rows.append(CellResult(cell, capability, verdict, stage, message, details))
            print(f"{cell.name}: {rows[-1].summary}", flush=True)
    report.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    if modules_report := os.environ.get("PASCAL_FORGE_ENGINE_MODULES"):
        # What the engine imported, for scripts/gpu/prepare_engine_carry.py to carry; with the
        # entry points a GPU run starts from (LLM, `vllm serve`), which the cells never import.
        for entry in (
            "vllm.entrypoints.llm",
            "vllm.entrypoints.openai.api_server",
            "vllm.entrypoints.cli.main",
        ):
            importlib.import_module(entry)
        # `vllm bench` (pascal-forge bench on the GPU): carried where it imports here.
        bench = ("vllm.benchmarks.serve", "vllm.benchmarks.startup", "vllm.entrypoints.cli.benchmark.main")
        for entry in bench:
            try:
                importlib.import_module(entry)
            except ImportError as exc:
                print(f"not traced: {entry} ({exc})", file=sys.stderr)
        files = sorted({str(getattr(m, "__file__", None)) for m in list(sys.modules.values())} - {"None"})
        Path(modules_report).write_text("\n".join(files))


if __name__ == "__main__":
    _engine_main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
