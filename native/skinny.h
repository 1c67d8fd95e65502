// Matrix products of a few rows against a large weight, for one or two steering vectors at a
// time (B*T ≈ 26-52 rows). BLAS libraries repack the whole [out, in] weight on every call, and
// for so few rows that copy costs more than the arithmetic: OpenBLAS reaches about a third of its
// large-shape speed at 26 rows. These kernels read the weight in its stored layout (float32, or
// bf16 widened in registers) and never write it: an AVX2+FMA dot-product kernel for x @ wᵀ and a
// small-panel kernel for the input gradient gy @ w. Deterministic: every output element is
// summed in the same order whatever its row, so identical rows give identical results.
#pragma once
#include <torch/torch.h>

namespace melbo {

// True on x86-64 CPUs with AVX2 and FMA (the kernels are compiled for them; elsewhere the
// callers use torch's matrix products).
bool skinnyAvailable();

// Rows up to which mixedLinear uses these kernels for a weight [out, in] of this dtype:
// MELBO_SKINNY_ROWS (0 disables them), else 224 for bf16 and 112 for float32 weights (measured
// crossovers with OpenBLAS; `in` is kept for shape-dependent limits).
int64_t skinnyRowLimit(torch::ScalarType weights, int64_t in);

// Whether `rows` rows of activations of this dtype and device @ w [out, in] (float32 or bf16,
// contiguous) can use them.
bool skinnyAppliesTo(torch::ScalarType activations, torch::Device device, const torch::Tensor& w, int64_t rows);

// x [M, in] float32 contiguous, w [out, in] float32|bf16 contiguous -> x @ wᵀ [M, out] float32.
torch::Tensor skinnyForward(const torch::Tensor& x, const torch::Tensor& w);
// gy [M, out] float32, w [out, in] float32|bf16 contiguous -> gy @ w [M, in] float32.
torch::Tensor skinnyBackward(const torch::Tensor& gy, const torch::Tensor& w);

}  // namespace melbo
