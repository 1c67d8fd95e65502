#include "slice.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace melbo {

ForwardResult forward(const Qwen2& model, const ForwardRequest& r) {
  torch::NoGradGuard noGrad;
  const auto L = model.cfg.layers;
  for (auto k : r.layers) {
    if (k < 0 || k >= L) throw std::runtime_error("block " + std::to_string(k) + " is out of range 0.." + std::to_string(L - 1));
  }
  if (r.steer.defined() && (r.steerAt < 0 || r.steerAt >= L)) {
    throw std::runtime_error("steering block " + std::to_string(r.steerAt) + " is out of range 0.." + std::to_string(L - 1));
  }
  int64_t deepest = r.logits ? L - 1 : -1;
  for (auto k : r.layers) deepest = std::max(deepest, k);
  if (r.steer.defined()) deepest = std::max(deepest, r.steerAt);
  model.requireBlocks(0, deepest, "forward");

  const int64_t T = r.tokens.size(1);
  auto rope = model.rope(0, T);
  auto h = model.embedTokens(r.tokens);  // [B, T, d]
  torch::Tensor theta;
  if (r.steer.defined()) theta = model.onDevice(r.steer).to(model.act).unsqueeze(1);  // [B, 1, d]
  ForwardResult out;
  out.resid.resize(r.layers.size());
  for (int64_t k = 0; k <= deepest; ++k) {
    h = model.block(k, h, rope, nullptr);
    if (theta.defined() && k == r.steerAt) h = h + theta;
    for (size_t i = 0; i < r.layers.size(); ++i) {
      if (r.layers[i] == k) out.resid[i] = h.to(torch::kCPU, torch::kFloat, false, /*copy=*/true);
    }
  }
  if (r.logits) out.logits = toHost(model.logits(h));
  return out;
}

torch::Tensor sliceMean(const Qwen2& model, const torch::Tensor& x, const torch::Tensor& thetas, int64_t source,
                        int64_t target, const Rope& rope) {
  // thetas [B, d] float32 (the optimised leaf); x [T, d] float32; both on the model's device
  // (a CPU input is moved, and autograd follows the move).
  auto h = (model.onDevice(x).unsqueeze(0) + model.onDevice(thetas).unsqueeze(1)).to(model.act);  // [B, T, d]
  h = model.runBlocks(h, source + 1, target, rope);
  return h.to(torch::kFloat).mean(1);  // [B, d]
}

SliceResult orthoLossGrad(const Qwen2& model, const SliceRequest& r) {
  model.requireSlice(r.source, r.target, "orthoLossGrad");
  torch::AutoGradMode gradMode(true);
  auto thetas = model.onDevice(r.thetas).clone().requires_grad_(true);
  auto rope = model.rope(0, r.x.size(0));
  auto z = sliceMean(model, r.x, thetas, r.source, r.target, rope);                   // [B, d]
  auto loss = (z - model.onDevice(r.z0).unsqueeze(0)).norm(2, {-1});                  // [B]
  loss.sum().backward();
  return SliceResult{toHost(loss.detach()), toHost(thetas.grad().detach())};
}

}  // namespace melbo
