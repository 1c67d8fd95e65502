// Few-row products in bf16 on CPUs with AVX-512 BF16 (Zen 4 and later, Intel Cooper Lake and
// later): bf16 activations times bf16 weights read in their stored layout, products summed in
// float32 by vdpbf16ps (32 multiply-adds per instruction), results rounded once to bf16. At 26
// rows oneDNN reaches about half of its large-shape speed (bench/RESULTS.md, kernel table), the
// same weight-repacking cost the AVX2 kernels of skinny.cpp avoid for float32. Deterministic like
// those: every output element is summed in the same order whatever its row.
#include "skinny.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if !defined(_OPENMP)
#warning "native/skinny_bf16.cpp built without OpenMP: at::parallel_for runs on one thread (see CMakeLists.txt)"
#endif

#if defined(__GNUC__) && defined(__x86_64__) && (__GNUC__ >= 10 || defined(__clang__))
#define MELBO_SKINNY_BF16_X86 1
#include <immintrin.h>
#endif

namespace melbo {

#ifndef MELBO_SKINNY_BF16_X86

bool skinnyBf16Available() { return false; }
torch::Tensor skinnyBf16Forward(const torch::Tensor& x, const torch::Tensor& w) { return torch::mm(x, w.t()); }
torch::Tensor skinnyBf16Backward(const torch::Tensor& gy, const torch::Tensor& w) { return torch::mm(gy, w); }

#else

bool skinnyBf16Available() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512bf16");
  return ok;
}

