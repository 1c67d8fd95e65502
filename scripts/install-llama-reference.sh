#!/usr/bin/env bash
# Installs the llama.cpp reference (node-llama-cpp with its prebuilt linux-x64 CPU binary) into
# test/reference/llama/node_modules, for the parity tests in test/parity-llama.test.ts.
#
# - Its own package folder, installed with --omit=optional: only @node-llama-cpp/linux-x64 is
#   fetched (about 83 MB), not the CUDA/Vulkan/other-platform binaries (about 730 MB). The
#   project itself must not use omit=optional (esbuild ships its binary as an optional dependency).
# - --ignore-scripts and NODE_LLAMA_CPP_SKIP_DOWNLOAD=true: node-llama-cpp's postinstall would
#   otherwise test the binary and, if that failed, download and compile llama.cpp. The tests load
#   it with build: "never", so nothing is ever downloaded or compiled.
# - Idempotent: returns at once when the locked versions are already installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/test/reference/llama"
version="3.21.1"

installed() {
  local pkg="$1"
  local file="$dir/node_modules/$pkg/package.json"
  [[ -f "$file" ]] && node -e '
    const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    process.exit(p.version === process.argv[2] ? 0 : 1);
  ' "$file" "$version"
}

if installed node-llama-cpp && installed @node-llama-cpp/linux-x64 \
  && [[ -f "$dir/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node" ]] \
  && [[ -f "$dir/node_modules/.package-lock.json" ]] \
  && ! [[ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
  echo "llama.cpp reference: node-llama-cpp@$version already installed in test/reference/llama"
  exit 0
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "llama.cpp reference: only the linux-x64 prebuilt binary is pinned; this machine is $(uname -s)-$(uname -m)" >&2
  exit 1
fi

echo "llama.cpp reference: installing node-llama-cpp@$version (prebuilt CPU binary, ~83 MB) into test/reference/llama"
cd "$dir"
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error
echo "llama.cpp reference: installed"
