#include "qwen2.h"

#include "attention.h"
#include "skinny.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace melbo {

using torch::indexing::Slice;

namespace {

// Widened weights are made in row chunks of at most this many elements (64 MiB in float32):
// every block weight of a 1.8B model fits in one chunk; an lm_head takes several.
constexpr int64_t kWidenChunk = int64_t{1} << 24;

int64_t widenChunkRows(const torch::Tensor& w) {
  return std::max<int64_t>(1, kWidenChunk / std::max<int64_t>(1, w.size(1)));
}

// Rows r0 .. r0+n-1 of the bf16 weight w [out, in] as float32 [n, in], in this thread's buffer
// (valid until the next call on this thread). A fresh 45 MB allocation per call would cost
// page faults every time; the buffer is written with a plain vectorised copy.
torch::Tensor widenRows(const torch::Tensor& w, int64_t r0, int64_t n) {
  RECORD_FUNCTION("melbo::widen_bf16", std::vector<c10::IValue>());  // named in profiles
  thread_local torch::Tensor buffer;
  const int64_t numel = n * w.size(1);
  if (!buffer.defined() || buffer.numel() < numel) buffer = torch::empty({numel}, torch::TensorOptions().dtype(torch::kFloat));
  auto out = buffer.narrow(0, 0, numel).view({n, w.size(1)});  // [n, in]
  out.copy_(w.narrow(0, r0, n));
  return out;
}

// x [..., in] float32 @ w [out, in]^T -> [..., out], w bf16 widened chunk by chunk.
torch::Tensor widenedForward(const torch::Tensor& x, const torch::Tensor& w) {
  auto x2 = x.reshape({-1, x.size(-1)});  // [N, in]
  const int64_t out = w.size(0), rows = widenChunkRows(w);
  torch::Tensor y;
  if (rows >= out) {
    y = torch::mm(x2, widenRows(w, 0, out).t());  // [N, out]
  } else {
    y = torch::empty({x2.size(0), out}, x2.options());
    for (int64_t r = 0; r < out; r += rows) {
      const int64_t n = std::min(rows, out - r);
      y.narrow(1, r, n).copy_(torch::mm(x2, widenRows(w, r, n).t()));
    }
  }
  auto sizes = x.sizes().vec();
  sizes.back() = out;
  return y.view(sizes);
}

// The input gradient of widenedForward: gy [..., out] @ w [out, in] -> [..., in].
torch::Tensor widenedBackward(const torch::Tensor& gy, const torch::Tensor& w) {
  auto g2 = gy.reshape({-1, gy.size(-1)});  // [N, out]
  const int64_t out = w.size(0), rows = widenChunkRows(w);
  torch::Tensor gx;
  for (int64_t r = 0; r < out; r += rows) {
    const int64_t n = std::min(rows, out - r);
    auto part = g2.narrow(1, r, n);  // [N, n]
    if (!gx.defined()) gx = torch::mm(part, widenRows(w, r, n));  // [N, in]
    else gx.addmm_(part, widenRows(w, r, n));
  }
  auto sizes = gy.sizes().vec();
  sizes.back() = w.size(1);
  return gx.view(sizes);
}

// Autograd node of a bf16-weight linear: saves the bf16 weight, widens it again for backward.
struct WidenedLinear : public torch::autograd::Function<WidenedLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    ctx->save_for_backward({w});
    return widenedForward(x, w);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto w = ctx->get_saved_variables()[0];
    return {widenedBackward(grads[0], w), torch::Tensor()};
  }
};

// Autograd node of a few-row linear on the skinny kernels (skinny.h): saves the weight as stored.
struct SkinnyLinear : public torch::autograd::Function<SkinnyLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    ctx->save_for_backward({w});
    auto sizes = x.sizes().vec();
    sizes.back() = w.size(0);
    return skinnyForward(x.reshape({-1, x.size(-1)}), w).view(sizes);  // [..., out]
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto w = ctx->get_saved_variables()[0];
    const auto& g = grads[0];  // [..., out]
    auto sizes = g.sizes().vec();
    sizes.back() = w.size(1);
    return {skinnyBackward(g.reshape({-1, g.size(-1)}).contiguous(), w).view(sizes), torch::Tensor()};
  }
};

}  // namespace

ProductPath productPath(torch::ScalarType activations, torch::Device device, const torch::Tensor& w, int64_t rows) {
  if (!w.requires_grad() && skinnyAppliesTo(activations, device, w, rows)) return ProductPath::Skinny;
  if (w.scalar_type() == activations) return ProductPath::Blas;
  if (w.scalar_type() == torch::kBFloat16 && activations == torch::kFloat && !w.requires_grad() && w.device().is_cpu()) return ProductPath::Widened;
  return ProductPath::Converted;
}

std::string productPathName(ProductPath path, torch::ScalarType activations, torch::Device device, const torch::Tensor& w) {
  const std::string weights = w.scalar_type() == torch::kBFloat16 ? "bf16" : w.scalar_type() == torch::kFloat ? "f32" : "other";
  const std::string acts = activations == torch::kBFloat16 ? "bf16" : "f32";
  if (!device.is_cpu()) return device.str() + " " + acts + (weights == acts ? "" : " (" + weights + " weights converted)");
  switch (path) {
    case ProductPath::Skinny:
      return (acts == "bf16" ? "skinny-avx512bf16 (" : "skinny-avx2 (") + weights + " weights read in place)";
    case ProductPath::Blas:
      if (acts == "f32") return "blas f32";
      return cpuHasFastBf16() ? "onednn bf16" : "scalar bf16 (slow)";
    case ProductPath::Widened: return "widened bf16 -> f32, blas f32";
    case ProductPath::Converted: return "converted to " + acts + ", torch::linear";
  }
  return "unknown";
}

