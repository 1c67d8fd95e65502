// The Qwen2 decoder, mirroring Hugging Face's modeling_qwen2.py one block at a time.
// Tensors are [batch B, seq T, d_model d] unless a comment says otherwise.
#pragma once
#include <torch/torch.h>

#include "linear.h"

#include <string>

#include <cstdint>
#include <vector>

namespace melbo {

struct Qwen2Config {
  int64_t hidden = 0;        // d
  int64_t intermediate = 0;  // I
  int64_t layers = 0;        // L
  int64_t heads = 0;         // H
  int64_t kvHeads = 0;       // KV (grouped-query attention when KV < H)
  int64_t headDim = 0;       // hd = d / H
  int64_t vocab = 0;         // V
  double rmsEps = 1e-6;
  double ropeTheta = 1e6;
  bool tied = false;
};

// One decoder block's parameters, named after modeling_qwen2.py's modules (the roles the
// loader receives them by: src/model/qwen2-layout.ts).
struct BlockWeights {
  torch::Tensor inputLayernorm;                     // [d]
  torch::Tensor qProj, qProjBias;                   // [H*hd, d], [H*hd]
  torch::Tensor kProj, kProjBias, vProj, vProjBias; // [KV*hd, d], [KV*hd]
  torch::Tensor oProj;                              // [d, H*hd]
  torch::Tensor postAttentionLayernorm;             // [d]
  torch::Tensor gateProj, upProj;                   // [I, d]
  torch::Tensor downProj;                           // [d, I]
};

// RoPE tables for a run of positions, already in the compute dtype.
struct Rope {
  torch::Tensor cos, sin;  // [T, hd]
};

// Keys (after RoPE) and values of every block seen so far, for generation.
struct KvCache {
  std::vector<torch::Tensor> keys, values;  // per block: [B, KV, past, hd]
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
  // The slice source -> target that `what` runs: 0 <= source < target < layers, and its blocks
  // source+1..target held. The one native check of a slice (the TS side's is model/checks.ts).
  void requireSlice(int64_t source, int64_t target, const char* what) const;

  // tokens [B, T] int64 -> [B, T, d] in the compute dtype.
  torch::Tensor embedTokens(const torch::Tensor& tokens) const;
  // Tables for positions start .. start+T-1.
  Rope rope(int64_t start, int64_t T) const;
  // resid(layer) from resid(layer-1). With a cache, appends this step's keys/values and attends
  // to everything cached before them (the cache's length is advanced by the caller).
  torch::Tensor block(int64_t layer, const torch::Tensor& h, const Rope& rope, KvCache* cache) const;
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

}  // namespace melbo
