"""vLLM's LLM engine and `vllm serve`, in Pascal form, on the lent GPU (issue 25, items 2 and 3).

    python run_vllm_engine.py all --vllm TREE --out DIR [--families dense,moe,...]

Every step but `all` runs in its own process; `all` runs them in order and prints a summary:
- make: tiny random-weight models of each family, written by transformers to DIR/models/<family>
  (float32 safetensors, the word-level tokenizer of pascal_forge.vllm_engine; nothing from a hub);
- reference: transformers in float32 on the GPU: greedy tokens and each chosen token's logprob;
- generate: vLLM's LLM engine (every process answering as a P40, engine_site/sitecustomize.py)
  with the settings a P40 owner gets (torch.compile and CUDA graphs as they resolve for 6.1),
  then eager; float32 (tokens must equal the reference's) and float16 (logprobs within
  FP16_LOGPROB_BOUND until the reference's top-2 margin drops under it);
- serve: `vllm serve` on 127.0.0.1 answers /v1/completions and /v1/chat/completions.
vLLM's compiled extension is not built for this run (see scripts/gpu/README-engine.md): CustomOps
run their native PyTorch code (custom_ops ["none"]); the Triton kernels are vLLM's own, as sm_61 PTX.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPTS = ["w1 w2 w3 w4 w5 w6 w7 w8", "a b c d e f g h i j"]
MAX_TOKENS = 12
# float16 against the float32 reference: a chosen token's logprob may differ by this much.
FP16_LOGPROB_BOUND = 0.05
FAMILIES = ("dense", "moe", "gemma3", "hybrid")
# (dtype, eager): as a P40 owner gets it (torch.compile and CUDA graphs as they resolve for 6.1),
# then eager; float32 eager for the exact-token comparison.
RUNS = (("float16", False), ("float16", True), ("float32", True))
PARALLEL_ENGINES = 4


# --------------------------------------------------------------------------- steps


def make(out: Path, families: list[str], version: str) -> None:
    """Tiny random-weight models from the configs the CPU matrix builds (vllm_engine)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from pascal_forge.vllm_engine import family_configs, write_model

    configs = family_configs(version)
    for family in families:
        folder = write_model(out / "models" / family, configs[family], None)
        config = AutoConfig.from_pretrained(folder)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
        for parameter in model.parameters():  # larger than the default init: a peaked distribution
            torch.nn.init.normal_(parameter, std=0.2)
        model.save_pretrained(folder, safe_serialization=True)
        print(f"made {family}: {sum(p.numel() for p in model.parameters())} parameters")


def reference(out: Path, families: list[str]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for family in families:
        folder = out / "models" / family
        tokenizer = AutoTokenizer.from_pretrained(folder)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).to(device).eval()
        rows = []
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
            tokens, logprobs, margins = [], [], []
            with torch.no_grad():
                for _ in range(MAX_TOKENS):
                    logits = model(ids).logits[0, -1].float()
                    lp = torch.log_softmax(logits, -1)
                    top = torch.topk(lp, 2)
                    tokens.append(int(top.indices[0]))
                    logprobs.append(float(top.values[0]))
                    margins.append(float(top.values[0] - top.values[1]))
                    ids = torch.cat([ids, top.indices[:1].view(1, 1)], dim=1)
            rows.append({"prompt": prompt, "tokens": tokens, "logprobs": logprobs, "margins": margins})
        (out / f"reference-{family}.json").write_text(json.dumps(rows, indent=1))
        print(f"reference {family}: {rows[0]['tokens']}")


def generate(out: Path, family: str, dtype: str, eager: bool) -> None:
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=str(out / "models" / family),
        dtype=dtype,
        enforce_eager=eager,
        max_model_len=256,
        gpu_memory_utilization=0.18,
        compilation_config={"custom_ops": ["none"]},
        seed=0,
    )
    config = llm.llm_engine.vllm_config
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, logprobs=1, ignore_eos=True)
    rows = []
    for output in llm.generate(PROMPTS, params):
        completion = output.outputs[0]
        chosen = [step[t].logprob for step, t in zip(completion.logprobs, completion.token_ids, strict=True)]
        rows.append({"prompt": output.prompt, "tokens": list(completion.token_ids), "logprobs": chosen})
    settings = {
        "compilation_mode": str(config.compilation_config.mode),
        "cudagraph_mode": str(config.compilation_config.cudagraph_mode),
        "attention": str(config.attention_config.backend) if hasattr(config, "attention_config") else "",
    }
    name = f"vllm-{family}-{dtype}-{'eager' if eager else 'default'}.json"
    (out / name).write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    print(f"{name}: {rows[0]['tokens']} {settings}")


