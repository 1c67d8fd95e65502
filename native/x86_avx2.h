// What the two hand-written AVX2 kernels (skinny.cpp, attention.cpp) share: whether this CPU runs
// them, and the horizontal sum that ends every dot product. One summation order for both, so that
// a kernel's result never depends on which file computed it. Include only where
// defined(__GNUC__) && defined(__x86_64__).
#pragma once
#include <immintrin.h>

namespace melbo {

// AVX2 and FMA, asked once: the kernels are compiled for them whatever the build's -march.
inline bool cpuHasAvx2Fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

// v[0] + … + v[7], as ((v0..3 + v4..7) pairwise, then lane 0 + lane 1).
__attribute__((target("avx2,fma"))) inline float horizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace melbo
