"""`pascal-forge bench`: vLLM's own benchmarks on the owner's GPU, and a report they can paste.

What runs, all of it vLLM's code on the owner's machine:
- `vllm bench startup`: start-up time cold (fresh compile caches) and warm (caches kept);
- `vllm serve` on 127.0.0.1, then `vllm bench serve` with random prompts at 1 and at 16
  concurrent streams: output tok/s, time to first token, time per output token.

The report adds the GPU, driver, the stack (versions and conda build strings, CUDA archs of
torch) and the cost model's prediction for the same model on the same card beside the figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..channel.ours import is_ours
from ..errors import PascalForgeError
from .costmodel.cards import CARDS, P40, Card
from .costmodel.model import ModelShape, Prediction, Setup, predict
from .costmodel.table import load_table

STREAMS = (1, 16)
INPUT_TOKENS = 512
OUTPUT_TOKENS = 128
PROMPTS_PER_STREAM = 4
# One cold start (fresh compile caches), one warm-up, one warm start (caches kept).
STARTUP_ITERATIONS = ("--num-iters-cold", "1", "--num-iters-warmup", "1", "--num-iters-warm", "1")


class BenchError(PascalForgeError):
    """The benchmark could not run: what failed, and where its log is."""


# --------------------------------------------------------------------------- the model


def model_setup(config: Mapping[str, object], tp: int) -> Setup:
    """The cost model's Setup for a Hugging Face config.json (Qwen3/Llama-style decoders).

    GPTQ 4-bit checkpoints are priced on Exllama (what vLLM picks below 7.5), others as fp16.
    """
    text = config.get("text_config")
    if isinstance(text, Mapping):  # multimodal wrappers keep the decoder's shapes there
        config = {**text, "quantization_config": config.get("quantization_config")}
    try:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        shape = ModelShape(
            name=str(config.get("_name_or_path") or config.get("model_type") or "model"),
            hidden=hidden,
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate=int(config["intermediate_size"]),
            vocab=int(config["vocab_size"]),
            experts=int(config.get("num_experts") or 0),
            top_k=int(config.get("num_experts_per_tok") or 0),
            moe_intermediate=int(config.get("moe_intermediate_size") or 0),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"config.json lacks a decoder shape the cost model reads ({exc})") from exc
    quantization = config.get("quantization_config") or {}
    method = str(quantization.get("quant_method", "")) if isinstance(quantization, Mapping) else ""
    if not method:
        return Setup(shape, "fp16", tp)
    if method == "gptq" and quantization.get("bits") == 4:
        return Setup(shape, "exllama", tp)
    raise BenchError(f"the cost model prices fp16 and 4-bit GPTQ models, not {method!r}: no prediction")


def card_for(capability: int) -> Card | None:
    return next((card for card in CARDS.values() if card.capability == capability), None)


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class ServeFigures:
    """One `vllm bench serve --save-result` run at a fixed concurrency."""

    streams: int
    completed: int
    output_tokens_per_second: float  # all streams together
    mean_ttft_ms: float
    median_ttft_ms: float
    mean_tpot_ms: float  # per stream, after the first token

    @classmethod
    def from_result(cls, streams: int, result: Mapping[str, object]) -> ServeFigures:
        try:
            return cls(
                streams=streams,
                completed=int(result["completed"]),
                output_tokens_per_second=float(result["output_throughput"]),
                mean_ttft_ms=float(result["mean_ttft_ms"]),
                median_ttft_ms=float(result["median_ttft_ms"]),
                mean_tpot_ms=float(result["mean_tpot_ms"]),
            )
        except KeyError as exc:
            raise BenchError(f"vllm bench serve's result has no {exc} (another vLLM version?)") from exc


@dataclass(frozen=True)
class StartupFigures:
    cold_seconds: float
    warm_seconds: float
    cold_compilation_seconds: float | None = None
    warm_compilation_seconds: float | None = None

    @classmethod
    def from_result(cls, result: Mapping[str, object]) -> StartupFigures:
        try:
            return cls(
                cold_seconds=float(result["avg_cold_startup_time"]),
                warm_seconds=float(result["avg_warm_startup_time"]),
                cold_compilation_seconds=_optional(result.get("avg_cold_compilation_time")),
                warm_compilation_seconds=_optional(result.get("avg_warm_compilation_time")),
            )
        except KeyError as exc:
            raise BenchError(f"vllm bench startup's result has no {exc} (another vLLM version?)") from exc


def _optional(value: object) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Environment:
    gpu: str
    driver: str
    capability: int
    python: str
    packages: dict[str, str] = field(default_factory=dict)  # name -> "version build" or version
    torch_cuda: str = ""
    torch_archs: str = ""


@dataclass(frozen=True)
class BenchResult:
    model: str
    tp: int
    environment: Environment
    serve: list[ServeFigures]
    startup: StartupFigures | None


# --------------------------------------------------------------------------- the report


def format_report(result: BenchResult, setup: Setup | None, prediction_note: str = "") -> str:
    """The pasteable report: environment, measured figures, and the cost model beside them."""
    env = result.environment
    lines = [
        "## pascal-forge bench",
        "",
        f"- model: {result.model} (tensor parallel {result.tp})",
        f"- GPU: {env.gpu} (sm_{env.capability}), driver {env.driver}",
        f"- python {env.python}; torch CUDA {env.torch_cuda or '?'}, archs {env.torch_archs or '?'}",
    ]
    lines += [f"- {name} {version}" for name, version in sorted(env.packages.items())]
    lines += [
        "",
        f"Random prompts of {INPUT_TOKENS} tokens, {OUTPUT_TOKENS} output tokens (vllm bench serve):",
        "",
        "| streams | output tok/s (all) | tok/s per stream | TTFT mean / median (ms) "
        "| predicted tok/s per stream |",
        "|---|---|---|---|---|",
    ]
    card = card_for(env.capability)
    prediction = _prediction(setup, card) if setup else None
    for figures in result.serve:
        per_stream = 1000.0 / figures.mean_tpot_ms if figures.mean_tpot_ms else 0.0
        predicted = "-"
        if setup and card:
            streams = figures.streams
            step = predict(setup, card, load_table(), streams, INPUT_TOKENS + OUTPUT_TOKENS // 2, streams)
            predicted = f"{step.tokens_per_second / streams:.1f}"
        lines.append(
            f"| {figures.streams} | {figures.output_tokens_per_second:.1f} | {per_stream:.1f} | "
            f"{figures.mean_ttft_ms:.0f} / {figures.median_ttft_ms:.0f} | {predicted} |"
        )
    if result.startup:
        s = result.startup
        startup = f"Start-up (vllm bench startup): cold {s.cold_seconds:.1f} s, warm {s.warm_seconds:.1f} s"
        if s.cold_compilation_seconds is not None and s.warm_compilation_seconds is not None:
            startup += f" (compilation {s.cold_compilation_seconds:.1f} s cold"
            startup += f", {s.warm_compilation_seconds:.1f} s warm)"
        lines += ["", startup]
    lines.append("")
    if prediction is None:
        lines.append(f"Cost model: no prediction ({prediction_note or 'not a P40 or P100'}).")
    else:
        bound = prediction.bandwidth_bound_tokens_per_second
        lines.append(
            f"Cost model (a model, not a measurement; docs/cost-model.md): {prediction.setup.label} on "
            f"{prediction.card.name}: {prediction.tokens_per_second:.1f} tok/s for one stream, "
            f"bandwidth bound {bound:.1f} tok/s."
        )
    return "\n".join(lines)


def _prediction(setup: Setup, card: Card | None) -> Prediction | None:
    """One stream's decode at the benchmark's mean context (the prompt and half the output)."""
    return None if card is None else predict(setup, card, load_table(), 1, INPUT_TOKENS + OUTPUT_TOKENS // 2)


# --------------------------------------------------------------------------- running it


def read_environment(python: str) -> Environment:
    """GPU and driver from nvidia-smi; versions and build strings from the environment of `python`."""
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError) as exc:
        raise BenchError(
            f"nvidia-smi could not describe the GPU ({exc}): is the NVIDIA driver installed?"
        ) from exc
    name, driver, capability = (part.strip() for part in smi.split(","))
    probe = subprocess.run([python, "-c", _STACK_PROBE], capture_output=True, text=True, check=False)
    stack = json.loads(probe.stdout) if probe.returncode == 0 else {}
    packages = dict(stack.get("versions", {}))
    packages |= conda_builds(Path(stack.get("prefix", sys.prefix)))
    return Environment(
        gpu=name,
        driver=driver,
        capability=int(capability.replace(".", "")),
        python=stack.get("python", "?"),
        packages=packages,
        torch_cuda=stack.get("torch_cuda", ""),
        torch_archs=stack.get("torch_archs", ""),
    )


_STACK_PROBE = """
import json, sys
from importlib import metadata
out = {"python": sys.version.split()[0], "prefix": sys.prefix, "versions": {}}
for name in ("vllm", "torch", "triton"):
    try:
        out["versions"][name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
try:
    import torch
    out["torch_cuda"] = torch.version.cuda or ""
    out["torch_archs"] = " ".join(torch.cuda.get_arch_list())
except Exception:
    pass
print(json.dumps(out))
"""


def conda_builds(prefix: Path) -> dict[str, str]:
    """`version build` of our packages installed in a conda prefix (from conda-meta): those whose
    build string carries our mark."""
    builds = {}
    for record in sorted((prefix / "conda-meta").glob("*.json")):
        data = json.loads(record.read_text())
        if is_ours(str(data.get("build", ""))):
            builds[f"{data['name']} (conda)"] = f"{data.get('version', '?')} {data.get('build', '?')}"
    return builds


def _wait_healthy(port: int, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"vllm serve exited with {process.returncode} before it was ready; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise BenchError(f"vllm serve was not ready after {timeout:.0f} s; see {log}")


def _run_logged(command: Sequence[str], log: Path, env: Mapping[str, str]) -> None:
    with log.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=dict(env), check=False)
    if result.returncode != 0:
        raise BenchError(f"{' '.join(command[:3])} failed with {result.returncode}; see {log}")


def run_bench(
    model: Path,
    tp: int,
    work_dir: Path,
    vllm: str = "vllm",
    port: int = 8765,
    extra: Sequence[str] = (),
    python: str = sys.executable,
) -> BenchResult:
    """Run vLLM's start-up and serving benchmarks for `model`; logs and JSON results in `work_dir`."""
    if not (model / "config.json").is_file():
        raise BenchError(f"{model}: not a local model folder (no config.json)")
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    engine = ["--tensor-parallel-size", str(tp), *extra]
    startup_json = work_dir / "startup.json"
    startup_command = [vllm, "bench", "startup", "--model", str(model), *engine, *STARTUP_ITERATIONS]
    _run_logged([*startup_command, "--output-json", str(startup_json)], work_dir / "startup.log", env)
    startup = StartupFigures.from_result(json.loads(startup_json.read_text()))
    serve_log = work_dir / "serve.log"
    with serve_log.open("w") as out:
        server = subprocess.Popen(
            [vllm, "serve", str(model), "--host", "127.0.0.1", "--port", str(port), *engine],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        _wait_healthy(port, server, serve_log, timeout=1800)
        serve = []
        for streams in STREAMS:
            name = f"serve-{streams}.json"
            command = [vllm, "bench", "serve", "--backend", "vllm", "--base-url", f"http://127.0.0.1:{port}"]
            command += ["--model", str(model), "--dataset-name", "random"]
            command += ["--random-input-len", str(INPUT_TOKENS), "--random-output-len", str(OUTPUT_TOKENS)]
            command += ["--num-prompts", str(streams * PROMPTS_PER_STREAM), "--max-concurrency", str(streams)]
            command += ["--save-result", "--result-dir", str(work_dir), "--result-filename", name]
            _run_logged(command, work_dir / f"serve-{streams}.log", env)
            serve.append(ServeFigures.from_result(streams, json.loads((work_dir / name).read_text())))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=120)
    return BenchResult(str(model), tp, read_environment(python), serve, startup)


def save_result(result: BenchResult, path: Path) -> None:
    path.write_text(json.dumps(asdict(result), indent=1) + "\n")


def load_result(path: Path) -> BenchResult:
    """A run saved by `save_result` (so the report can be printed again, or on another machine)."""
    try:
        data = json.loads(path.read_text())
        startup = data.get("startup")
        return BenchResult(
            model=data["model"],
            tp=data["tp"],
            environment=Environment(**data["environment"]),
            serve=[ServeFigures(**row) for row in data["serve"]],
            startup=StartupFigures(**startup) if startup else None,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"{path}: not a bench result saved by pascal-forge bench ({exc})") from exc


def bench_report(result: BenchResult, model: Path) -> str:
    """The report for a finished run, with the cost model joined where it can price the model."""
    note = ""
    setup = None
    try:
        setup = model_setup(json.loads((model / "config.json").read_text()), result.tp)
    except BenchError as exc:
        note = str(exc)
    if card_for(result.environment.capability) is None:
        note = note or (
            f"sm_{result.environment.capability} is not a P40 or P100; the P40 figure for this model is "
            f"{predict(setup, P40, load_table()).tokens_per_second:.1f} tok/s"
            if setup
            else note
        )
    return format_report(result, setup, note)
