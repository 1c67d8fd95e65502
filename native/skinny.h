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

// True on x86-64 CPUs with AVX-512 F, BW and BF16: the bf16-activation kernels (skinny_bf16.cpp).
bool skinnyBf16Available();

// Rows up to which mixedLinear uses these kernels for activations and a weight [out, in] of these
// dtypes: MELBO_SKINNY_ROWS (0 disables them), else the measured crossovers with the library
// product (float32 activations: 224 for bf16 and 112 for float32 weights against OpenBLAS; bf16
// activations: against oneDNN; `in` is kept for shape-dependent limits).
int64_t skinnyRowLimit(torch::ScalarType activations, torch::ScalarType weights, int64_t in);

// Whether `rows` rows of activations of this dtype and device @ w [out, in] (contiguous) can use
// them: float32 activations with float32 or bf16 weights (AVX2+FMA), bf16 activations with bf16
// weights (AVX-512 BF16).
bool skinnyAppliesTo(torch::ScalarType activations, torch::Device device, const torch::Tensor& w, int64_t rows);

// x [M, in] float32 contiguous, w [out, in] float32|bf16 contiguous -> x @ wᵀ [M, out] float32;
// x bf16 (w bf16) -> bf16 via skinnyBf16Forward.
torch::Tensor skinnyForward(const torch::Tensor& x, const torch::Tensor& w);
// gy [M, out] float32, w [out, in] float32|bf16 contiguous -> gy @ w [M, in] float32; gy bf16
// (w bf16) -> bf16 via skinnyBf16Backward.
torch::Tensor skinnyBackward(const torch::Tensor& gy, const torch::Tensor& w);

// bf16 x [M, in] @ bf16 w [out, in]ᵀ -> [M, out] bf16 (float32 sums, rounded once); in % 16 == 0.
torch::Tensor skinnyBf16Forward(const torch::Tensor& x, const torch::Tensor& w);
// bf16 gy [M, out] @ bf16 w [out, in] -> [M, in] bf16; out % 2 == 0, in % 16 == 0.
torch::Tensor skinnyBf16Backward(const torch::Tensor& gy, const torch::Tensor& w);

}  // namespace melbo
