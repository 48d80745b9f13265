"""vLLM's LLM engine, `vllm serve` and `pascal-forge bench`, in Pascal form, on the lent GPU
(issue 25, items 2 and 3; issue 26, item 4).

    python run_vllm_engine.py all --out DIR [--models dense,dense-gptq-4bit,...] [--budget-s 500]

Every step but `all` runs in its own process; `all` runs them in JOBS' order (by value) within
one time budget, and rewrites DIR/summary.json after each job, so a timeout still leaves results:
- make: tiny random-weight models of each family, written by transformers to DIR/models/<family>
  (float32 safetensors, the word-level tokenizer and chat template of pascal_forge.checks.vllm.engine;
  nothing from a hub), and each quantized checkpoint of MODELS (tiny_checkpoints: GPTQ 4/8-bit,
  AutoRound) with its reference folder, the float32 weights the checkpoint decodes to;
- reference: transformers in float32 on the GPU over each model's reference weights: greedy tokens,
  each chosen token's logprob and the top-2 margin;
- generate: vLLM's LLM engine (every process answering as a P40, engine_site/sitecustomize.py),
  with the settings a P40 owner gets (torch.compile and CUDA graphs as they resolve for 6.1), then
  eager; float32: tokens identical to the reference's, logprobs within FP32_LOGPROB_BOUND; float16:
  tokens identical and logprobs within the model's bound while the reference's top-2 margin
  stays above it (Model.fp16_bound says why each bound);
- serve: `vllm serve` on 127.0.0.1 answers /v1/completions and /v1/chat/completions;
- bench: pascal_forge.checks.bench (what `pascal-forge bench` runs) on the tiny dense model; its report
  is headed "Pascal form on an H100, not a P40's figures".
vLLM's compiled extension runs where the carry brought it (pascal_engine_form.carried_extensions);
without it CustomOps run their native PyTorch code (custom_ops ["none"]).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pascal_forge.pascal import P40

HERE = Path(__file__).resolve().parent
PROMPTS = ["w1 w2 w3 w4 w5 w6 w7 w8", "a b c d e f g h i j"]
MAX_TOKENS = 12
FP32_LOGPROB_BOUND = 1e-3
# float16 against the float32 reference, unquantized: fp16 keeps 11 significant bits (unit
# roundoff 4.9e-4); through two layers of width <= 512 the logits (tens, with weights of std
# 0.2) carry errors of a few 1e-3, so 0.05 on a chosen token's logprob is ten times that.
FP16_LOGPROB_BOUND = 0.05
# GPTQ: the reference runs the very weights the checkpoint decodes to (float16 scales included),
# so only the arithmetic differs, but the kernels add partial sums in float16 (Exllama's half2
# loop on 6.0; 0040's float32 loop on 6.1) and vLLM rounds the activations to float16 between
# every layer: twice the unquantized bound.
GPTQ_LOGPROB_BOUND = 0.1
PARALLEL_ENGINES = 4
GPU_MEMORY = "0.15"  # of the card's memory per engine: four engines and a server fit side by side
# A fixed KV cache: vLLM then skips its memory profiling, whose check (free memory may not grow
# while it profiles) an engine of the run finishing beside it would trip. Tiny models need little.
KV_CACHE_BYTES = str(512 * 2**20)
MIN_JOB_S = 45  # a job is not started with less time than this left


@dataclass(frozen=True)
class Model:
    """One model folder of the run: a family's float model, or a quantized checkpoint of it."""

    name: str
    family: str
    method: str = "fp16"  # "fp16" (the float model) or a tiny_checkpoints.METHODS key
    fp16_bound: float = FP16_LOGPROB_BOUND

    @property
    def reference_name(self) -> str:
        return self.family if self.method == "fp16" else f"{self.name}-reference"


def _quantized(family: str, method: str) -> Model:
    return Model(f"{family}-{method}", family, method, GPTQ_LOGPROB_BOUND)


