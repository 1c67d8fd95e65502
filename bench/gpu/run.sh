#!/usr/bin/env bash
# The GPU check of melbo, in one script (issue 11; DEVELOPERS.md says when to run it):
#
#   bash bench/gpu/run.sh                 # on the GPU machine: PyTorch + CUDA + nvcc, no Node
#   bash bench/gpu/run.sh --cpu-dry-run   # here: the same steps on the CPU build, tiny shapes
#
# 1. Node: the one on PATH, else the xz-compressed official binary carried in bench/gpu/carry/
#    (bash bench/gpu/pack-carry.sh makes it; the run tool carries that folder, dist/ and a pruned
#    node_modules/).
# 2. Builds the addon against the machine's PyTorch libtorch (torch.utils.cmake_prefix_path) with
#    plain cmake + ninja: cmake-js would fetch Node's headers from the network, and the N-API
#    headers are in node_modules/node-api-headers. The dry run uses the CPU build in build/.
# 3. Tests: GPU against CPU (test/device.test.ts), the CUDA projection kernel against libtorch
#    (test/projection.test.ts); hidden states against Hugging Face transformers when it is
#    installed (bench/gpu/hf_parity.py).
# 4. Benchmark: melbo's ortho block loop for B in {1, 16, 64, 256, 1024}, f32 and bf16
#    (bench/gpu/throughput.ts), beside the faithful PyTorch loop and the batched PyTorch loop on
#    the same checkpoint (bench/python/baseline.py; and the original loop on transformers' Qwen2
#    when it is installed, bench/python/hf_baseline.py), peak GPU memory of each.
# 5. Writes bench/gpu/out/RESULTS-gpu.json and RESULTS-gpu.md (the GPU section of
#    bench/RESULTS.md, with the targets' verdicts), and everything the steps printed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
DRY=0
[[ "${1:-}" == "--cpu-dry-run" ]] && DRY=1
# The first Python with PyTorch: $PYTHON, python3 on PATH, Debian's /usr/bin/python3.
PY=""
for candidate in "${PYTHON:-}" python3 /usr/bin/python3; do
  if [[ -n "$candidate" ]] && "$candidate" -c "import torch" 2>/dev/null; then PY="$candidate"; break; fi
done
out="${GPU_OUT:-$root/bench/gpu/out}"
work="${BENCH_DIR:-${TMPDIR:-/tmp}/melbo-gpu-bench}"
mkdir -p "$out" "$work"
started=$(date +%s)
say() { printf '[gpu run %4ss] %s\n' "$(( $(date +%s) - started ))" "$*" >&2; }
steps_json="$out/steps.jsonl"
: >"$steps_json"
# step NAME COMMAND...: runs it, its output in $out/NAME.log, its status in steps.jsonl; never stops the script.
step() {
  local name="$1"; shift
  local t0=$(date +%s)
  say "$name: $*"
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  printf '{"step":"%s","rc":%d,"seconds":%d}\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >>"$steps_json"
  if (( rc != 0 )); then say "$name failed (rc $rc): tail of $out/$name.log"; tail -n 15 "$out/$name.log" >&2; fi
  return $rc
}

# ---- 1. Node
if ! command -v node >/dev/null; then
  carried="$root/bench/gpu/carry/node.xz"
  [[ -f "$carried" ]] || { say "no node on PATH and no $carried (make it with bash bench/gpu/pack-carry.sh)"; exit 1; }
  mkdir -p "$work/node/bin"
  if command -v xz >/dev/null; then xz -dc "$carried" >"$work/node/bin/node"
  else "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$carried" "$work/node/bin/node"; fi
  chmod +x "$work/node/bin/node"
  export PATH="$work/node/bin:$PATH"
fi
[[ -n "$PY" ]] || { say "no Python with PyTorch (set PYTHON=...)"; exit 1; }
say "node $(node --version), $PY"
# The carried runtime packages (pack-carry.sh), where this tree has no node_modules of its own.
if [[ ! -d node_modules && -d bench/gpu/carry/node_modules ]]; then ln -s bench/gpu/carry/node_modules node_modules; fi
[[ -d dist/src && -d node_modules/node-api-headers ]] || { say "dist/ and node_modules/ must be built here (npx tsc) or carried"; exit 1; }

