#!/usr/bin/env bash
# Rebuilds melbo's demo chat model from scratch, offline, and measures it:
#   data (Debian packages' text) -> tokenizer + training (PyTorch) -> held-out behaviour -> loss plot.
# usage: bash scripts/demo-model/build.sh OUT_DIR [MINUTES]   (default 45 minutes of training)
# Needs a built melbo (bash scripts/setup.sh) and Debian's python3-torch (installed when missing).
# The committed model is models/chat; compare OUT_DIR/heldout.json with docs/demo-model.md.
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR [MINUTES]}
minutes=${2:-45}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=/usr/bin/python3
say() { printf '\n== %s\n' "$*"; }

packages="python3-torch python3-numpy manpages manpages-dev coreutils util-linux libpython3.11-stdlib"
missing=$(for p in $packages; do dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done)
if [[ -n "$missing" ]]; then
  say "installing $missing"
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd=sudo
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq --no-install-recommends $missing
fi
[[ -f "$root/dist/src/index.js" ]] || { echo "build.sh: melbo is not built: run bash scripts/setup.sh first" >&2; exit 1; }

mkdir -p "$out"
say "data: chat examples from Debian packages -> $out/data"
$python "$here/build_data.py" "$out/data"
say "training for $minutes minutes -> $out/model"
$python "$here/train.py" "$out/data" "$out/model" --minutes "$minutes"
cp "$root/models/chat/melbo-demo.json" "$out/model/" 2>/dev/null || true
say "held-out behaviour (greedy answers, melbo's code score) -> $out/heldout.json"
node "$here/heldout.mjs" "$out/model" "$out/data/heldout.jsonl" "$out/heldout.json"
say "loss curve -> $out/loss.svg"
node "$here/loss-plot.mjs" "$out/model/training.csv" "$out/loss.svg"
