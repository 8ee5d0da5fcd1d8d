#!/usr/bin/env bash
# Builds llama.cpp's llama-bench (CPU only) from the sources vendored in PyPI's llama-cpp-python sdist into build-llamacpp/.
# usage: bench/llamacpp/build.sh            (benchmark-only; not part of the default build or tests)
# Prints the exact llama.cpp commit and records it with the build time in build-llamacpp/build-info.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
LCP_VERSION=${LCP_VERSION:-0.3.36}
out=build-llamacpp
mkdir -p "$out"
sdist="$out/sdist/llama_cpp_python-$LCP_VERSION.tar.gz"
if [ ! -f "$sdist" ]; then
  python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$LCP_VERSION" -d "$out/sdist" >&2
fi
src="$out/src/llama_cpp_python-$LCP_VERSION"
if [ ! -d "$src" ]; then
  mkdir -p "$out/src"
  tar xzf "$sdist" -C "$out/src"
fi
# The sdist keeps the submodule's git metadata: the vendored llama.cpp commit is its HEAD.
commit=$(cat "$src/.git/modules/vendor/llama.cpp/HEAD" 2>/dev/null || echo unknown)
echo "llama.cpp commit $commit (vendored in llama-cpp-python $LCP_VERSION)"
if [ -x "$out/cmake/bin/llama-bench" ] && grep -q "$commit" "$out/build-info.txt" 2>/dev/null; then
  cat "$out/build-info.txt"
  exit 0
fi
# Explicit ISA flags instead of GGML_NATIVE: -march=native also enables AMX where the CPU lists it,
# and AMX tiles fault (SIGILL) in VMs that do not grant them. the AVX-512 VNNI/BF16/VBMI feature set of the project machines.
start=$(date +%s)
cmake -S "$src/vendor/llama.cpp" -B "$out/cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX512_VBMI=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >&2
/usr/bin/time -f "%e s wall, %U s user, %S s sys" -o "$out/build-time.txt" cmake --build "$out/cmake" --target llama-bench -j"$(nproc)" >&2
wall=$(( $(date +%s) - start ))
{
  echo "llama.cpp commit: $commit (llama-cpp-python $LCP_VERSION sdist)"
  echo "llama-bench build (configure + build, $(nproc) jobs, load average $(cut -d' ' -f1-3 /proc/loadavg)): ${wall} s; build step: $(cat "$out/build-time.txt")"
} > "$out/build-info.txt"
cat "$out/build-info.txt"
