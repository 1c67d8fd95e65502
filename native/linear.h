// The one linear product of the engine, x @ wᵀ (+ b), and which kernel it takes on the device
// and dtypes in front of it: few rows go to the skinny kernels (skinny.h), bf16 weights with
// float32 activations are widened chunk by chunk, the rest is torch::linear.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace melbo {

// x [..., in] @ w[out, in]^T (+ b [out]). When w is bf16 and x float32, w is widened to float32
// in row chunks through a reusable per-thread buffer, and autograd keeps the bf16 weight (not a
// float32 copy) for the backward pass, so weight memory stays at bf16 size.
torch::Tensor mixedLinear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});

// Which kernel a product x @ wᵀ takes: the one decision mixedLinear follows, also reported by
// Model.info() (`melbo info`) so that a user can see what runs on the CPU in front of them.
enum class ProductPath {
  Skinny,    // few rows: native/skinny.cpp reads the f32 or bf16 weight in place (AVX2+FMA)
  Blas,      // same dtype, many rows: torch::linear (OpenBLAS for f32; oneDNN for bf16 with AVX-512)
  Widened,   // bf16 weight, f32 activations, many rows: weight widened per product, then BLAS
  Converted  // any other mix (a GPU, or a dtype without a fast path): weight converted, torch::linear
};
ProductPath productPath(torch::ScalarType activations, torch::Device device, const torch::Tensor& w, int64_t rows);
// "skinny-avx2 (bf16 weights)", "blas f32 (OpenBLAS)", "onednn bf16", "cuda bf16", … for info().
std::string productPathName(ProductPath path, torch::ScalarType activations, torch::Device device, const torch::Tensor& w);

// The activation dtype for weights of dtype `weights` on `device`: bf16 weights compute in bf16
// on a GPU and on CPUs with a fast bf16 product, in float32 elsewhere. MELBO_BF16_MATMUL=bf16
// or =f32 overrides the automatic choice for bf16 weights (benchmarks measure both).
torch::ScalarType chooseActivationDtype(torch::ScalarType weights, torch::Device device);
// Whether libtorch multiplies bf16 fast on this CPU (oneDNN with AVX-512 BW/VL/DQ on x86-64).
bool cpuHasFastBf16();

}  // namespace melbo
