#include "skinny.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if !defined(_OPENMP)
#warning "native/skinny.cpp built without OpenMP: at::parallel_for runs on one thread (see CMakeLists.txt)"
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#define MELBO_SKINNY_X86 1
#include "x86_avx2.h"
#endif

namespace melbo {

constexpr int64_t BF16_ACTIVATION_ROW_LIMIT = 64;

int64_t skinnyRowLimit(torch::ScalarType activations, torch::ScalarType weights, int64_t /*in*/) {
  if (const char* env = std::getenv("MELBO_SKINNY_ROWS")) {
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    if (end != env && v >= 0) return static_cast<int64_t>(v);
  }
  // bf16 activations: the crossover with oneDNN measured on a 2-core Zen 4 (bench/NOTES.md).
  if (activations == torch::kBFloat16) return BF16_ACTIVATION_ROW_LIMIT;
  // Crossovers with OpenBLAS measured on a 2-core Zen 3 (bench/NOTES.md): float32 weights about
  // 110 rows; bf16 weights later, because the alternative also pays for widening them.
  return weights == torch::kBFloat16 ? 224 : 112;
}

#ifndef MELBO_SKINNY_X86

bool skinnyAvailable() { return false; }
bool skinnyAppliesTo(torch::ScalarType, torch::Device, const torch::Tensor&, int64_t) { return false; }
torch::Tensor skinnyForward(const torch::Tensor& x, const torch::Tensor& w) { return torch::mm(x, w.to(torch::kFloat).t()); }
torch::Tensor skinnyBackward(const torch::Tensor& gy, const torch::Tensor& w) { return torch::mm(gy, w.to(torch::kFloat)); }

#else

bool skinnyAvailable() { return cpuHasAvx2Fma(); }

bool skinnyAppliesTo(torch::ScalarType activations, torch::Device device, const torch::Tensor& w, int64_t rows) {
  if (!device.is_cpu() || !w.device().is_cpu() || w.dim() != 2 || !w.is_contiguous() || w.size(1) % 16 != 0) return false;
  if (activations == torch::kBFloat16) {  // skinny_bf16.cpp: pairs of weight rows
    if (!skinnyBf16Available() || w.scalar_type() != torch::kBFloat16 || w.size(0) % 2 != 0) return false;
  } else {
    if (!skinnyAvailable() || activations != torch::kFloat) return false;
    if (w.scalar_type() != torch::kFloat && w.scalar_type() != torch::kBFloat16) return false;
  }
  return rows >= 1 && rows <= skinnyRowLimit(activations, w.scalar_type(), w.size(1));
}

namespace {

#pragma GCC push_options
#pragma GCC target("avx2,fma")

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
// bf16 is the top half of a float32: zero-extend to 32 bits and shift left by 16.
inline __m256 load8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

// ---- forward: C[M, N] = A[M, D] · W[N, D]ᵀ, one MR × NR tile of dot products. Each output is
// eight lane-wise FMA chains over k (lane = k mod 8) and then the same horizontal sum.
template <typename T, int MR, int NR>
inline void dotTile(const float* A, const T* W, float* C, int64_t m, int64_t n, int64_t D, int64_t N) {
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
  for (int64_t k = 0; k < D; k += 8) {
    __m256 w[NR];
    for (int j = 0; j < NR; j++) w[j] = load8(W + (n + j) * D + k);
    for (int i = 0; i < MR; i++) {
      const __m256 a = _mm256_loadu_ps(A + (m + i) * D + k);
      for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(a, w[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) C[(m + i) * N + n + j] = horizontalSum(acc[i][j]);
}

template <typename T, int NR>
inline void dotColumns(const float* A, const T* W, float* C, int64_t M, int64_t n, int64_t D, int64_t N) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) dotTile<T, 4, NR>(A, W, C, m, n, D, N);
  for (; m + 2 <= M; m += 2) dotTile<T, 2, NR>(A, W, C, m, n, D, N);
  for (; m < M; m++) dotTile<T, 1, NR>(A, W, C, m, n, D, N);
}

template <typename T>
void forwardKernel(const float* A, const T* W, float* C, int64_t M, int64_t N, int64_t D) {
  constexpr int NR = 3;  // 4 × 3 tile: 12 accumulators, 7 loads per 12 FMAs
  const int64_t tiles = N / NR;
  at::parallel_for(0, tiles, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) dotColumns<T, NR>(A, W, C, M, t * NR, D, N);
  });
  for (int64_t n = tiles * NR; n < N; ++n) dotColumns<T, 1>(A, W, C, M, n, D, N);
}

// ---- backward: C[M, D] = G[M, N] · W[N, D]. W is read in chunks of NC rows; each chunk's slice
// of this thread's columns is first copied (widened) into a small panel P[tile][row][16] that
// stays in cache, then 16-column tiles of C accumulate rows of G (from Gt = Gᵀ [N, M]) times P.
constexpr int64_t NC = 128;
// floats between two tiles' panels: NC · 16 plus one cache line, so that the packing loop's stores
// (one per tile, for each weight row) do not all fall into the same cache set (8 KiB apart).
constexpr int64_t PANEL_STRIDE = NC * 16 + 16;

// One MR-row × 16-column tile over the chunk's nlen rows; first chunk stores, later chunks add.
#define MELBO_NN_ROW(i)                                  \
  b = _mm256_broadcast_ss(g + (i));                      \
  c##i##0 = _mm256_fmadd_ps(b, w0, c##i##0);             \
  c##i##1 = _mm256_fmadd_ps(b, w1, c##i##1);
#define MELBO_NN_STORE(i)                                                                          \
  {                                                                                                \
    float* c = C + (m + (i)) * ldc + k;                                                            \
    if (first) {                                                                                   \
      _mm256_storeu_ps(c, c##i##0);                                                                \
      _mm256_storeu_ps(c + 8, c##i##1);                                                            \
    } else {                                                                                       \
      _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), c##i##0));                             \
      _mm256_storeu_ps(c + 8, _mm256_add_ps(_mm256_loadu_ps(c + 8), c##i##1));                     \
    }                                                                                              \
  }

// Explicit registers: with arrays, GCC keeps 6- and 4-row accumulators on the stack.
inline void panelTile6(const float* g, int64_t M, const float* P, int64_t nlen, float* C, int64_t m, int64_t k, int64_t ldc, bool first) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t n = 0; n < nlen; ++n, g += M) {
    const __m256 w0 = _mm256_loadu_ps(P + n * 16), w1 = _mm256_loadu_ps(P + n * 16 + 8);
    __m256 b;
    MELBO_NN_ROW(0) MELBO_NN_ROW(1) MELBO_NN_ROW(2) MELBO_NN_ROW(3) MELBO_NN_ROW(4) MELBO_NN_ROW(5)
  }
  MELBO_NN_STORE(0) MELBO_NN_STORE(1) MELBO_NN_STORE(2) MELBO_NN_STORE(3) MELBO_NN_STORE(4) MELBO_NN_STORE(5)
}
inline void panelTile4(const float* g, int64_t M, const float* P, int64_t nlen, float* C, int64_t m, int64_t k, int64_t ldc, bool first) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (int64_t n = 0; n < nlen; ++n, g += M) {
    const __m256 w0 = _mm256_loadu_ps(P + n * 16), w1 = _mm256_loadu_ps(P + n * 16 + 8);
    __m256 b;
    MELBO_NN_ROW(0) MELBO_NN_ROW(1) MELBO_NN_ROW(2) MELBO_NN_ROW(3)
  }
  MELBO_NN_STORE(0) MELBO_NN_STORE(1) MELBO_NN_STORE(2) MELBO_NN_STORE(3)
}
inline void panelTile2(const float* g, int64_t M, const float* P, int64_t nlen, float* C, int64_t m, int64_t k, int64_t ldc, bool first) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00;
  for (int64_t n = 0; n < nlen; ++n, g += M) {
    const __m256 w0 = _mm256_loadu_ps(P + n * 16), w1 = _mm256_loadu_ps(P + n * 16 + 8);
    __m256 b;
    MELBO_NN_ROW(0) MELBO_NN_ROW(1)
  }
  MELBO_NN_STORE(0) MELBO_NN_STORE(1)
}
inline void panelTile1(const float* g, int64_t M, const float* P, int64_t nlen, float* C, int64_t m, int64_t k, int64_t ldc, bool first) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00;
  for (int64_t n = 0; n < nlen; ++n, g += M) {
    const __m256 w0 = _mm256_loadu_ps(P + n * 16), w1 = _mm256_loadu_ps(P + n * 16 + 8);
    __m256 b;
    MELBO_NN_ROW(0)
  }
  MELBO_NN_STORE(0)
}
#undef MELBO_NN_ROW
#undef MELBO_NN_STORE