def compare(reference_rows: list[dict], rows: list[dict], dtype: str) -> tuple[bool, str]:
    """float32: identical tokens; float16: logprobs within the bound while the reference is decisive."""
    worst = 0.0
    for ref, got in zip(reference_rows, rows, strict=True):
        for i, (want, have) in enumerate(zip(ref["tokens"], got["tokens"], strict=True)):
            if dtype == "float16" and ref["margins"][i] < FP16_LOGPROB_BOUND:
                break  # a near-tie: either token is right within fp16's error
            if want != have:
                return False, f"token {i} of {ref['prompt']!r}: {have} != {want}"
            worst = max(worst, abs(ref["logprobs"][i] - got["logprobs"][i]))
    bound = FP16_LOGPROB_BOUND if dtype == "float16" else 1e-3
    return worst <= bound, f"max |logprob diff| {worst:.2e} (bound {bound})"


def serve(out: Path, family: str, port: int = 8765) -> None:
    model = str(out / "models" / family)
    command = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model, "--host", "127.0.0.1",
               "--port", str(port), "--max-model-len", "256", "--gpu-memory-utilization", "0.18",
               "--compilation-config", '{"custom_ops": ["none"]}']  # fmt: skip
    log = (out / "serve.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    answers = {}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"vllm serve exited with {server.returncode}; see {out / 'serve.log'}")
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                time.sleep(2)
        for path, body in (
            ("/v1/completions", {"model": model, "prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0}),
            ("/v1/chat/completions", {"model": model, "max_tokens": 8, "temperature": 0,
                                      "messages": [{"role": "user", "content": PROMPTS[1]}]}),
        ):  # fmt: skip
            request = urllib.request.Request(
                base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=120) as response:
                answers[path] = json.loads(response.read())
            print(f"{path}: {json.dumps(answers[path])[:300]}")
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    (out / "serve.json").write_text(json.dumps(answers, indent=1))


# --------------------------------------------------------------------------- all


def _step(args: list[str], out: Path, capability: int | None, timeout: int) -> tuple[int, str]:
    env = dict(os.environ)
    path = [str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")]
    if capability is not None:  # every process of the engine run answers as the Pascal card
        env["PASCAL_FORM"] = str(capability)
        path.insert(0, str(HERE / "engine_site"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    name = "-".join(a.strip("-") for a in args[:4])
    with (out / f"{name}.log").open("w") as log:
        try:
            code = subprocess.run(
                [sys.executable, __file__, *args, "--out", str(out)], env=env, stdout=log,
                stderr=subprocess.STDOUT, timeout=timeout, check=False,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = 124
    tail = (out / f"{name}.log").read_text().strip().splitlines()[-1:] or [""]
    return code, tail[0][:200]


def _generate_step(out: Path, capability: int, family: str, dtype: str, eager: bool) -> tuple[int, str]:
    args = ["generate", "--family", family, "--dtype", dtype, *(["--eager"] if eager else [])]
    return _step(args, out, capability, 300)


def run_all(out: Path, families: list[str], version: str, capability: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    fam = ",".join(families)
    summary = [("make", *_step(["make", "--families", fam, "--version", version], out, None, 120))]
    summary.append(("reference", *_step(["reference", "--families", fam], out, None, 120)))
    # Each engine start is its own process; four at a time share the GPU (a fifth of its memory
    # each), so the whole run fits one device call.
    jobs = [(family, dtype, eager) for family in families for dtype, eager in RUNS]
    with ThreadPoolExecutor(max_workers=PARALLEL_ENGINES) as pool:
        codes = list(pool.map(lambda job: _generate_step(out, capability, *job), jobs))
    for (family, dtype, eager), (code, tail) in zip(jobs, codes, strict=True):
        mode = "eager" if eager else "default"
        result = out / f"vllm-{family}-{dtype}-{mode}.json"
        if code == 0 and result.is_file():
            reference_rows = json.loads((out / f"reference-{family}.json").read_text())
            ok, text = compare(reference_rows, json.loads(result.read_text())["rows"], dtype)
            summary.append((f"{family} {dtype} {mode}", 0 if ok else 1, text))
        else:
            summary.append((f"{family} {dtype} {mode}", code, tail))
    summary.append(("serve", *_step(["serve", "--family", families[0]], out, capability, 240)))
    for name, code, text in summary:
        print(f"{'PASS' if code == 0 else 'FAIL'} {name}: {text}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0 if all(code == 0 for _, code, _ in summary) else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["all", "make", "reference", "generate", "serve"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--family", default="dense")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--eager", action="store_true")
    parser.add_argument("--version", default="0.34.0")
    parser.add_argument("--capability", type=int, default=61)
    args = parser.parse_args()
    families = args.families.split(",")
    if args.step == "all":
        return run_all(args.out, families, args.version, args.capability)
    if args.step == "make":
        make(args.out, families, args.version)
    elif args.step == "reference":
        reference(args.out, families)
    elif args.step == "generate":
        generate(args.out, args.family, args.dtype, args.eager)
    else:
        serve(args.out, args.family)
    return 0


if __name__ == "__main__":
    sys.exit(main())
