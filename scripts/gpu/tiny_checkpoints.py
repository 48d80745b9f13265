"""Tiny quantized checkpoints for the engine run, written here in the exact on-disk format vLLM
reads, with the float weights they decode to (the reference's weights).

A method is one row of METHODS: how a float [out, in] weight becomes the checkpoint's tensors
(`quantize`), and how those tensors decode back (`dequantize`). A new format (AWQ,
compressed-tensors) is one more row; its quantization_config comes from the CPU matrix
(pascal_forge.checks.vllm.engine.QUANTIZATIONS), the one home of what each quantizer writes there.

`write_quantized(float_folder, quant_folder, reference_folder, method)` reads the float model
that transformers saved (per-expert names for MoE, as transformers 5 writes them back), and writes:
- quant_folder: config.json with quantization_config, model.safetensors with every quantizable
  linear layer as the method's tensors and every other tensor in float16 (as GPTQ tools save them);
- reference_folder: the same model in float32 holding exactly what the checkpoint decodes to
  (dequantized linears, float16-rounded other tensors), for transformers to run as the reference.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

# The linear layers a GPTQ tool quantizes in a Qwen3 / Qwen3-MoE block (not the MoE router
# `mlp.gate`, the embeddings or lm_head).
QUANTIZABLE = re.compile(
    r"\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(experts\.\d+\.)?(gate|up|down)_proj)\.weight$"
)


class WeightFormat(Protocol):
    """An on-disk format of one linear layer's weight: a new method (AWQ's qweight/qzeros/scales
    packed along the output, compressed-tensors' weight_packed/weight_scale) is one more of these
    and one row of METHODS."""

    def quantize(self, weight: np.ndarray) -> dict[str, np.ndarray]:
        """The checkpoint's tensors for a float [out, in] weight, by suffix (qweight, scales, ...)."""
        ...

    def dequantize(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        """The float32 [out, in] weight those tensors decode to, as vLLM's kernels decode them."""
        ...


@dataclass(frozen=True)
class GptqFormat:
    """GPTQ v1 (AutoGPTQ / GPTQModel, `checkpoint_format: gptq`), symmetric, desc_act False.

    Per group of `group_size` input rows: scale = 2 max|w| / (2^bits - 1) stored as float16,
    q = clamp(round(w / scale) + 2^(bits-1), 0, 2^bits - 1), w' = scale (q - 2^(bits-1)).
    qweight: int32 [in / (32/bits), out], element j of a word in bits [bits j, bits (j+1));
    qzeros: int32 [groups, out / (32/bits)], holding 2^(bits-1) - 1 (v1 stores zero - 1);
    scales: float16 [groups, out]; g_idx: int32 [in] = row // group_size.
    """

    bits: int
    group_size: int = 128

    @property
    def pack(self) -> int:
        return 32 // self.bits

    @property
    def zero(self) -> int:
        return 1 << (self.bits - 1)

    def quantize(self, weight: np.ndarray) -> dict[str, np.ndarray]:
        out_features, in_features = weight.shape
        if in_features % self.group_size or in_features % self.pack or out_features % self.pack:
            raise ValueError(
                f"a [{out_features}, {in_features}] weight does not tile GPTQ {self.bits}-bit groups"
            )
        w = np.ascontiguousarray(weight.astype(np.float32).T)  # [in, out]
        groups = in_features // self.group_size
        grouped = w.reshape(groups, self.group_size, out_features)
        maxq = (1 << self.bits) - 1
        amax = np.abs(grouped).max(axis=1)  # [groups, out]
        scales = np.ascontiguousarray(np.where(amax > 0, 2 * amax / maxq, 1.0), dtype=np.float16)
        s = scales.astype(np.float32)[:, None, :]
        q = (
            np.clip(np.rint(grouped / s) + self.zero, 0, maxq)
            .astype(np.uint32)
            .reshape(in_features, out_features)
        )
        qweight = np.zeros((in_features // self.pack, out_features), dtype=np.uint32)
        for j in range(self.pack):
            qweight |= q[j :: self.pack] << np.uint32(self.bits * j)
        zeros = np.full((groups, out_features), self.zero - 1, dtype=np.uint32)
        qzeros = np.zeros((groups, out_features // self.pack), dtype=np.uint32)
        for j in range(self.pack):
            qzeros |= zeros[:, j :: self.pack] << np.uint32(self.bits * j)
        return {
            "qweight": qweight.view(np.int32),
            "qzeros": qzeros.view(np.int32),
            "scales": scales,
            "g_idx": (np.arange(in_features) // self.group_size).astype(np.int32),
        }

    def dequantize(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        """[out, in] float32 from the checkpoint's tensors, as vLLM's kernels decode them."""
        qweight = tensors["qweight"].view(np.uint32)
        mask = np.uint32((1 << self.bits) - 1)
        rows = [(qweight >> np.uint32(self.bits * j)) & mask for j in range(self.pack)]
        q = np.stack(rows, axis=1).reshape(-1, qweight.shape[1]).astype(np.float32)  # [in, out]
        qzeros = tensors["qzeros"].view(np.uint32)
        zeros = np.stack([(qzeros >> np.uint32(self.bits * j)) & mask for j in range(self.pack)], axis=2)
        zeros = zeros.reshape(qzeros.shape[0], -1).astype(np.float32) + 1  # v1: stored zero - 1
        g_idx = tensors["g_idx"]
        scales = tensors["scales"].astype(np.float32)
        return ((q - zeros[g_idx]) * scales[g_idx]).T.copy()


@dataclass(frozen=True)
class Method:
    """One quantized checkpoint the engine run makes: its format and its quantization_config."""

    name: str  # the CPU matrix's name (pascal_forge.checks.vllm.engine.QUANTIZATIONS)
    fmt: WeightFormat
    # what the quantizer writes besides the matrix's config (None: the matrix's config as is)
    config_edit: Callable[[dict], dict] | None = None

    def quantization_config(self, matrix_configs: dict[str, dict | None]) -> dict:
        config = dict(matrix_configs[self.name] or {})
        return self.config_edit(config) if self.config_edit else config


def _as_gptq_tools_write(config: dict) -> dict:
    """AutoGPTQ / GPTQModel checkpoints name no modules: vLLM finds the quantized layers from the
    safetensors' dtypes (AutoGPTQConfig.maybe_update_config), which the CPU matrix cannot do
    without weight files, so its config names them; the MoE experts are not in its list."""
    config.pop("modules_in_block_to_quantize", None)
    return config | {"checkpoint_format": "gptq"}


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("gptq-4bit", GptqFormat(4), _as_gptq_tools_write),
        Method("gptq-8bit", GptqFormat(8), _as_gptq_tools_write),
        # AutoRound's auto_gptq packing: the same tensors, AutoRound's own config keys.
        Method("autoround", GptqFormat(4)),
    )
}


def quantize_state(
    state: dict[str, np.ndarray], fmt: WeightFormat
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the checkpoint's tensors, the float32 tensors they decode to) for a float state dict."""
    checkpoint: dict[str, np.ndarray] = {}
    decoded: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        if QUANTIZABLE.search(name):
            prefix = name[: -len(".weight")]
            packed = fmt.quantize(tensor)
            checkpoint |= {f"{prefix}.{key}": value for key, value in packed.items()}
            decoded[name] = fmt.dequantize(packed)
        else:
            checkpoint[name] = tensor.astype(np.float16)
            decoded[name] = checkpoint[name].astype(np.float32)
    if not any(QUANTIZABLE.search(name) for name in state):
        raise ValueError("no quantizable linear layer in the state dict (names unlike Qwen3's?)")
    return checkpoint, decoded


def write_quantized(float_folder: Path, quant_folder: Path, reference_folder: Path, method: Method,
                    matrix_configs: dict[str, dict | None]) -> int:  # fmt: skip
    """Write the method's checkpoint and its float32 reference; returns the quantized layer count."""
    from safetensors.numpy import load_file, save_file

    state = load_file(str(float_folder / "model.safetensors"))
    checkpoint, decoded = quantize_state(state, method.fmt)
    for folder, tensors, quantization in (
        (quant_folder, checkpoint, method.quantization_config(matrix_configs)),
        (reference_folder, decoded, None),
    ):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(float_folder, folder, ignore=shutil.ignore_patterns("*.safetensors*"))
        config = json.loads((folder / "config.json").read_text())
        if quantization is not None:
            config["quantization_config"] = quantization
            config["torch_dtype"] = config["dtype"] = "float16"
        (folder / "config.json").write_text(json.dumps(config, indent=1))
        # safetensors writes an array's bytes as they lie: a Fortran-ordered one would be scrambled
        contiguous = {name: np.ascontiguousarray(tensor) for name, tensor in tensors.items()}
        save_file(contiguous, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return sum(1 for name in state if QUANTIZABLE.search(name))