template <typename T>
void backwardKernel(const float* Gt, const T* W, float* C, int64_t M, int64_t N, int64_t D) {
  const int64_t tiles = D / 16;
  at::parallel_for(0, tiles, 8, [&](int64_t t0, int64_t t1) {
    std::vector<float> panel(static_cast<size_t>((t1 - t0) * PANEL_STRIDE));
    float* P = panel.data();
    for (int64_t n0 = 0; n0 < N; n0 += NC) {
      const int64_t nlen = std::min(NC, N - n0);
      for (int64_t n = 0; n < nlen; ++n) {  // pack (and widen) this chunk's rows of our columns
        const T* row = W + (n0 + n) * D;
        for (int64_t t = t0; t < t1; ++t) {
          float* dst = P + (t - t0) * PANEL_STRIDE + n * 16;
          _mm256_storeu_ps(dst, load8(row + t * 16));
          _mm256_storeu_ps(dst + 8, load8(row + t * 16 + 8));
        }
      }
      const bool first = n0 == 0;
      for (int64_t t = t0; t < t1; ++t) {
        const float* Pt = P + (t - t0) * PANEL_STRIDE;
        const int64_t k = t * 16;
        int64_t m = 0;
        for (; m + 6 <= M; m += 6) panelTile6(Gt + n0 * M + m, M, Pt, nlen, C, m, k, D, first);
        for (; m + 4 <= M; m += 4) panelTile4(Gt + n0 * M + m, M, Pt, nlen, C, m, k, D, first);
        for (; m + 2 <= M; m += 2) panelTile2(Gt + n0 * M + m, M, Pt, nlen, C, m, k, D, first);
        for (; m < M; ++m) panelTile1(Gt + n0 * M + m, M, Pt, nlen, C, m, k, D, first);
      }
    }
  });
}

