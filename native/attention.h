// The core of causal self-attention, softmax(q kᵀ / √hd + causal mask) v, with its input
// gradients, on the CPU for float32 (AVX2), parallel over (batch row, kv head).
//
// Why: libtorch 1.13's CPU `bmm` multiplies small matrices one after another through BLAS (a
// `select` and a BLAS call per matrix). For a block of B = 16 vectors that is 256 calls of 26 ×
// 128 × 26 per product, ~7 % of an ortho step for ~1 % of its FLOPs (bench/RESULTS.md profile).
// Generation, with a KV cache, uses it too: keys past..past+T-1 are the new ones.
#pragma once
#include <torch/torch.h>

namespace melbo {

// Whether q [B, H, T, hd] and k, v [B, KV, Tk, hd] (KV divides H, Tk >= T) can use the kernel: CPU, float32,
// hd a multiple of 8, AVX2 + FMA present. MELBO_ATTENTION=torch turns it off (benchmarks).
bool fusedAttentionApplies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// -> [B, H, T, hd]. Query head h reads kv head h / (H / KV) (grouped-query attention, no copies).
// Query i sits at position Tk - T + i and attends to keys 0..Tk-T+i (the first Tk - T keys are a
// cache of earlier positions). Differentiable with respect to q, k and v.
torch::Tensor fusedCausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace melbo