torch::Tensor mixedLinear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  const int64_t rows = w.dim() == 2 && x.size(-1) == w.size(1) ? x.numel() / w.size(1) : 0;
  const auto path = productPath(x.scalar_type(), x.device(), w, rows);
  if (path == ProductPath::Skinny) {  // few rows: no BLAS repacking of the weight
    const bool grad = torch::GradMode::is_enabled() && x.requires_grad();
    torch::Tensor y;
    if (grad) {
      y = SkinnyLinear::apply(x, w);
    } else {
      auto sizes = x.sizes().vec();
      sizes.back() = w.size(0);
      y = skinnyForward(x.reshape({-1, x.size(-1)}), w).view(sizes);
    }
    if (b.defined()) y = y + b.to(y.scalar_type());
    return y;
  }
  if (path == ProductPath::Blas) return torch::linear(x, w, b);
  if (path == ProductPath::Converted) return torch::linear(x, w.to(x.scalar_type()), b.defined() ? b.to(x.scalar_type()) : b);
  auto y = (torch::GradMode::is_enabled() && x.requires_grad()) ? WidenedLinear::apply(x, w) : widenedForward(x, w);
  if (b.defined()) y = y + b.to(torch::kFloat);
  return y;
}

torch::ScalarType chooseActivationDtype(torch::ScalarType weights, torch::Device device) {
  if (weights != torch::kBFloat16) return weights;
  if (const char* env = std::getenv("MELBO_BF16_MATMUL")) {
    const std::string v(env);
    if (v == "bf16") return torch::kBFloat16;
    if (v == "f32") return torch::kFloat;
  }
  if (!device.is_cpu()) return torch::kBFloat16;  // GPUs multiply bf16 natively
  return cpuHasFastBf16() ? torch::kBFloat16 : torch::kFloat;
}

bool cpuHasFastBf16() {
#if defined(__x86_64__) || defined(__i386__)
  // libtorch (1.13 and 2.x) sends bf16 matrix products to oneDNN only when the CPU has AVX-512
  // BW, VL and DQ (its mkldnn_bf16_device_check); otherwise they run in a scalar loop.
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return true;
#endif
}

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

torch::Tensor Qwen2::block(int64_t k, const torch::Tensor& hIn, const Rope& rope, KvCache* cache) const {
  const BlockWeights& w = blocks.at(static_cast<size_t>(k - firstBlock));
  const torch::Tensor h = hIn.scalar_type() == act ? hIn : hIn.to(act);  // e.g. bf16 embeddings, f32 activations
  const int64_t B = h.size(0), T = h.size(1);
  const int64_t H = cfg.heads, K = cfg.kvHeads, hd = cfg.headDim;

  // --- self-attention ---
  auto x = rmsNorm(h, w.inputNorm, cfg.rmsEps);
  auto q = mixedLinear(x, w.q, w.qBias).view({B, T, H, hd}).transpose(1, 2);  // [B, H, T, hd]
  auto key = mixedLinear(x, w.k, w.kBias).view({B, T, K, hd}).transpose(1, 2);  // [B, K, T, hd]
  auto val = mixedLinear(x, w.v, w.vBias).view({B, T, K, hd}).transpose(1, 2);  // [B, K, T, hd]
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
  torch::Tensor heads;  // [B, H, T, hd]
  if (fusedAttentionApplies(q, key, val)) {
    heads = fusedCausalAttention(q, key, val);  // attention.h: no per-matrix BLAS calls
  } else {
    if (K != H) {  // grouped-query attention: query head h reads kv head h / (H/K)
      key = key.repeat_interleave(H / K, 1);  // [B, H, past+T, hd]
      val = val.repeat_interleave(H / K, 1);
    }
    auto scores = torch::matmul(q, key.transpose(2, 3)) / std::sqrt(static_cast<double>(hd));  // [B, H, T, past+T]
    if (T > 1) {
      // Query i sits at position past+i and sees keys 0..past+i.
      auto mask = torch::ones({T, past + T}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(past + 1);
      scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
    }
    auto probs = torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type());
    heads = torch::matmul(probs, val);
  }
  auto attn = heads.transpose(1, 2).reshape({B, T, H * hd});  // [B, T, H*hd]
  auto hAttn = h + mixedLinear(attn, w.o);

  // --- MLP ---
  auto y = rmsNorm(hAttn, w.postNorm, cfg.rmsEps);
  auto mlp = mixedLinear(torch::silu(mixedLinear(y, w.gate)) * mixedLinear(y, w.up), w.down);
  return hAttn + mlp;
}

torch::Tensor Qwen2::runBlocks(torch::Tensor h, int64_t from, int64_t to, const Rope& rope) const {
  requireBlocks(from, to, "this computation");
  for (int64_t k = from; k <= to; ++k) h = block(k, h, rope, nullptr);
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
