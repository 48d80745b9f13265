"""`pascal-forge bench`'s report and its join with the cost model, without a GPU.

What runs vLLM (run_bench) needs a GPU and is left to the owners and the lead; here: reading a
model's config.json into the cost model, the report beside the prediction, the saved result,
and (slow) that the result keys we read are the ones the current stack's vLLM (0.34.0) benchmarks write.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pascal_forge.checks.bench import (
    BenchError,
    BenchResult,
    Environment,
    ServeFigures,
    StartupFigures,
    bench_report,
    conda_builds,
    load_result,
    model_setup,
    save_result,
)
from pascal_forge.checks.costmodel.cards import P40
from pascal_forge.checks.costmodel.model import QWEN3_8B, predict
from pascal_forge.checks.costmodel.table import load_table

# Qwen3-8B's config.json, the fields the cost model reads (values as published with the model).
QWEN3_8B_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "hidden_size": 4096,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 12288,
    "vocab_size": 151936,
    "torch_dtype": "bfloat16",
}
GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}


def _model(tmp_path: Path, quantization: dict | None = None) -> Path:
    folder = tmp_path / "Qwen3-8B"
    folder.mkdir(exist_ok=True)
    config = {**QWEN3_8B_CONFIG, **({"quantization_config": quantization} if quantization else {})}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _result(capability: int, gpu: str = "Tesla P40") -> BenchResult:
    serve = [
        ServeFigures(1, 4, 5.8, 3500.0, 3400.0, 170.0),
        ServeFigures(16, 64, 60.0, 9000.0, 8800.0, 260.0),
    ]
    environment = Environment(
        gpu, "580.95.05", capability, "3.12.7", {"vllm": "0.34.0"}, "12.9", "sm_60 sm_61"
    )
    return BenchResult("/models/Qwen3-8B", 1, environment, serve, StartupFigures(212.0, 61.0, 140.0, 4.0))


def test_a_qwen3_config_reads_as_the_cost_models_shape() -> None:
    setup = model_setup(QWEN3_8B_CONFIG, 1)
    assert (setup.linear, setup.tp) == ("fp16", 1)
    fields = ("hidden", "layers", "heads", "kv_heads", "head_dim", "intermediate", "vocab")
    assert [getattr(setup.model, f) for f in fields] == [getattr(QWEN3_8B, f) for f in fields]
    assert model_setup({**QWEN3_8B_CONFIG, "quantization_config": GPTQ}, 2).linear == "exllama"


def test_a_format_the_cost_model_does_not_price_says_so() -> None:
    awq = {"quant_method": "awq", "bits": 4}
    with pytest.raises(BenchError, match="not 'awq': no prediction"):
        model_setup({**QWEN3_8B_CONFIG, "quantization_config": awq}, 1)
    with pytest.raises(BenchError, match="lacks a decoder shape"):
        model_setup({"model_type": "bert"}, 1)


def test_the_report_puts_the_prediction_beside_the_measurement(tmp_path: Path) -> None:
    model = _model(tmp_path, GPTQ)
    report = bench_report(_result(61), model)
    setup = model_setup(json.loads((model / "config.json").read_text()), 1)
    # At the benchmark's mean context: the 512-token prompt and half of the 128 output tokens.
    predicted = predict(setup, P40, load_table(), 1, 576)
    batched = predict(setup, P40, load_table(), 16, 576, sequences=16)
    assert "| 1 | 5.8 | 5.9 | 3500 / 3400 | " + f"{predicted.tokens_per_second:.1f} |" in report
    assert "| 16 | 60.0 | 3.8 | 9000 / 8800 | " + f"{batched.tokens_per_second / 16:.1f} |" in report
    assert "GPU: Tesla P40 (sm_61), driver 580.95.05" in report
    assert "cold 212.0 s, warm 61.0 s (compilation 140.0 s cold, 4.0 s warm)" in report
    assert f"bandwidth bound {predicted.bandwidth_bound_tokens_per_second:.1f} tok/s" in report


def test_a_card_that_is_not_pascal_gets_the_p40_figure_named_as_such(tmp_path: Path) -> None:
    report = bench_report(_result(90, "NVIDIA H100 80GB HBM3"), _model(tmp_path))
    assert "Cost model: no prediction (sm_90 is not a P40 or P100; the P40 figure for this model is" in report
    assert "| 1 | 5.8 | 5.9 | 3500 / 3400 | - |" in report


def test_a_saved_result_prints_the_same_report(tmp_path: Path) -> None:
    model = _model(tmp_path)
    save_result(_result(61), tmp_path / "bench-result.json")
    assert bench_report(load_result(tmp_path / "bench-result.json"), model) == bench_report(
        _result(61), model
    )
    (tmp_path / "broken.json").write_text('{"model": "x"}')
    with pytest.raises(BenchError, match="not a bench result"):
        load_result(tmp_path / "broken.json")


def test_build_strings_come_from_conda_meta_for_our_packages_only(tmp_path: Path) -> None:
    meta = tmp_path / "conda-meta"
    meta.mkdir()
    for name, version, build in [
        ("vllm", "0.34.0", "cuda129_pascal_py312_0"),
        ("pytorch", "2.14.0", "cuda129_pascal_py312_h1a2b3c4_0"),
        ("numpy", "2.3.4", "py312_0"),
    ]:
        (meta / f"{name}-{version}-{build}.json").write_text(
            json.dumps({"name": name, "version": version, "build": build})
        )
    assert conda_builds(tmp_path) == {
        "pytorch (conda)": "2.14.0 cuda129_pascal_py312_h1a2b3c4_0",
        "vllm (conda)": "0.34.0 cuda129_pascal_py312_0",
    }


@pytest.mark.slow
def test_the_result_keys_we_read_are_the_ones_vllm_writes(vllm_toolchain) -> None:
    benchmarks = vllm_toolchain.vllm_tree / "vllm" / "benchmarks"
    serve, startup = (benchmarks / "serve.py").read_text(), (benchmarks / "startup.py").read_text()
    for key in ("completed", "output_throughput"):
        assert f'"{key}"' in serve, key
    # The per-metric keys are written as f"mean_{name}_ms" / f"median_{name}_ms" for ttft and tpot.
    assert re.search(r'"mean_ttft_ms"', serve) and re.search(r'"median_ttft_ms"', serve)
    assert re.search(r'"mean_tpot_ms"', serve)
    # startup.py writes f"avg_{phase}_{suffix}_time" with the phases and suffixes below.
    assert 'f"avg_{m.key}_time"' in startup and 'key=f"{phase}_{desc.suffix}"' in startup
    assert '"startup"' in startup and '"compilation"' in startup and "cold" in startup and "warm" in startup
    # The twin: a key vLLM does not write is not found by the same check.
    assert '"mean_ttft_seconds"' not in serve