# ---- 2. The addon
if (( DRY )); then
  device=cpu
  addon="$root/build/Release/melbo_native.node"
  [[ -f "$addon" ]] || { say "the dry run uses the CPU build: run bash scripts/setup.sh first"; exit 1; }
  tiny=(--tiny)
  blocks="1,4,16"
else
  device=cuda
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
  LIBTORCH="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')" || { say "$PY has no PyTorch (set PYTHON=...)"; exit 1; }
  export LIBTORCH
  build="$work/build-gpu"
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  step build-configure cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_JS_INC="$root/node_modules/node-api-headers/include" -DLIBTORCH="$LIBTORCH"
  step build cmake --build "$build" -j "$(nproc)"
  addon="$(find "$build" -name melbo_native.node | head -n 1)"
  [[ -n "$addon" ]] || { say "the build made no addon (see $out/build.log)"; }
  tiny=()
  blocks="1,16,64,256,1024"
fi
export MELBO_ADDON="$addon"
"$PY" - >"$out/env.json" 2>/dev/null <<'EOF' || echo '{}' >"$out/env.json"
import json, torch
cuda = torch.cuda.is_available()
import importlib.util
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
                  "transformers": importlib.util.find_spec("transformers") is not None}))
EOF
node -e "const a=require(process.env.MELBO_ADDON); console.log(JSON.stringify({addonTorch: a.version().torch, cudaAvailable: a.cudaAvailable(), cudaKernels: a.cudaKernelsBuilt()}))" >"$out/addon.json" 2>&1

# ---- 3. Tests (they skip their GPU halves with a printed reason where no GPU is seen)
step tests node --test --test-concurrency=1 dist/test/device.test.js dist/test/projection.test.js
if "$PY" -c "import transformers" 2>/dev/null; then
  step hf-parity node dist/bench/gpu/hf-parity.js --device "$device" --python "$PY"
else
  say "transformers is not installed: hidden-state parity is the Python reference's (test/parity-python.test.ts)"
  step parity-python node --test dist/test/parity-python.test.js
fi

# ---- 4. Benchmark
step melbo-throughput node dist/bench/gpu/throughput.js --device "$device" --dir "$work/ckpt" --json "$out/melbo-rows.json" --blocks "$blocks" "${tiny[@]}"
baselines="$out/baselines.jsonl"
: >"$baselines"
bsteps=20; (( DRY )) && bsteps=3
# baseline ARGS...: one PyTorch loop on the benchmark's checkpoint; its JSON line goes to baselines.jsonl.
baseline() {
  local line
  line="$("$PY" bench/python/baseline.py loop --model "$work/ckpt" --inputs "$work/ckpt/bench-inputs.safetensors" \
    --steps "$bsteps" --device "$device" "$@" | tail -n 1)" || return 1
  printf '%s\n' "$line" >>"$baselines"
}
if [[ -f "$work/ckpt/bench-inputs.safetensors" ]]; then
  for dtype in f32 bf16; do
    step "torch-faithful-$dtype" baseline --mode faithful --dtype "$dtype"
    for b in ${blocks//,/ }; do
      (( b == 1 )) && continue
      step "torch-batched-$dtype-$b" baseline --mode batched --block "$b" --dtype "$dtype"
    done
    if "$PY" -c "import transformers" 2>/dev/null; then
      step "transformers-faithful-$dtype" sh -c '"$0" bench/python/hf_baseline.py --model "$1/ckpt" --inputs "$1/ckpt/bench-inputs.safetensors" --device "$2" --dtype "$3" --steps "$4" | tail -n 1 >>"$5"' \
        "$PY" "$work" "$device" "$dtype" "$bsteps" "$baselines"
    fi
  done
fi

# ---- 5. Report
step report node dist/bench/gpu/report.js --dir "$out" $( (( DRY )) && echo --dry-run )
say "done: $out/RESULTS-gpu.md"
cat "$out/RESULTS-gpu.md" 2>/dev/null
