"""The engine run's tiny quantized checkpoints (scripts/gpu/tiny_checkpoints.py): the on-disk GPTQ
tensors decode, by an independent bit-by-bit reader of the format, to the float weights the
reference runs, within half a quantization step of the original; each check has a twin that
shows it catches the wrong convention. The run's job table and comparison are checked too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# CI's quick run has no numpy and skips this file; its slow run takes the tests marked vllm_checks.
pytestmark = pytest.mark.vllm_checks
np = pytest.importorskip("numpy", reason="the tiny checkpoints are numpy (the vllm-checks extra)")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "gpu"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import run_vllm_engine as rve  # noqa: E402
import tiny_checkpoints as tc  # noqa: E402

from pascal_forge.checks.vllm.engine import QUANTIZATIONS  # noqa: E402


def _weight(out_features: int, in_features: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.2, (out_features, in_features)).astype(np.float32)


def _read_gptq_v1(tensors: dict[str, np.ndarray], bits: int, group_size: int) -> np.ndarray:
    """The format as its spec reads, one element at a time with Python integers: element r of
    column c is bits [bits*(r % (32/bits)), ...) of word r // (32/bits); zero is stored minus one."""
    pack = 32 // bits
    qweight = tensors["qweight"].astype(np.int64) & 0xFFFFFFFF
    qzeros = tensors["qzeros"].astype(np.int64) & 0xFFFFFFFF
    scales = tensors["scales"].astype(np.float64)
    in_features, out_features = qweight.shape[0] * pack, qweight.shape[1]
    weight = np.zeros((out_features, in_features))
    for r in range(in_features):
        g = int(tensors["g_idx"][r])
        assert g == r // group_size
        for c in range(out_features):
            q = (int(qweight[r // pack, c]) >> (bits * (r % pack))) & ((1 << bits) - 1)
            z = ((int(qzeros[g, c // pack]) >> (bits * (c % pack))) & ((1 << bits) - 1)) + 1
            weight[c, r] = scales[g, c] * (q - z)
    return weight


@pytest.mark.parametrize("bits", [4, 8])
def test_gptq_tensors_decode_to_the_weights_within_half_a_step(bits: int) -> None:
    fmt = tc.GptqFormat(bits)
    weight = _weight(16, 256)
    tensors = fmt.quantize(weight)
    assert tensors["qweight"].shape == (256 * bits // 32, 16) and tensors["qweight"].dtype == np.int32
    assert tensors["qzeros"].shape == (2, 16 * bits // 32) and tensors["scales"].dtype == np.float16
    decoded = _read_gptq_v1(tensors, bits, 128)
    np.testing.assert_allclose(fmt.dequantize(tensors), decoded, rtol=0, atol=1e-6)
    step = np.repeat(tensors["scales"].astype(np.float64).T, 128, axis=1)
    # half a step, and the float16 rounding of the scale at the grid's clipped end (7.5 steps, 4-bit)
    assert np.all(np.abs(decoded - weight) <= step * (0.5 + (2 ** (bits - 1) - 0.5) * 2**-11))
    for name, tensor in tensors.items():  # safetensors writes the bytes as they lie in memory
        assert tensor.flags["C_CONTIGUOUS"], name
    # what every symmetric AutoGPTQ checkpoint holds: 0x77777777 (4-bit), 0x7f7f7f7f (8-bit)
    assert set(np.unique(tensors["qzeros"])) == {0x77777777 if bits == 4 else 0x7F7F7F7F}


def test_twin_reading_zeros_as_gptq_v2_misses_by_a_whole_step() -> None:
    """The twin: a reader taking the stored zero as is (GPTQ v2) decodes every weight one scale
    away, which the half-step check above would catch."""
    fmt = tc.GptqFormat(4)
    tensors = fmt.quantize(_weight(16, 256))
    decoded = _read_gptq_v1(tensors, 4, 128)
    v2 = {**tensors, "qzeros": tensors["qzeros"] - 0x11111111}  # each nibble one less
    shifted = _read_gptq_v1(v2, 4, 128)
    step = np.repeat(tensors["scales"].astype(np.float64).T, 128, axis=1)
    np.testing.assert_allclose(shifted - decoded, step, rtol=1e-6)


def test_twin_packing_in_the_other_order_decodes_to_other_weights() -> None:
    fmt = tc.GptqFormat(4)
    weight = _weight(8, 128)
    tensors = fmt.quantize(weight)
    words = tensors["qweight"].view(np.uint32)
    nibbles = [(words >> np.uint32(4 * j)) & np.uint32(15) for j in range(8)]
    reversed_words = np.zeros_like(words)
    for j in range(8):
        reversed_words |= nibbles[7 - j] << np.uint32(4 * j)
    swapped = _read_gptq_v1({**tensors, "qweight": reversed_words.view(np.int32)}, 4, 128)
    assert np.abs(swapped - weight).max() > np.abs(_read_gptq_v1(tensors, 4, 128) - weight).max() * 2


def test_a_weight_that_does_not_tile_the_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="does not tile"):
        tc.GptqFormat(4).quantize(_weight(16, 200))


def test_quantize_state_quantizes_linears_and_experts_not_the_router() -> None:
    state = {
        "model.embed_tokens.weight": _weight(32, 256),
        "model.layers.0.self_attn.q_proj.weight": _weight(256, 256),
        "model.layers.0.mlp.experts.3.down_proj.weight": _weight(256, 256),
        "model.layers.0.mlp.gate.weight": _weight(8, 256),
        "lm_head.weight": _weight(32, 256),
    }
    checkpoint, decoded = tc.quantize_state(state, tc.GptqFormat(4))
    assert "model.layers.0.mlp.experts.3.down_proj.qweight" in checkpoint
    assert "model.layers.0.self_attn.q_proj.g_idx" in checkpoint
    for kept in ("model.layers.0.mlp.gate.weight", "lm_head.weight", "model.embed_tokens.weight"):
        assert checkpoint[kept].dtype == np.float16
        np.testing.assert_array_equal(decoded[kept], checkpoint[kept].astype(np.float32))
    assert set(decoded) == set(state)


def test_twin_a_state_without_qwen3_linears_is_refused() -> None:
    with pytest.raises(ValueError, match="no quantizable"):
        tc.quantize_state({"model.layers.0.mlp.fc1.weight": _weight(256, 256)}, tc.GptqFormat(4))


def test_write_quantized_writes_what_vllm_reads(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors.numpy")
    source = tmp_path / "float"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "qwen3", "dtype": "float32"}))
    (source / "tokenizer.json").write_text("{}")
    safetensors.save_file(
        {"model.layers.0.mlp.up_proj.weight": _weight(512, 256)}, str(source / "model.safetensors")
    )
    method = tc.METHODS["gptq-4bit"]
    layers = tc.write_quantized(source, tmp_path / "q", tmp_path / "ref", method, QUANTIZATIONS)
    assert layers == 1
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    quantization = config["quantization_config"]
    assert quantization["quant_method"] == "gptq" and quantization["bits"] == 4 and quantization["sym"]
    assert "modules_in_block_to_quantize" not in quantization and config["dtype"] == "float16"
    assert "quantization_config" not in json.loads((tmp_path / "ref" / "config.json").read_text())
    assert (tmp_path / "q" / "tokenizer.json").is_file()
    packed = safetensors.load_file(str(tmp_path / "q" / "model.safetensors"))
    reference = safetensors.load_file(str(tmp_path / "ref" / "model.safetensors"))
    assert set(packed) == {
        f"model.layers.0.mlp.up_proj.{k}" for k in ("qweight", "qzeros", "scales", "g_idx")
    }
    np.testing.assert_allclose(
        reference["model.layers.0.mlp.up_proj.weight"],
        _read_gptq_v1({k.rsplit(".", 1)[1]: v for k, v in packed.items()}, 4, 128),
        atol=1e-6,
    )


def test_every_quantized_model_of_the_run_has_a_method_and_jobs_name_known_models() -> None:
    for model in rve.MODELS.values():
        assert model.method == "fp16" or model.method in tc.METHODS
        assert model.method == "fp16" or model.method in QUANTIZATIONS
    assert {job.model for job in rve.JOBS} <= set(rve.MODELS)
    # by value: dense as a P40 owner starts it, then eager, GPTQ 4-bit, the MoE, serve
    assert [job.name for job in rve.JOBS[:6]] == [
        "vllm-dense-float16-default",
        "vllm-dense-float16-eager",
        "vllm-dense-gptq-4bit-float16-default",
        "vllm-moe-float16-default",
        "vllm-moe-gptq-4bit-float16-default",
        "serve-dense",
    ]


def test_compare_passes_within_the_bound_and_its_twin_fails_past_it() -> None:
    reference = [
        {"prompt": "p", "tokens": [5, 6, 7], "logprobs": [-0.1, -0.2, -0.3], "margins": [1, 1, 0.01]}
    ]
    close = [{"tokens": [5, 6, 9], "logprobs": [-0.11, -0.21, -2.0]}]  # diverges only at the near-tie
    ok, text = rve.compare(reference, close, "float16", 0.05)
    assert ok and "2 tokens identical" in text
    far = [{"tokens": [5, 6, 7], "logprobs": [-0.1, -0.4, -0.3]}]
    assert not rve.compare(reference, far, "float16", 0.05)[0]
    assert not rve.compare(reference, close, "float32", 0.05)[0]  # float32: every token must match


# --------------------------------------------------------------------------- the carry


def _shared_library(folder: Path, name: str) -> Path:
    """A small shared library with debug sections (gcc -g), as uvloop's wheel ships its module."""
    import shutil
    import subprocess

    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build a shared library")
    source = folder.parent / f"{name}.c"
    source.write_text('#include <stdio.h>\nint pascal_forge_answer(void) { return puts("42"); }\n')
    library = folder / name
    subprocess.run(["gcc", "-g3", "-O0", "-shared", "-fPIC", str(source), "-o", str(library)], check=True)
    return library


def test_carry_strips_debug_sections_and_leaves_tests_out(tmp_path: Path) -> None:
    import tarfile

    import prepare_engine_carry as carry

    package = tmp_path / "site" / "pkg"
    (package / "tests").mkdir(parents=True)
    (package / "tests" / "test_x.py").write_text("assert True\n")
    (package / "__init__.py").write_text("")
    library = _shared_library(package, "mod.cpython-312-x86_64-linux-gnu.so")
    archive_path = tmp_path / "pydeps.tar.xz"
    with tarfile.open(archive_path, "w:xz") as archive:
        add = carry._Adder(archive, tmp_path / "scratch")
        add(package, "pkg")
    with tarfile.open(archive_path) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert set(members) == {"pkg/__init__.py", f"pkg/{library.name}"}
    assert 0 < members[f"pkg/{library.name}"].size < library.stat().st_size
    assert add.saved == library.stat().st_size - members[f"pkg/{library.name}"].size


def test_twin_the_carry_refuses_an_extension_folder_without_the_runtime(tmp_path: Path) -> None:
    """The twin: the extension's modules without libcudart.so.12 would fail to load on the
    device's CUDA 13 torch, so the carry stops here naming what is missing."""
    import prepare_engine_carry as carry

    for name in carry.EXTENSION_MODULES:
        _shared_library(tmp_path, name)
    with pytest.raises(SystemExit, match=r"libcudart\.so\.12"):
        carry.extension_tarball(tmp_path, tmp_path / "extension.tar.xz")
    _shared_library(tmp_path, "libcudart.so.12")
    needed = carry.extension_tarball(tmp_path, tmp_path / "extension.tar.xz")
    assert len(needed) == len(carry.EXTENSION_MODULES) + len(carry.EXTENSION_LIBRARIES)
    assert all("libc.so.6" in line for line in needed)


def test_carry_keeps_every_transformers_config_and_only_the_traced_models(tmp_path: Path) -> None:
    """vLLM's GPU worker imports configs of models the CPU trace never builds (DeepseekV4Config,
    2026-12-07): each model's __init__.py and configuration module travel. The twin half: an
    untraced model's modeling code is still left out."""
    import tarfile

    import prepare_engine_carry as carry

    root = tmp_path / "site"
    models = root / "transformers" / "models"
    (root / "transformers" / "__init__.py").parent.mkdir(parents=True)
    (root / "transformers" / "__init__.py").write_text("")
    for model in ("qwen3", "deepseek_v4"):
        for name in ("__init__.py", f"configuration_{model}.py", f"modeling_{model}.py"):
            (models / model).mkdir(parents=True, exist_ok=True)
            (models / model / name).write_text("")
    archive_path = tmp_path / "pydeps.tar.xz"
    carry.pydeps_tarball({root: {"transformers": {"qwen3"}}}, archive_path, tmp_path / "scratch")
    with tarfile.open(archive_path) as archive:
        names = set(archive.getnames())
    base = "transformers/models"
    assert {f"{base}/qwen3/modeling_qwen3.py", f"{base}/qwen3/configuration_qwen3.py"} <= names
    assert {f"{base}/deepseek_v4/__init__.py", f"{base}/deepseek_v4/configuration_deepseek_v4.py"} <= names
    assert f"{base}/deepseek_v4/modeling_deepseek_v4.py" not in names
