#!/usr/bin/env bash
# On the Pascal runner: serve a tiny model with the vLLM installed from the new channel and
# check that a completion comes back. Run inside the test environment:
#   micromamba run -n pascal-test bash .ci/gpu-smoke.sh MODEL
set -euo pipefail

model=${1:?usage: gpu-smoke.sh MODEL}
port=${PORT:-8000}
log=${RUNNER_TEMP:-/tmp}/vllm-serve.log

capability=$(python -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
case $capability in
  6.*) echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1) (compute capability ${capability})" ;;
  *)
    echo "gpu-smoke.sh: the GPU has compute capability ${capability}; this job is for Pascal (6.x)" >&2
    exit 1
    ;;
esac

# fp16: Pascal has no bf16. A short context keeps the KV cache small enough for any Pascal card.
vllm serve "$model" --dtype float16 --max-model-len 512 --gpu-memory-utilization 0.5 \
  --port "$port" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:${port}/health" >/dev/null; then
    break
  fi
  if ! kill -0 "$server" 2>/dev/null; then
    cat "$log"
    echo "gpu-smoke.sh: vllm serve exited before it was ready" >&2
    exit 1
  fi
  sleep 2
done

request=$(printf '{"model": "%s", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}' "$model")
if ! response=$(curl -sf "http://127.0.0.1:${port}/v1/completions" -H "Content-Type: application/json" -d "$request"); then
  cat "$log"
  echo "gpu-smoke.sh: the completion request failed" >&2
  exit 1
fi
text=$(python -c 'import json, sys; print(json.load(sys.stdin)["choices"][0]["text"])' <<<"$response")
if [[ -z ${text//[[:space:]]/} ]]; then
  cat "$log"
  echo "gpu-smoke.sh: the completion is empty: ${response}" >&2
  exit 1
fi
echo "completion: ${text}"
# Which attention backend vLLM chose on Pascal (TRITON_ATTN expected), for the log reader.
grep -i "attention backend\|TRITON_ATTN" "$log" | head -n 3 || true