# Every method the CPU matrix (docs/vllm-engine-matrix.md) finds working on 6.1 for 0.34.0: fp16,
# GPTQ 4/8-bit and AutoRound on the dense model; GPTQ 4-bit and AutoRound on the MoE. Not here:
# the hybrid's GPTQ (its linear attention and shared expert need names tiny_checkpoints.QUANTIZABLE
# does not cover yet), and GPTQ on Gemma 3, which 6.x refuses: it needs float16, which vLLM refuses
# for Gemma 3 (0035's message says so since this run's first try met that refusal).
MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        Model("dense", "dense"),
        _quantized("dense", "gptq-4bit"),
        Model("moe", "moe"),
        _quantized("moe", "gptq-4bit"),
        _quantized("dense", "gptq-8bit"),
        _quantized("dense", "autoround"),
        Model("gemma3", "gemma3"),
        Model("hybrid", "hybrid"),
        _quantized("moe", "autoround"),
    )
}


@dataclass(frozen=True)
class Job:
    step: str  # generate, serve or bench
    model: str
    dtype: str = "float16"
    eager: bool = False
    budget_s: int = 300

    @property
    def name(self) -> str:
        if self.step != "generate":
            return f"{self.step}-{self.model}"
        return f"vllm-{self.model}-{self.dtype}-{'eager' if self.eager else 'default'}"

    def args(self) -> list[str]:
        args = [self.step, "--model", self.model, "--dtype", self.dtype]
        return args + (["--eager"] if self.eager else [])


# By value: dense fp16 as a P40 owner starts it and eager, GPTQ 4-bit, the MoE, serve, then the rest.
JOBS: tuple[Job, ...] = (
    Job("generate", "dense"),
    Job("generate", "dense", eager=True),
    Job("generate", "dense-gptq-4bit"),
    Job("generate", "moe"),
    Job("generate", "moe-gptq-4bit"),
    Job("serve", "dense", budget_s=240),
    Job("generate", "dense", "float32", eager=True),
    Job("bench", "dense", budget_s=400),
    Job("generate", "dense-gptq-4bit", eager=True),
    Job("generate", "dense-gptq-8bit"),
    Job("generate", "moe-gptq-4bit", eager=True),
    Job("generate", "moe", eager=True),
    Job("generate", "gemma3", "float32"),  # --dtype auto's choice on 6.x: vLLM refuses float16 for it
    Job("generate", "hybrid"),
    Job("generate", "dense-autoround"),
    Job("generate", "moe-autoround"),
    Job("generate", "moe", "float32", eager=True),
    Job("generate", "gemma3", "float32", eager=True),
    Job("generate", "hybrid", "float32", eager=True),
)


def _extension_carried() -> bool:
    from pascal_engine_form import carried_extensions

    return "vllm._C_stable_libtorch" in carried_extensions()


def _engine_flags() -> list[str]:
    """Without the compiled extension, CustomOps must run their native code."""
    return [] if _extension_carried() else ["--compilation-config", '{"custom_ops": ["none"]}']


# --------------------------------------------------------------------------- steps


def make(out: Path, models: list[Model], version: str) -> None:
    """Tiny random-weight models from the configs the CPU matrix builds (vllm_engine), and the
    quantized checkpoints of them (tiny_checkpoints)."""
    import torch
    from tiny_checkpoints import METHODS, write_quantized
    from transformers import AutoConfig, AutoModelForCausalLM

    from pascal_forge.checks.vllm.engine import QUANTIZATIONS, family_configs, write_model

    configs = family_configs(version)
    failed = []
    for family in dict.fromkeys(m.family for m in models):
        try:
            folder = write_model(out / "models" / family, configs[family], None)
            config = AutoConfig.from_pretrained(folder)
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            for parameter in model.parameters():  # larger than the default init: a peaked distribution
                torch.nn.init.normal_(parameter, std=0.2)
            model.save_pretrained(folder, safe_serialization=True)
            print(f"made {family}: {sum(p.numel() for p in model.parameters())} parameters", flush=True)
        except Exception as exc:  # one family's failure leaves the others to run
            failed.append(f"{family}: {type(exc).__name__}: {exc}")
            print(f"FAILED to make {failed[-1]}", flush=True)
    for m in models:
        if m.method != "fp16" and (out / "models" / m.family / "model.safetensors").is_file():
            folders = out / "models" / m.family, out / "models" / m.name, out / "models" / m.reference_name
            layers = write_quantized(*folders, METHODS[m.method], QUANTIZATIONS)
            print(f"made {m.name}: {layers} quantized linear layers", flush=True)
    if failed:
        raise SystemExit(f"not made: {'; '.join(failed)}")