#pragma GCC pop_options

}  // namespace

torch::Tensor skinnyForward(const torch::Tensor& xIn, const torch::Tensor& w) {
  if (xIn.scalar_type() == torch::kBFloat16) return skinnyBf16Forward(xIn, w);
  RECORD_FUNCTION("melbo::skinny_mm", std::vector<c10::IValue>());  // named in profiles
  auto x = xIn.contiguous();  // [M, D]
  const int64_t M = x.size(0), D = x.size(1), N = w.size(0);
  TORCH_CHECK(w.size(1) == D && D % 16 == 0, "skinnyForward: shapes");
  auto y = torch::empty({M, N}, x.options());  // [M, N]
  if (w.scalar_type() == torch::kFloat) {
    forwardKernel<float>(x.data_ptr<float>(), w.data_ptr<float>(), y.data_ptr<float>(), M, N, D);
  } else {
    forwardKernel<uint16_t>(x.data_ptr<float>(), reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>()), y.data_ptr<float>(), M, N, D);
  }
  return y;
}

torch::Tensor skinnyBackward(const torch::Tensor& gy, const torch::Tensor& w) {
  if (gy.scalar_type() == torch::kBFloat16) return skinnyBf16Backward(gy, w);
  RECORD_FUNCTION("melbo::skinny_mm_backward", std::vector<c10::IValue>());
  const int64_t M = gy.size(0), N = w.size(0), D = w.size(1);
  TORCH_CHECK(gy.size(1) == N && D % 16 == 0, "skinnyBackward: shapes");
  auto gt = gy.t().contiguous();  // [N, M]
  auto gx = torch::empty({M, D}, gy.options());  // [M, D]
  if (w.scalar_type() == torch::kFloat) {
    backwardKernel<float>(gt.data_ptr<float>(), w.data_ptr<float>(), gx.data_ptr<float>(), M, N, D);
  } else {
    backwardKernel<uint16_t>(gt.data_ptr<float>(), reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>()), gx.data_ptr<float>(), M, N, D);
  }
  return gx;
}

#endif

}  // namespace melbo
