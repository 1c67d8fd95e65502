#include "qwen2.h"

#include <cmath>
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

torch::Tensor Qwen2::embedTokens(const torch::Tensor& tokens) const {
  if (!embed.defined()) throw std::runtime_error("the token embedding is not loaded in this model");
  return torch::embedding(embed, tokens);  // [B, T, d]
}

Rope Qwen2::rope(int64_t start, int64_t T) const {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  const int64_t hd = cfg.headDim;
  // inv_freq = 1 / theta^(2i/hd), computed in float32 like Hugging Face.
  auto exponents = torch::arange(0, hd, 2, torch::TensorOptions().dtype(torch::kLong)).to(torch::kFloat) / static_cast<double>(hd);
  auto invFreq = 1.0 / torch::pow(cfg.ropeTheta, exponents);          // [hd/2]
  auto positions = torch::arange(start, start + T, f32);              // [T]
  auto freqs = torch::outer(positions, invFreq);                     // [T, hd/2]
  auto emb = torch::cat({freqs, freqs}, -1);                          // [T, hd]
  return Rope{emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor Qwen2::block(int64_t k, const torch::Tensor& h, const Rope& rope, KvCache* cache) const {
  const BlockWeights& w = blocks.at(static_cast<size_t>(k - firstBlock));
  const int64_t B = h.size(0), T = h.size(1);
  const int64_t H = cfg.heads, K = cfg.kvHeads, hd = cfg.headDim;

  // --- self-attention ---
  auto x = rmsNorm(h, w.inputNorm, cfg.rmsEps);
  auto q = torch::linear(x, w.q, w.qBias).view({B, T, H, hd}).transpose(1, 2);  // [B, H, T, hd]
  auto key = torch::linear(x, w.k, w.kBias).view({B, T, K, hd}).transpose(1, 2);  // [B, K, T, hd]
  auto val = torch::linear(x, w.v, w.vBias).view({B, T, K, hd}).transpose(1, 2);  // [B, K, T, hd]
  q = q * rope.cos + rotateHalf(q) * rope.sin;  // rope tables [T, hd] broadcast over B, H
  key = key * rope.cos + rotateHalf(key) * rope.sin;

  int64_t past = 0;
  if (cache) {
    auto slot = static_cast<size_t>(k - firstBlock);
    past = cache->length;
    if (past > 0) {
      key = torch::cat({cache->keys[slot], key}, 2);  // [B, K, past+T, hd]
      val = torch::cat({cache->values[slot], val}, 2);
    }
    cache->keys[slot] = key;
    cache->values[slot] = val;
  }
  if (K != H) {  // grouped-query attention: query head h reads kv head h / (H/K)
    key = key.repeat_interleave(H / K, 1);  // [B, H, past+T, hd]
    val = val.repeat_interleave(H / K, 1);
  }
  auto scores = torch::matmul(q, key.transpose(2, 3)) / std::sqrt(static_cast<double>(hd));  // [B, H, T, past+T]
  if (T > 1) {
    // Query i sits at position past+i and sees keys 0..past+i.
    auto mask = torch::ones({T, past + T}, torch::TensorOptions().dtype(torch::kBool)).triu(past + 1);
    scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  }
  auto probs = torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type());
  auto attn = torch::matmul(probs, val)                     // [B, H, T, hd]
                  .transpose(1, 2).reshape({B, T, H * hd});  // [B, T, H*hd]
  auto hAttn = h + torch::linear(attn, w.o);

  // --- MLP ---
  auto y = rmsNorm(hAttn, w.postNorm, cfg.rmsEps);
  auto mlp = torch::linear(torch::silu(torch::linear(y, w.gate)) * torch::linear(y, w.up), w.down);
  return hAttn + mlp;
}

torch::Tensor Qwen2::runBlocks(torch::Tensor h, int64_t from, int64_t to, const Rope& rope) const {
  requireBlocks(from, to, "this computation");
  for (int64_t k = from; k <= to; ++k) h = block(k, h, rope, nullptr);
  return h;
}

torch::Tensor Qwen2::logits(const torch::Tensor& h) const {
  if (!hasHead()) throw std::runtime_error("the final norm and lm_head are not loaded in this model");
  return torch::linear(rmsNorm(h, finalNorm, cfg.rmsEps), lmHead).to(torch::kFloat);
}

void Qwen2::releaseBelow(int64_t keepFrom, bool embedding) {
  if (embedding) embed = torch::Tensor();
  if (keepFrom <= firstBlock) return;
  if (keepFrom > lastBlock + 1) keepFrom = lastBlock + 1;
  blocks.erase(blocks.begin(), blocks.begin() + (keepFrom - firstBlock));
  firstBlock = keepFrom;
}

}  // namespace melbo