def reference(out: Path, models: list[Model]) -> None:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    failed = []
    for m in models:
        try:
            _reference(out, m, device)
        except Exception as exc:  # one model's failure leaves the others to run
            failed.append(f"{m.name}: {type(exc).__name__}: {exc}")
            print(f"FAILED reference {failed[-1]}", flush=True)
    if failed:
        raise SystemExit(f"no reference for: {'; '.join(failed)}")


def _reference(out: Path, m: Model, device: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = out / "models" / m.reference_name
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    rows = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
        tokens, logprobs, margins = [], [], []
        with torch.no_grad():
            for _ in range(MAX_TOKENS):
                lp = torch.log_softmax(model(ids).logits[0, -1].float(), -1)
                top = torch.topk(lp, 2)
                tokens.append(int(top.indices[0]))
                logprobs.append(float(top.values[0]))
                margins.append(float(top.values[0] - top.values[1]))
                ids = torch.cat([ids, top.indices[:1].view(1, 1)], dim=1)
        rows.append({"prompt": prompt, "tokens": tokens, "logprobs": logprobs, "margins": margins})
    (out / f"reference-{m.name}.json").write_text(json.dumps(rows, indent=1))
    print(f"reference {m.name}: {rows[0]['tokens']}", flush=True)


def generate(out: Path, job: Job) -> None:
    from vllm import LLM, SamplingParams

    extension = _extension_carried()
    llm = LLM(
        model=str(out / "models" / job.model),
        dtype=job.dtype,
        enforce_eager=job.eager,
        max_model_len=256,
        gpu_memory_utilization=float(GPU_MEMORY),
        kv_cache_memory_bytes=int(KV_CACHE_BYTES),
        seed=0,
        **({} if extension else {"compilation_config": {"custom_ops": ["none"]}}),
    )
    config = llm.llm_engine.vllm_config
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, logprobs=1, ignore_eos=True)
    rows = []
    for output in llm.generate(PROMPTS, params):
        completion = output.outputs[0]
        chosen = [step[t].logprob for step, t in zip(completion.logprobs, completion.token_ids, strict=True)]
        rows.append({"prompt": output.prompt, "tokens": list(completion.token_ids), "logprobs": chosen})
    compilation = config.compilation_config
    settings = {
        "extension": extension,
        "compilation_mode": str(compilation.mode),
        "cudagraph_mode": str(compilation.cudagraph_mode),
        "custom_ops": list(compilation.custom_ops),
        "quantization": str(config.model_config.quantization),
        "attention": str(getattr(getattr(config, "attention_config", None), "backend", "")),
    }
    (out / f"{job.name}.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    print(f"{job.name}: {rows[0]['tokens']} {settings}", flush=True)


def compare(reference_rows: list[dict], rows: list[dict], dtype: str, fp16_bound: float) -> tuple[bool, str]:
    """float32: identical tokens; float16: logprobs within the bound while the reference is decisive."""
    bound = fp16_bound if dtype == "float16" else FP32_LOGPROB_BOUND
    worst, compared = 0.0, 0
    for ref, got in zip(reference_rows, rows, strict=True):
        for i, (want, have) in enumerate(zip(ref["tokens"], got["tokens"], strict=True)):
            if dtype == "float16" and ref["margins"][i] < bound:
                break  # a near-tie: either token is right within fp16's error; the rest diverges
            if want != have:
                return False, f"token {i} of {ref['prompt']!r}: {have} != {want}"
            worst = max(worst, abs(ref["logprobs"][i] - got["logprobs"][i]))
            compared += 1
    return worst <= bound, f"{compared} tokens identical, max |logprob diff| {worst:.2e} (bound {bound})"


def _wait_healthy(base: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"vllm serve exited with {server.returncode}; see {log}")
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            return
        except OSError:
            time.sleep(2)
    raise SystemExit(f"vllm serve was not healthy after {timeout:.0f} s; see {log}")


def serve(out: Path, model_name: str, port: int = 8765) -> None:
    model = str(out / "models" / model_name)
    command = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model, "--host", "127.0.0.1",
               "--port", str(port), "--max-model-len", "256", "--gpu-memory-utilization", GPU_MEMORY,
               "--kv-cache-memory-bytes", KV_CACHE_BYTES,
               "--dtype", "float16", *_engine_flags()]  # fmt: skip
    log = out / "serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    answers = {}
    try:
        _wait_healthy(base, server, log, 220)
        for path, body in (
            ("/v1/completions", {"model": model, "prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0}),
            ("/v1/chat/completions", {"model": model, "max_tokens": 8, "temperature": 0,
                                      "messages": [{"role": "user", "content": PROMPTS[1]}]}),
        ):  # fmt: skip
            request = urllib.request.Request(
                base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                answers[path] = json.loads(response.read())
            print(f"{path}: {json.dumps(answers[path])[:300]}", flush=True)
            (out / "serve.json").write_text(json.dumps(answers, indent=1))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


BENCH_LABEL = "Pascal form on an H100, not a P40's figures"


def bench(out: Path, model_name: str, port: int = 8766) -> None:
    """What `pascal-forge bench MODEL` runs (pascal_forge.checks.bench.run_bench), with `vllm` a wrapper
    for this machine's python and the engine flags the other steps use."""
    from pascal_forge.checks.bench import bench_report, run_bench, save_result

    wrapper = out / "bin" / "vllm"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m vllm.entrypoints.cli.main "$@"\n')
    wrapper.chmod(0o755)
    model = out / "models" / model_name
    flags = ["--gpu-memory-utilization", GPU_MEMORY, "--kv-cache-memory-bytes", KV_CACHE_BYTES]
    flags += ["--max-model-len", "1024", "--dtype", "float16"]
    result = run_bench(
        model, 1, out / "bench", vllm=str(wrapper), port=port, extra=[*flags, *_engine_flags()]
    )
    save_result(result, out / "bench" / "bench-result.json")
    report = f"# {BENCH_LABEL}\n\n{bench_report(result, model)}\n"
    (out / "bench-report.md").write_text(report)
    print(report, flush=True)


# --------------------------------------------------------------------------- all


def _stop(child: subprocess.Popen) -> None:
    """SIGTERM to the step's process group (serve and bench then stop the servers they started
    in sessions of their own), SIGKILL to what is left after 15 s."""
    os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


class Runner:
    """Runs steps as child processes within one deadline and keeps summary.json current."""

    def __init__(self, out: Path, capability: int, budget_s: float) -> None:
        self.out = out
        self.capability = capability
        self.deadline = time.monotonic() + budget_s
        self.summary: list[dict] = []
        self.lock = threading.Lock()

    def record(self, name: str, code: int, text: str, seconds: float) -> None:
        with self.lock:
            self.summary.append(
                {"step": name, "pass": code == 0, "code": code, "text": text, "s": round(seconds)}
            )
            (self.out / "summary.json").write_text(json.dumps(self.summary, indent=1))
            print(f"{'PASS' if code == 0 else 'FAIL'} {name} ({seconds:.0f} s): {text}", flush=True)

    def step(self, name: str, args: list[str], pascal: bool, budget_s: int) -> tuple[int, str, float]:
        """(exit code, the log's last line, seconds); 125: not started for want of time."""
        left = self.deadline - time.monotonic()
        if left < MIN_JOB_S:
            self.record(name, 125, f"not started: {left:.0f} s of the budget left", 0)
            return 125, "", 0.0
        env = dict(os.environ)
        path = [str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")]
        if pascal:  # every process of the engine run answers as the Pascal card
            env["PASCAL_FORM"] = str(self.capability)
            path.insert(0, str(HERE / "engine_site"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
        start = time.monotonic()
        with (self.out / f"{name}.log").open("w") as log:
            command = [sys.executable, __file__, *args, "--out", str(self.out)]
            child = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = child.wait(min(budget_s, left - 5))
            except subprocess.TimeoutExpired:  # the step and every engine process it started
                _stop(child)
                code = 124
        tail = (self.out / f"{name}.log").read_text(errors="replace").strip().splitlines()[-1:] or [""]
        return code, tail[0][:300], time.monotonic() - start

    def job(self, job: Job) -> None:
        code, text, seconds = self.step(job.name, job.args(), True, job.budget_s)
        if code == 125:
            return
        model = MODELS[job.model]
        result = self.out / f"{job.name}.json"
        reference_file = self.out / f"reference-{model.name}.json"
        if job.step == "generate" and code == 0 and result.is_file() and not reference_file.is_file():
            code, text = 1, f"generated ({result.name}) but no reference to compare with (reference.log)"
        elif job.step == "generate" and code == 0 and result.is_file():
            reference_rows = json.loads((self.out / f"reference-{model.name}.json").read_text())
            ok, text = compare(
                reference_rows, json.loads(result.read_text())["rows"], job.dtype, model.fp16_bound
            )
            code = 0 if ok else 1
        elif job.step == "serve" and code == 0:
            text = "answered " + ", ".join(json.loads((self.out / "serve.json").read_text()))
        self.record(job.name, code, text, seconds)


def run_all(out: Path, models: list[Model], version: str, capability: int, budget_s: float) -> int:
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(out, capability, budget_s)
    names = ",".join(m.name for m in models)
    for step, budget in (("make", 120), ("reference", 120)):
        code, text, seconds = runner.step(
            step, [step, "--models", names, "--version", version], False, budget
        )
        runner.record(step, code, text, seconds)  # a model it could not make fails its own jobs
    jobs = [job for job in JOBS if job.model in {m.name for m in models}]
    # Engines start side by side (GPU_MEMORY each), in JOBS' order.
    with ThreadPoolExecutor(max_workers=PARALLEL_ENGINES) as pool:
        list(pool.map(runner.job, jobs))
    return 0 if all(row["pass"] for row in runner.summary) else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=["all", "make", "reference", "generate", "serve", "bench"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default=",".join(MODELS), help="for all, make, reference (MODELS' names)")
    parser.add_argument("--model", default="dense", help="for generate, serve, bench")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--eager", action="store_true")
    parser.add_argument("--version", help="the vLLM release (default: the one on the path, the carry's)")
    parser.add_argument("--capability", type=int, default=P40.capability)
    parser.add_argument("--budget-s", type=float, default=500, help="for all: the whole run's time")
    args = parser.parse_args()
    # Stopped by the run's deadline: unwind, so the servers a step started are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    unknown = [name for name in args.models.split(",") if name not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    models = [MODELS[name] for name in args.models.split(",")]
    # The carry's vllm.tar.xz holds its vllm-<version>.dist-info (prepare_engine_carry.py).
    args.version = args.version or importlib.metadata.version("vllm")
    if args.step == "all":
        return run_all(args.out, models, args.version, args.capability, args.budget_s)
    if args.step == "make":
        make(args.out, models, args.version)
    elif args.step == "reference":
        reference(args.out, models)
    elif args.step == "generate":
        generate(args.out, Job("generate", args.model, args.dtype, args.eager))
    elif args.step == "serve":
        serve(args.out, args.model)
    else:
        bench(args.out, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
