#include "qwen2.h"

#include "attention.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace melbo {

using torch::indexing::Slice;

torch::Tensor rmsNorm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto xf = x.to(torch::kFloat);
  auto variance = xf.pow(2).mean(-1, /*keepdim=*/true);  // [B, T, 1]
  xf = xf * torch::rsqrt(variance + eps);
  return weight * xf.to(x.scalar_type());
}

// rotate_half: [x1, x2] -> [-x2, x1] over the last dimension (NeoX style, as Hugging Face).
static torch::Tensor rotateHalf(const torch::Tensor& x) {
  auto half = x.size(-1) / 2;
  auto x1 = x.index({"...", Slice(0, half)});
  auto x2 = x.index({"...", Slice(half, torch::indexing::None)});
  return torch::cat({-x2, x1}, -1);
}

void Qwen2::requireBlocks(int64_t from, int64_t to, const char* what) const {
  if (from > to) return;
  if (!hasBlock(from) || !hasBlock(to)) {
    throw std::runtime_error(std::string(what) + " needs blocks " + std::to_string(from) + ".." +
                             std::to_string(to) + " but this model holds blocks " +
                             std::to_string(firstBlock) + ".." + std::to_string(lastBlock));
  }
}

void Qwen2::requireSlice(int64_t source, int64_t target, const char* what) const {
  if (source < 0 || source >= target || target >= cfg.layers) {
    throw std::runtime_error(std::string(what) + ": need 0 <= source < target < " + std::to_string(cfg.layers) + ", got source " +
                             std::to_string(source) + ", target " + std::to_string(target));
  }
  requireBlocks(source + 1, target, what);
}

torch::Tensor Qwen2::embedTokens(const torch::Tensor& tokens) const {
  if (!embed.defined()) throw std::runtime_error("the token embedding is not loaded in this model");
  return torch::embedding(embed, onDevice(tokens)).to(act);  // [B, T, d]; the table may be held in its file dtype
}

Rope Qwen2::rope(int64_t start, int64_t T) const {
  // Computed on the CPU (the same float32 values whatever the device), then moved.
  auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  const int64_t hd = cfg.headDim;
  // inv_freq = 1 / theta^(2i/hd), computed in float32 like Hugging Face.
  auto exponents = torch::arange(0, hd, 2, torch::TensorOptions().dtype(torch::kLong)).to(torch::kFloat) / static_cast<double>(hd);
  auto invFreq = 1.0 / torch::pow(cfg.ropeTheta, exponents);          // [hd/2]
  auto positions = torch::arange(start, start + T, f32);              // [T]
  auto freqs = torch::outer(positions, invFreq);                     // [T, hd/2]
  auto emb = torch::cat({freqs, freqs}, -1);                          // [T, hd]
  return Rope{onDevice(emb.cos().to(act)), onDevice(emb.sin().to(act))};
}

torch::Tensor Qwen2::block(int64_t layer, const torch::Tensor& hIn, const Rope& rope, KvCache* cache) const {
  const BlockWeights& w = blocks.at(static_cast<size_t>(layer - firstBlock));
  const torch::Tensor h = hIn.scalar_type() == act ? hIn : hIn.to(act);  // e.g. bf16 embeddings, f32 activations
  const int64_t B = h.size(0), T = h.size(1);
  const int64_t H = cfg.heads, KV = cfg.kvHeads, hd = cfg.headDim;

  // --- self-attention (Qwen2Attention) ---
  auto x = rmsNorm(h, w.inputLayernorm, cfg.rmsEps);
  auto queryStates = mixedLinear(x, w.qProj, w.qProjBias).view({B, T, H, hd}).transpose(1, 2);   // [B, H, T, hd]
  auto keyStates = mixedLinear(x, w.kProj, w.kProjBias).view({B, T, KV, hd}).transpose(1, 2);    // [B, KV, T, hd]
  auto valueStates = mixedLinear(x, w.vProj, w.vProjBias).view({B, T, KV, hd}).transpose(1, 2);  // [B, KV, T, hd]
  queryStates = queryStates * rope.cos + rotateHalf(queryStates) * rope.sin;  // rope tables [T, hd] broadcast over B, H
  keyStates = keyStates * rope.cos + rotateHalf(keyStates) * rope.sin;

  int64_t past = 0;
  if (cache) {
    auto slot = static_cast<size_t>(layer - firstBlock);
    past = cache->length;
    if (past > 0) {
      keyStates = torch::cat({cache->keys[slot], keyStates}, 2);  // [B, KV, past+T, hd]
      valueStates = torch::cat({cache->values[slot], valueStates}, 2);
    }
    cache->keys[slot] = keyStates;
    cache->values[slot] = valueStates;
  }
  torch::Tensor heads;  // [B, H, T, hd]
  if (fusedAttentionApplies(queryStates, keyStates, valueStates)) {
    heads = fusedCausalAttention(queryStates, keyStates, valueStates);  // attention.h: no per-matrix BLAS calls
  } else {
    if (KV != H) {  // grouped-query attention: query head h reads kv head h / (H/KV)
      keyStates = keyStates.repeat_interleave(H / KV, 1);  // [B, H, past+T, hd]
      valueStates = valueStates.repeat_interleave(H / KV, 1);
    }
    auto scores = torch::matmul(queryStates, keyStates.transpose(2, 3)) / std::sqrt(static_cast<double>(hd));  // [B, H, T, past+T]
    if (T > 1) {
      // Query i sits at position past+i and sees keys 0..past+i.
      auto mask = torch::ones({T, past + T}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(past + 1);
      scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
    }
    auto probs = torch::softmax(scores, -1, torch::kFloat).to(queryStates.scalar_type());
    heads = torch::matmul(probs, valueStates);
  }
  auto attnOutput = heads.transpose(1, 2).reshape({B, T, H * hd});  // [B, T, H*hd]
  auto hAttn = h + mixedLinear(attnOutput, w.oProj);

  // --- MLP (Qwen2MLP): down_proj(silu(gate_proj(y)) * up_proj(y)) ---
  auto y = rmsNorm(hAttn, w.postAttentionLayernorm, cfg.rmsEps);
  auto mlp = mixedLinear(torch::silu(mixedLinear(y, w.gateProj)) * mixedLinear(y, w.upProj), w.downProj);
  return hAttn + mlp;
}

torch::Tensor Qwen2::runBlocks(torch::Tensor h, int64_t from, int64_t to, const Rope& rope) const {
  requireBlocks(from, to, "this computation");
  for (int64_t layer = from; layer <= to; ++layer) h = block(layer, h, rope, nullptr);
  return h;
}

torch::Tensor Qwen2::logits(const torch::Tensor& h) const {
  if (!hasHead()) throw std::runtime_error("the final norm and lm_head are not loaded in this model");
  auto x = h.scalar_type() == act ? h : h.to(act);
  return mixedLinear(rmsNorm(x, finalNorm, cfg.rmsEps), lmHead).to(torch::kFloat);
}

void Qwen2::releaseBelow(int64_t keepFrom, bool embedding) {
  if (embedding) embed = torch::Tensor();
  if (keepFrom <= firstBlock) return;
  if (keepFrom > lastBlock + 1) keepFrom = lastBlock + 1;
  blocks.erase(blocks.begin(), blocks.begin() + (keepFrom - firstBlock));
  firstBlock = keepFrom;
}

}  // namespace melbo
