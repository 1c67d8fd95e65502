#!/usr/bin/env bash
# melbo's benchmark on a machine with an NVIDIA GPU and a CUDA PyTorch (not runnable on the CPU-only
# development machines; see bench/RESULTS.md, section GPU).
#
#   bash bench/gpu/run.sh            # uses `python3`; PYTHON=/path/to/python to pick another
#
# 1. builds melbo against that PyTorch's own libtorch (LIBTORCH = torch.utils.cmake_prefix_path),
# 2. runs `npm run bench`'s harness with melbo on the GPU (`--device cuda`) and large blocks
#    (B = 16, 32, 64) on the same synthetic Qwen1.5-1.8B-shaped checkpoint, with the Python
#    baseline on that PyTorch (CPU rows, as on the development machine),
# 3. runs the Python baseline on the GPU (faithful and cached loops, f32 and bf16),
# 4. runs a Hugging Face transformers baseline of the original loop on the GPU (when transformers
#    is installed),
# and writes everything to bench/gpu/RESULTS-gpu.md (+ .json): melbo on the GPU side by side with
# the baselines on the GPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
PY="${PYTHON:-python3}"
out="$root/bench/gpu"
work="${BENCH_DIR:-${TMPDIR:-/tmp}/melbo-bench-gpu}"
say() { printf '[gpu bench] %s\n' "$*" >&2; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || say "nvidia-smi not found"
"$PY" - <<'EOF' || { say "this python has no CUDA PyTorch (set PYTHON=...)"; exit 1; }
import torch, sys
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}", file=sys.stderr)
sys.exit(0 if torch.cuda.is_available() else 1)
EOF

# 1. Build against this PyTorch's libtorch (setup.sh skips apt's libtorch-dev when LIBTORCH is set).
LIBTORCH="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
export LIBTORCH
say "libtorch: $LIBTORCH"
if [[ ! -d node_modules ]]; then npm ci --no-audit --no-fund --loglevel=error; fi
rm -rf build
if ! npx cmake-js compile --out build >"$out/build.log" 2>&1; then
  say "CUDA build failed (see bench/gpu/build.log); retrying without the CUDA kernels"
  rm -rf build
  npx cmake-js compile --out build --CDMELBO_CUDA=OFF >>"$out/build.log" 2>&1
fi
npx tsc -p tsconfig.json
node -e "const a=require('./build/Release/melbo_native.node'); console.error('melbo addon: torch', a.version().torch, 'cuda available', a.cudaAvailable(), 'kernels', a.cudaKernelsBuilt())"

# 2. The harness, melbo on the GPU with large blocks; its Python rows use this PyTorch on the CPU.
export BENCH_PYTHON="$PY"
node dist/bench/run.js --device cuda --blocks 16,32,64 --large-blocks "" --dir "$work" --keep --out "$out/RESULTS-gpu.md"

# 3 + 4. Baselines on the GPU, on the checkpoint the harness wrote (kept in $work).
inputs="$work/bench-inputs.safetensors"
gpu_json="$out/baselines-gpu.jsonl"
: >"$gpu_json"
for dtype in f32 bf16; do
  for mode in faithful cached; do
    say "python baseline on the GPU: $mode, $dtype"
    "$PY" bench/python/baseline.py loop --model "$work" --inputs "$inputs" --mode "$mode" --steps 30 \
      --device cuda --dtype "$dtype" | tail -n 1 >>"$gpu_json"
  done
done
if "$PY" -c "import transformers" 2>/dev/null; then
  for dtype in bf16 f32; do
    say "transformers baseline of the original loop on the GPU ($dtype)"
    "$PY" bench/python/hf_baseline.py --model "$work" --inputs "$inputs" --device cuda --dtype "$dtype" --steps 30 | tail -n 1 >>"$gpu_json"
  done
else
  say "transformers is not installed: no Hugging Face baseline (pip install transformers)"
fi

# Append the GPU baselines to the report.
"$PY" - "$gpu_json" "$out/RESULTS-gpu.md" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
lines = ["", "## Baselines on the GPU (bench/gpu/run.sh)", "",
         "| baseline | dtype | s / step (median of steps 2…) | vector-steps/s |", "|---|---|---:|---:|"]
for r in rows:
    step = r.get("step_s") or statistics.median(r["times"][1:])
    name = ("transformers " + r.get("transformers", "")) if r.get("baseline") == "transformers" else f"plain torch, {r['mode']}"
    lines.append(f"| {name} ({r.get('device_name', r['device'])}) | {r['dtype']} | {step:.4f} | {1 / step:.2f} |")
with open(sys.argv[2], "a") as f:
    f.write("\n".join(lines) + "\n")
EOF
say "wrote $out/RESULTS-gpu.md"
if [[ -z "${BENCH_KEEP:-}" ]]; then rm -rf "$work"; fi
