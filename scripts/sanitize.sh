#!/usr/bin/env bash
# CI sanitizer passes: builds into build-asan/ (AddressSanitizer + UBSan) and build-tsan/ (ThreadSanitizer)
# and runs the C++ test suite there: every test under ASan/UBSan, the multi-threaded ones under TSan.
# usage: scripts/sanitize.sh [asan|tsan|all]   (default all)
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
jobs=$(nproc)
configure() {  # dir sanitizer
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DFP4Z_SANITIZE="$2" -DFP4Z_BENCH=OFF "${launcher[@]}" >/dev/null
}
# Threaded code: thread pool and kernels of the model, parallel check scans, container compression and
# decompression on several threads, quantization on all cores (the I/O queue, seed's segments, rd's row pass),
# eval's threaded forward pass.
# Under the sanitizers the one CPU-time bound (a million-tensor header checked in < 5 s) is not asserted.
TSAN_TESTS='ModelKernels|ForwardVsOracle|CheckTest|Container|Agreement|Stats|EvalPpl|IoQueue|SeedSegments|RdPlain'
if [ "$which" = all ] || [ "$which" = asan ]; then
  start=$(date +%s)
  configure build-asan address
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j"$jobs" --timeout 1800 -E "^interop_|MillionTensorHeaderChecksInUnderFiveSeconds")
  echo "asan+ubsan pass: $(( $(date +%s) - start )) s"
fi
if [ "$which" = all ] || [ "$which" = tsan ]; then
  start=$(date +%s)
  configure build-tsan thread
  cmake --build build-tsan -j"$jobs"
  (cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --output-on-failure -j"$jobs" --timeout 1800 -R "$TSAN_TESTS")
  echo "tsan pass: $(( $(date +%s) - start )) s"
fi
