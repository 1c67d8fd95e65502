#include "ortho.h"

#include <cmath>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "adam.h"
#include "slice.h"
#include "step_profile.h"

namespace melbo {

OrthoResult orthoBlock(const Qwen2& model, const OrthoRequest& r) {
  const int64_t d = model.cfg.hidden, B = r.rows;
  const LoopSettings& loop = r.loop;
  model.requireSlice(loop.source, loop.target, "the ortho search");
  if (B < 1 || loop.steps < 0) throw std::runtime_error("ortho: rows must be >= 1 and steps >= 0");
  if (r.basis.dim() != 2 || (r.basis.size(0) > 0 && r.basis.size(1) != d)) throw std::runtime_error("ortho: basis must be [m, d]");

  const auto rope = model.rope(0, r.x.size(0));
  const auto x = model.onDevice(r.x);          // [T, d]
  const auto basis = model.onDevice(r.basis);  // [m, d] float64
  const auto on = torch::TensorOptions().device(model.device);
  if (r.starts.defined() && (r.starts.dim() != 2 || r.starts.size(0) != B || r.starts.size(1) != d)) {
    throw std::runtime_error("ortho: starts must be [rows, d]");
  }
  auto seeds = model.onDevice(r.theta0).reshape({1, d}).expand({B, d}).clone();  // [B, d]
  torch::Tensor z0;  // [B, d]
  {
    // The target is computed with the block's own batch shape, so that at theta0 every row's
    // loss is exactly 0 (same inputs, same kernels): a row that starts at theta0 (row 0 always)
    // then takes a true no-op first step, whatever the block size.
    torch::NoGradGuard noGrad;
    z0 = sliceMean(model, x, seeds, loop.source, loop.target, rope);
  }
  auto theta = r.starts.defined() ? model.onDevice(r.starts).clone() : seeds;  // [B, d]
  auto m = torch::zeros_like(theta), v = torch::zeros_like(theta);  // Adam state, one per row
  auto active = torch::ones({B, 1}, on.dtype(torch::kBool));
  auto steps = torch::full({B}, loop.steps, on.dtype(torch::kInt));
  const double b1 = loop.beta1, b2 = loop.beta2;

  StepProfile profile;  // MELBO_PROFILE
  std::vector<torch::Tensor> trace;  // [B] each

  for (int64_t step = 1; step <= loop.steps; ++step) {
    loop.checkAbort();
    profile.beforeStep(step);
    auto leaf = theta.detach().requires_grad_(true);
    auto loss = (sliceMean(model, x, leaf, loop.source, loop.target, rope) - z0).norm(2, {-1});  // [B]
    loss.sum().backward();
    torch::NoGradGuard noGrad;
    if (r.traceEvery > 0 && (step - 1) % r.traceEvery == 0) trace.push_back(loss.detach().to(torch::kFloat).clone());
    auto grad = leaf.grad();  // [B, d]; a zero norm has gradient 0 (never NaN)
    // The tolerance applies from step 2: at step 1 every row is still theta0 itself (loss 0),
    // which the projection has yet to remove.
    if (r.lossTolerance > 0 && step > 1) {
      auto done = (loss.detach() <= r.lossTolerance).unsqueeze(1) & active;  // reached before this step
      if (done.any().item<bool>()) {
        auto newlyDone = done.squeeze(1);
        steps.masked_fill_(newlyDone, static_cast<int32_t>(step - 1));
        active &= ~done;
      }
      if (!active.any().item<bool>()) break;
    }
    // The in-block part applies in both modes: `post` stays seed-exact with respect to the basis
    // (B = 1 has no in-block part), while no row drifts along the rows that constrain it.
    if (r.projectGradient || (r.projectGradientInBlock && B > 1)) {
      auto projected = r.projectGradient ? projectOutBasis(grad, basis) : grad.to(torch::kDouble);  // [B, d]
      if (r.projectGradientInBlock) projected = projectGradientInBlock(projected, theta, r.inBlock);
      grad = projected.to(torch::kFloat);
    }
    // Adam exactly as torch.optim.Adam's single-tensor update (weight_decay 0), per row.
    auto mNext = m * b1 + grad * (1 - b1);
    auto vNext = v.mul(b2).addcmul_(grad, grad, 1 - b2);
    auto updated = adamUpdate(theta, mNext, vNext, loop.lr, b1, b2, loop.eps, step);
    theta = torch::where(active, updated, theta);
    m = torch::where(active, mNext, m);
    v = torch::where(active, vNext, v);
    theta = projectBlock(theta, basis, r.inBlock).to(torch::kFloat);
    if (loop.reportsAt(step)) {
      auto l = loss.detach();
      loop.progress(LoopProgress{step, loop.steps, l.mean().item<double>(), l.min().item<double>()});
    }
  }
  profile.finish();  // writes the trace
  torch::NoGradGuard noGrad;
  auto finalLoss = (sliceMean(model, x, theta, loop.source, loop.target, rope) - z0).norm(2, {-1});
  OrthoResult result{toHost(theta), toHost(finalLoss), toHost(steps), {}};
  if (r.traceEvery > 0) result.trace = trace.empty() ? torch::zeros({0, B}) : toHost(torch::stack(trace));  // [points, B]
  return result;
}

}  // namespace melbo