namespace {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16")

inline __m512bh asBh(__m512i v) { return (__m512bh)v; }

inline uint16_t roundToBf16(float v) { return c10::BFloat16(v).x; }  // round to nearest even

// ---- forward: C[M, N] = A[M, D] · W[N, D]ᵀ, one MR × 4 tile of dot products over k in chunks
// of 32 (the last chunk may be 16: D is a multiple of 16). Each output is one vdpbf16ps chain
// (lane = k mod 32 / 2) and then the same horizontal sum. The accumulators are named variables:
// GCC keeps arrays of them on the stack (a store after every instruction).
#define MELBO_F_ROW(i)                                                                     \
  {                                                                                        \
    const __m512bh a = asBh(_mm512_maskz_loadu_epi16(mask, A + (m + (i)) * D + k));        \
    c##i##0 = _mm512_dpbf16_ps(c##i##0, a, w0);                                            \
    c##i##1 = _mm512_dpbf16_ps(c##i##1, a, w1);                                            \
    c##i##2 = _mm512_dpbf16_ps(c##i##2, a, w2);                                            \
    c##i##3 = _mm512_dpbf16_ps(c##i##3, a, w3);                                            \
  }
#define MELBO_F_STORE(i)                                                                   \
  {                                                                                        \
    uint16_t* c = C + (m + (i)) * N + n;                                                   \
    c[0] = roundToBf16(_mm512_reduce_add_ps(c##i##0));                                     \
    c[1] = roundToBf16(_mm512_reduce_add_ps(c##i##1));                                     \
    c[2] = roundToBf16(_mm512_reduce_add_ps(c##i##2));                                     \
    c[3] = roundToBf16(_mm512_reduce_add_ps(c##i##3));                                     \
  }

template <int MR>  // 1, 2 or 4 rows × 4 weight rows: 16 accumulators, 8 loads per 16 vdpbf16ps
inline void dotTile(const uint16_t* A, const uint16_t* W, uint16_t* C, int64_t m, int64_t n, int64_t D, int64_t N) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
  for (int64_t k = 0; k < D; k += 32) {
    const __mmask32 mask = D - k >= 32 ? ~__mmask32(0) : __mmask32((1u << (D - k)) - 1);
    const __m512bh w0 = asBh(_mm512_maskz_loadu_epi16(mask, W + n * D + k));
    const __m512bh w1 = asBh(_mm512_maskz_loadu_epi16(mask, W + (n + 1) * D + k));
    const __m512bh w2 = asBh(_mm512_maskz_loadu_epi16(mask, W + (n + 2) * D + k));
    const __m512bh w3 = asBh(_mm512_maskz_loadu_epi16(mask, W + (n + 3) * D + k));
    MELBO_F_ROW(0)
    if constexpr (MR >= 2) MELBO_F_ROW(1)
    if constexpr (MR >= 4) {
      MELBO_F_ROW(2)
      MELBO_F_ROW(3)
    }
  }
  MELBO_F_STORE(0)
  if constexpr (MR >= 2) MELBO_F_STORE(1)
  if constexpr (MR >= 4) {
    MELBO_F_STORE(2)
    MELBO_F_STORE(3)
  }
}
#undef MELBO_F_ROW
#undef MELBO_F_STORE

// The last out % 4 weight rows: one output at a time.
inline void dotOne(const uint16_t* A, const uint16_t* W, uint16_t* C, int64_t m, int64_t n, int64_t D, int64_t N) {
  __m512 c = _mm512_setzero_ps();
  for (int64_t k = 0; k < D; k += 32) {
    const __mmask32 mask = D - k >= 32 ? ~__mmask32(0) : __mmask32((1u << (D - k)) - 1);
    c = _mm512_dpbf16_ps(c, asBh(_mm512_maskz_loadu_epi16(mask, A + m * D + k)), asBh(_mm512_maskz_loadu_epi16(mask, W + n * D + k)));
  }
  C[m * N + n] = roundToBf16(_mm512_reduce_add_ps(c));
}

void forwardKernel(const uint16_t* A, const uint16_t* W, uint16_t* C, int64_t M, int64_t N, int64_t D) {
  const int64_t tiles = N / 4;
  at::parallel_for(0, tiles, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) dotTile<4>(A, W, C, m, t * 4, D, N);
      for (; m + 2 <= M; m += 2) dotTile<2>(A, W, C, m, t * 4, D, N);
      for (; m < M; m++) dotTile<1>(A, W, C, m, t * 4, D, N);
    }
  });
  for (int64_t n = tiles * 4; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) dotOne(A, W, C, m, n, D, N);
}

// ---- backward: C[M, D] = G[M, N] · W[N, D]. vdpbf16ps sums pairs of products, so the reduction
// runs over pairs of W's rows: W is read in chunks of NC rows, and each chunk's slice of this
// thread's 16-column tiles is packed into a panel P[tile][pair][16 columns × 2 rows] (row n and
// n + 1 interleaved per column) that stays in cache; a tile of C then accumulates, per pair, the
// broadcast pair (G[m, n], G[m, n + 1]) times the panel. Sums are kept in float32 (Cf) across
// chunks and rounded to bf16 once at the end.
constexpr int64_t NC = 128;  // rows per chunk (64 pairs)
// uint16 values between two tiles' panels: NC · 16 plus one cache line, so that the packing loop's
// stores (one per tile, for each pair) do not all fall into the same cache set (4 KiB apart).
constexpr int64_t PANEL_STRIDE = NC * 16 + 32;

#define MELBO_B_ROW(i)                                                      \
  {                                                                         \
    int32_t pair;                                                           \
    std::memcpy(&pair, G + (m + (i)) * N + 2 * p, sizeof(pair));            \
    const __m512bh g = asBh(_mm512_set1_epi32(pair));                       \
    c##i##0 = _mm512_dpbf16_ps(c##i##0, g, w0);                             \
    if constexpr (NT == 2) c##i##1 = _mm512_dpbf16_ps(c##i##1, g, w1);      \
  }
#define MELBO_B_STORE(i)                                                                     \
  {                                                                                          \
    float* c = Cf + (m + (i)) * D + k;                                                       \
    _mm512_storeu_ps(c, first ? c##i##0 : _mm512_add_ps(_mm512_loadu_ps(c), c##i##0));      \
    if constexpr (NT == 2)                                                                   \
      _mm512_storeu_ps(c + 16, first ? c##i##1 : _mm512_add_ps(_mm512_loadu_ps(c + 16), c##i##1)); \
  }

// MR (1, 2, 4 or 8) rows × NT (1 or 2) 16-column tiles over the chunk's pairs; the first chunk
// stores, later chunks add. Named accumulators, as in the forward.
template <int MR, int NT>
inline void panelTile(const uint16_t* G, int64_t N, const uint16_t* P, int64_t pairs, float* Cf, int64_t m, int64_t k, int64_t D, bool first) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh w0 = asBh(_mm512_loadu_si512(P + p * 32));
    const __m512bh w1 = NT == 2 ? asBh(_mm512_loadu_si512(P + PANEL_STRIDE + p * 32)) : w0;
    MELBO_B_ROW(0)
    if constexpr (MR >= 2) MELBO_B_ROW(1)
    if constexpr (MR >= 4) {
      MELBO_B_ROW(2)
      MELBO_B_ROW(3)
    }
    if constexpr (MR >= 8) {
      MELBO_B_ROW(4)
      MELBO_B_ROW(5)
      MELBO_B_ROW(6)
      MELBO_B_ROW(7)
    }
  }
  MELBO_B_STORE(0)
  if constexpr (MR >= 2) MELBO_B_STORE(1)
  if constexpr (MR >= 4) {
    MELBO_B_STORE(2)
    MELBO_B_STORE(3)
  }
  if constexpr (MR >= 8) {
    MELBO_B_STORE(4)
    MELBO_B_STORE(5)
    MELBO_B_STORE(6)
    MELBO_B_STORE(7)
  }
}
#undef MELBO_B_ROW
#undef MELBO_B_STORE

template <int NT>
inline void panelRows(const uint16_t* G, int64_t M, int64_t N, const uint16_t* P, int64_t pairs, float* Cf, int64_t k, int64_t D, bool first) {
  int64_t m = 0;
  for (; m + 8 <= M; m += 8) panelTile<8, NT>(G, N, P, pairs, Cf, m, k, D, first);
  for (; m + 4 <= M; m += 4) panelTile<4, NT>(G, N, P, pairs, Cf, m, k, D, first);
  for (; m + 2 <= M; m += 2) panelTile<2, NT>(G, N, P, pairs, Cf, m, k, D, first);
  for (; m < M; ++m) panelTile<1, NT>(G, N, P, pairs, Cf, m, k, D, first);
}

void backwardKernel(const uint16_t* G, const uint16_t* W, float* Cf, uint16_t* C, int64_t M, int64_t N, int64_t D) {
  const int64_t tiles = D / 16;
  // vpermw index: out[2j] = row n's column j (in[j]), out[2j + 1] = row n + 1's (in[16 + j]).
  alignas(64) uint16_t order[32];
  for (int j = 0; j < 16; ++j) {
    order[2 * j] = static_cast<uint16_t>(j);
    order[2 * j + 1] = static_cast<uint16_t>(16 + j);
  }
  const __m512i interleave = _mm512_load_si512(order);
  at::parallel_for(0, tiles, 8, [&](int64_t t0, int64_t t1) {
    std::vector<uint16_t> panel(static_cast<size_t>((t1 - t0) * PANEL_STRIDE));
    uint16_t* P = panel.data();
    for (int64_t n0 = 0; n0 < N; n0 += NC) {
      const int64_t pairs = std::min(NC, N - n0) / 2;
      for (int64_t p = 0; p < pairs; ++p) {  // pack this chunk's row pairs of our columns
        const uint16_t* row0 = W + (n0 + 2 * p) * D;
        const uint16_t* row1 = row0 + D;
        for (int64_t t = t0; t < t1; ++t) {
          const __m256i r0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row0 + t * 16));
          const __m256i r1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row1 + t * 16));
          const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1);
          _mm512_storeu_si512(P + (t - t0) * PANEL_STRIDE + p * 32, _mm512_permutexvar_epi16(interleave, both));
        }
      }
      const bool first = n0 == 0;
      const uint16_t* Gc = G + n0;
      int64_t t = t0;
      for (; t + 2 <= t1; t += 2) panelRows<2>(Gc, M, N, P + (t - t0) * PANEL_STRIDE, pairs, Cf, t * 16, D, first);
      for (; t < t1; ++t) panelRows<1>(Gc, M, N, P + (t - t0) * PANEL_STRIDE, pairs, Cf, t * 16, D, first);
    }
    for (int64_t m = 0; m < M; ++m) {  // round this thread's columns once
      for (int64_t t = t0; t < t1; ++t) {
        const __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(Cf + m * D + t * 16));
        std::memcpy(C + m * D + t * 16, &v, sizeof(v));
      }
    }
  });
}

