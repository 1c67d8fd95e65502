// The Qwen2 decoder, mirroring Hugging Face's modeling_qwen2.py one block at a time.
// Tensors are [batch B, seq T, d_model d] unless a comment says otherwise.
#pragma once
#include <torch/torch.h>

#include <string>

#include <cstdint>
#include <vector>

namespace melbo {

struct Qwen2Config {
  int64_t hidden = 0;        // d
  int64_t intermediate = 0;  // I
  int64_t layers = 0;        // L
  int64_t heads = 0;         // H
  int64_t kvHeads = 0;       // K (grouped-query attention when K < H)
  int64_t headDim = 0;       // hd = d / H
  int64_t vocab = 0;         // V
  double rmsEps = 1e-6;
  double ropeTheta = 1e6;
  bool tied = false;
};

struct BlockWeights {
  torch::Tensor inputNorm;           // [d]
  torch::Tensor q, qBias;            // [H*hd, d], [H*hd]
  torch::Tensor k, kBias, v, vBias;  // [K*hd, d], [K*hd]
  torch::Tensor o;                   // [d, H*hd]
  torch::Tensor postNorm;            // [d]
  torch::Tensor gate, up;            // [I, d]
  torch::Tensor down;                // [d, I]
};

// RoPE tables for a run of positions, already in the compute dtype.
struct Rope {
  torch::Tensor cos, sin;  // [T, hd]
};

// Keys (after RoPE) and values of every block seen so far, for generation.
struct KvCache {
  std::vector<torch::Tensor> keys, values;  // per block: [B, K, past, hd]
  int64_t length = 0;                       // past positions held
};

class Qwen2 {
 public:
  Qwen2Config cfg;
  torch::ScalarType dtype = torch::kFloat;  // the dtype chosen at load ("f32" | "bf16"): weights are held in it
  // Activations: == dtype, except for bf16 weights on a CPU without a fast bf16 matrix product
  // (libtorch 1.13 has one only with AVX-512 BW/VL/DQ, through oneDNN; elsewhere its bf16 GEMM
  // runs at ~1-4 GFLOP/s). There activations stay float32 and every bf16 weight is widened to
  // float32 inside `mixedLinear` (see chooseActivationDtype).
  torch::ScalarType act = torch::kFloat;
  // Where the weights live and every computation runs. Inputs from JS arrive on the CPU and are
  // moved here by each entry point (onDevice); results go back to the CPU before they reach JS.
  torch::Device device{torch::kCPU};
  int64_t firstBlock = 0, lastBlock = -1;   // blocks held: firstBlock..lastBlock
  std::vector<BlockWeights> blocks;         // blocks[i] is block firstBlock + i
  torch::Tensor embed;                      // [V, d] or undefined
  torch::Tensor finalNorm;                  // [d] or undefined
  torch::Tensor lmHead;                     // [V, d] or undefined (tied: == embed)

  torch::Tensor onDevice(const torch::Tensor& t) const { return t.device() == device ? t : t.to(device); }
  bool hasBlock(int64_t k) const { return k >= firstBlock && k <= lastBlock; }
  bool hasHead() const { return finalNorm.defined() && lmHead.defined(); }
  void requireBlocks(int64_t from, int64_t to, const char* what) const;

  // tokens [B, T] int64 -> [B, T, d] in the compute dtype.
  torch::Tensor embedTokens(const torch::Tensor& tokens) const;
  // Tables for positions start .. start+T-1.
  Rope rope(int64_t start, int64_t T) const;
  // resid(k) from resid(k-1). With a cache, appends this step's keys/values and attends to
  // everything cached before them (the cache's length is advanced by the caller).
  torch::Tensor block(int64_t k, const torch::Tensor& h, const Rope& rope, KvCache* cache) const;
  // Blocks from..to in order (from > to runs nothing).
  torch::Tensor runBlocks(torch::Tensor h, int64_t from, int64_t to, const Rope& rope) const;
  // Final RMSNorm and lm_head: h [B, T, d] -> logits [B, T, V] in float32.
  torch::Tensor logits(const torch::Tensor& h) const;

  // Dropping blocks below `keepFrom` (and the embedding) once a job no longer needs them.
  void releaseBelow(int64_t keepFrom, bool embedding);
};

// A result on its way to JS: a CPU tensor (a copy when it lives on a GPU).
inline torch::Tensor toHost(const torch::Tensor& t) { return t.is_cpu() ? t : t.to(torch::kCPU); }

// RMSNorm as Hugging Face computes it: statistics in float32, scaled back to the input dtype.
torch::Tensor rmsNorm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

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
