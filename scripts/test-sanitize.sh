#!/usr/bin/env bash
# The native-facing tests under AddressSanitizer + UndefinedBehaviorSanitizer (issue 15, item 5):
#
#   npm run test:sanitize                        every native-facing test file below
#   bash scripts/test-sanitize.sh NAME [NAME…]   only these (test/NAME.test.ts)
#
# Builds the addon with -DMELBO_SANITIZE=ON (CMakeLists.txt) in build-sanitize/ (build/, the
# normal addon, is never touched), compiles the TypeScript, and runs the tests with that addon
# (src/native.ts loads the file MELBO_ADDON names). node itself is not built with ASan, so the
# ASan runtime is preloaded into it (and into every node process the tests start: the variables
# are inherited; other programs the tests start are not, see test/helpers/sanitize-preload.ts). Any ASan report, UBSan report or leak fails the test file it happens in:
# ASan and UBSan abort the process (-fno-sanitize-recover=undefined), LeakSanitizer makes it exit
# with status 23 at its end. The first build takes ~6–8 min on 2 cores, later ones only
# recompile what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# The files that drive the addon: every entry point (forward, slice map, ortho and train loops,
# generation, release/dispose, kernels, projection) with valid and invalid input, and lifecycle
# (dispose, concurrent jobs, aborts, load cycles). Tests of the TypeScript-only readers, the CLI
# and the reference parities (Python/llama.cpp, minutes each) are left to `npm test`.
DEFAULT_TESTS=(engine attention skinny kernels projection ortho-block ortho train lifecycle formats eval)
TESTS=("$@")
[ ${#TESTS[@]} -gt 0 ] || TESTS=("${DEFAULT_TESTS[@]}")

t0=$(date +%s)
npx cmake-js compile --out build-sanitize --CDMELBO_SANITIZE=ON --log-level error
npx tsc -p tsconfig.json
t1=$(date +%s)

ADDON=$ROOT/build-sanitize/Release/melbo_native.node
# The ASan runtime the addon was linked against (gcc: libasan.so.N); it must come first in the
# process (LD_PRELOAD), before libc's malloc is used.
ASAN_RT=$(ldd "$ADDON" | awk '/libasan\.so/ && !found { print $3; found = 1 }')
[ -n "$ASAN_RT" ] || ASAN_RT=$(gcc -print-file-name=libasan.so)
[ -f "$ASAN_RT" ] || { echo "test-sanitize: no ASan runtime found (apt-get install gcc)" >&2; exit 1; }

FILES=()
for name in "${TESTS[@]}"; do
  f=dist/test/${name%.test.*}.test.js
  [ -f "$f" ] || { echo "test-sanitize: $f does not exist" >&2; exit 1; }
  FILES+=("$f")
done

PRELOAD_SHIM=$ROOT/dist/test/helpers/sanitize-preload.js
[ -f "$PRELOAD_SHIM" ] || { echo "test-sanitize: $PRELOAD_SHIM is missing (npx tsc -p tsconfig.json)" >&2; exit 1; }

export MELBO_ADDON=$ADDON
# Only node processes keep LD_PRELOAD: the shim starts every other program (python3, nvcc, gcc)
# without it (test/helpers/sanitize-preload.ts says why).
export NODE_OPTIONS="--import=$PRELOAD_SHIM${NODE_OPTIONS:+ $NODE_OPTIONS}"
export MELBO_SANITIZE=1 # tests that measure RSS skip the bounds (ASan's quarantine holds freed memory)
# detect_leaks=1: LeakSanitizer at every process exit (the default on x86-64 Linux, stated).
# intercept_tls_get_addr=0: up to gcc 13's runtime (LLVM 16), the __tls_get_addr interceptor
# takes a dynamic TLS block whose address is 16 mod 4096 for a glibc 2.19 block with a header and
# reads its bounds from the two words before it; glibc ≥ 2.25 has no such header, so when a block
# lands there by chance the recorded bounds are garbage and LeakSanitizer's tracer segfaults at
# exit ("Tracer caught signal 11 … LeakSanitizer has encountered a fatal error"), which failed one
# test file in one of our runs (google/sanitizers#1322). The cost: LeakSanitizer no longer takes
# dynamic TLS blocks as roots; glibc allocates them with malloc, so they are still scanned as
# heap blocks wherever they are reachable, and the runs show no report that was not there before.
# Nothing else differs from the defaults, and no check is turned off: with libstdc++ (no
# container annotations) and libtorch/node uninstrumented, neither container-overflow nor
# odr-violation reports arise (gcc 12, Debian's libtorch 1.13).
export ASAN_OPTIONS=detect_leaks=1:intercept_tls_get_addr=0:print_summary=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}
# scripts/lsan.supp: why each entry is there (frames of node, V8 or libtorch only).
export LSAN_OPTIONS=suppressions=$ROOT/scripts/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}

status=0
# LD_PRELOAD for node only (and the node processes it starts), not for this script's own commands.
LD_PRELOAD=$ASAN_RT${LD_PRELOAD:+:$LD_PRELOAD} node --test --test-concurrency=1 "${FILES[@]}" || status=$?
t2=$(date +%s)
echo "test-sanitize: build $((t1 - t0)) s, tests $((t2 - t1)) s (${TESTS[*]}): $([ $status -eq 0 ] && echo clean || echo FAILED)"
exit $status