#pragma GCC pop_options

const uint16_t* bits(const torch::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>()); }
uint16_t* bits(torch::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); }

}  // namespace

torch::Tensor skinnyBf16Forward(const torch::Tensor& xIn, const torch::Tensor& w) {
  RECORD_FUNCTION("melbo::skinny_bf16_mm", std::vector<c10::IValue>());  // named in profiles
  auto x = xIn.contiguous();  // [M, D] bf16
  const int64_t M = x.size(0), D = x.size(1), N = w.size(0);
  TORCH_CHECK(w.size(1) == D && D % 16 == 0 && x.scalar_type() == torch::kBFloat16 && w.scalar_type() == torch::kBFloat16, "skinnyBf16Forward: shapes");
  auto y = torch::empty({M, N}, x.options());  // [M, N] bf16
  forwardKernel(bits(x), bits(w), bits(y), M, N, D);
  return y;
}

torch::Tensor skinnyBf16Backward(const torch::Tensor& gyIn, const torch::Tensor& w) {
  RECORD_FUNCTION("melbo::skinny_bf16_mm_backward", std::vector<c10::IValue>());
  auto gy = gyIn.contiguous();  // [M, N] bf16
  const int64_t M = gy.size(0), N = w.size(0), D = w.size(1);
  TORCH_CHECK(gy.size(1) == N && N % 2 == 0 && D % 16 == 0 && gy.scalar_type() == torch::kBFloat16 && w.scalar_type() == torch::kBFloat16, "skinnyBf16Backward: shapes");
  auto sums = torch::empty({M, D}, gy.options().dtype(torch::kFloat));  // [M, D] float32 partial sums
  auto gx = torch::empty({M, D}, gy.options());                         // [M, D] bf16
  backwardKernel(bits(gy), bits(w), sums.data_ptr<float>(), bits(gx), M, N, D);
  return gx;
}

#endif

}  // namespace melbo
