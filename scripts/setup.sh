#!/usr/bin/env bash
# One set-up for a fresh machine, used by both README commands: system packages (Debian/Ubuntu),
# npm dependencies, the native addon, the TypeScript build, the test references and the
# embedded default model. Idempotent: each step is skipped when its result is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { printf 'melbo setup: %s\n' "$*"; }

# 1. System packages. libopenblas0-openmp matters: without it libtorch falls back to the
#    reference BLAS and matrix products are ~25x slower. python3-torch is the test reference.
#    chromium: the real browser test/browser.test.ts opens `melbo report` pages in (playwright-core downloads none).
#    manpages, manpages-dev: text the demo model's data is built from (test/demo-data.test.ts rebuilds it).
packages=(libopenblas0-openmp python3-torch python3-numpy cmake g++ make ninja-build chromium manpages manpages-dev)
# Debian's libtorch unless LIBTORCH names another
if [[ -z "${LIBTORCH:-}" ]]; then packages=(libtorch-dev "${packages[@]}"); fi
if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "installing ${missing[*]} (apt)"
    sudo_cmd=()
    if [[ "$(id -u)" != 0 ]]; then
      command -v sudo >/dev/null 2>&1 || { say "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
      sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq || say "apt-get update failed; trying the install anyway"
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  if [[ -z "${LIBTORCH:-}" ]]; then
    say "this is not a Debian/Ubuntu system: install libtorch (and OpenBLAS), cmake, a C++17 compiler," >&2
    say "then run again with LIBTORCH=/path/to/libtorch (or a PyTorch's torch.utils.cmake_prefix_path)." >&2
    exit 1
  fi
fi

# 2. npm dependencies (only when the lock file changed since the last install).
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# 3. The native addon (cmake-js; incremental when nothing changed).
mkdir -p build
say "building the native addon"
npx cmake-js compile --out build --log-level error >/dev/null 2>build/cmake-js.log.tmp || {
  cat build/cmake-js.log.tmp >&2; exit 1; }
rm -f build/cmake-js.log.tmp

# 4. TypeScript.
say "building TypeScript"
npx tsc -p tsconfig.json

# 5. Test references (llama.cpp via node-llama-cpp, in its own small package folder).
bash scripts/install-llama-reference.sh

# 6. The embedded default model (deterministic random Qwen2 with the demo's shape).
if [[ ! -f models/default/config.json ]]; then
  say "writing the embedded default model to models/default"
  node bin/melbo.js make-test-model models/default --default --force  # --force: replaces a half-written one
fi
say "ready"
