#include "melbo_train.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "adam.h"
#include "projection.h"  // projectOutBasis

namespace melbo {
namespace {

void check(bool ok, const std::string& message) {
  if (!ok) throw std::runtime_error("train: " + message);
}

void validate(const Qwen2& model, const TrainRequest& r) {
  const int64_t d = model.cfg.hidden;
  model.requireSlice(r.loop.source, r.loop.target, "train");
  check(!r.examples.empty(), "at least one example prompt is needed");
  for (size_t i = 0; i < r.examples.size(); ++i) {
    const auto& e = r.examples[i];
    const std::string which = "example " + std::to_string(i) + ": ";
    check(e.x.dim() == 2 && e.x.size(0) > 0 && e.x.size(1) == d, which + "x must be [T, d] with T > 0");
    check(e.positions.dim() == 1 && e.positions.size(0) > 0, which + "at least one target position is needed");
    check(e.positions.min().item<int64_t>() >= 0 && e.positions.max().item<int64_t>() < e.x.size(0),
          which + "target positions must lie in 0.." + std::to_string(e.x.size(0) - 1));
    check(e.z0.dim() == 2 && e.z0.size(0) == e.positions.size(0) && e.z0.size(1) == d, which + "z0 must be [positions, d]");
  }
  check(r.thetas.dim() == 2 && r.thetas.size(0) > 0 && r.thetas.size(1) == d, "thetas must be [V, d] with V > 0");
  check(r.learned.dim() == 2 && r.learned.scalar_type() == torch::kDouble && (r.learned.size(0) == 0 || r.learned.size(1) == d),
        "learned must be a float64 [m, d]");
  check(std::isfinite(r.radius) && r.radius > 0, "the radius R must be > 0");
  check(std::isfinite(r.p) && r.p > 0 && std::isfinite(r.q) && r.q > 0, "p and q must be > 0");
  check(r.loop.steps >= 0, "steps must be >= 0");
}

// F_i(θ_v) = (Σ_{t∈I_i} ‖Z_{i,t}(θ_v) − Z_{i,t}(0)‖₂^p)^{1/q} of one example for every row: [V] float32.
torch::Tensor exampleObjective(const Qwen2& model, const TrainRequest& r, const TrainExample& e, const Rope& rope,
                               const torch::Tensor& thetas) {
  auto h = (e.x.unsqueeze(0) + thetas.unsqueeze(1)).to(model.act);  // [V, T, d]: resid(source) + θ_v everywhere
  h = model.runBlocks(h, r.loop.source + 1, r.loop.target, rope);                // [V, T, d]: resid(target)
  auto z = h.index_select(1, e.positions).to(torch::kFloat);           // [V, n, d]
  auto squared = (z - e.z0.unsqueeze(0)).pow(2).sum(-1);               // [V, n]: ‖·‖₂² over d, per token
  // ‖·‖^p as (‖·‖²)^{p/2}: for the default p = 2 no square root enters the gradient.
  auto perToken = r.p == 2 ? squared : squared.pow(r.p / 2);
  return perToken.sum(1).pow(1.0 / r.q);  // [V]
}

// F [V] at `thetas`, and ∇F [V, d] when `withGrad`. One backward per example (gradients
// accumulate in the leaf), so only one example's activations are alive at a time.
std::pair<torch::Tensor, torch::Tensor> objective(const Qwen2& model, const TrainRequest& r, const std::vector<Rope>& ropes,
                                                  const torch::Tensor& thetas, bool withGrad) {
  torch::AutoGradMode gradMode(withGrad);
  auto leaf = thetas.detach().requires_grad_(withGrad);  // [V, d]
  auto total = torch::zeros({thetas.size(0)}, thetas.options().dtype(torch::kFloat));
  for (size_t i = 0; i < r.examples.size(); ++i) {
    auto f = exampleObjective(model, r, r.examples[i], ropes[i], leaf);  // [V]
    if (withGrad) f.sum().backward();  // rows are independent: the sum's gradient is each row's own
    total += f.detach();
  }
  return {total, withGrad ? leaf.grad() : torch::Tensor()};
}

// R · θ / ‖θ‖ per row, in float64 (so the float32 result is on the sphere to rounding).
torch::Tensor onSphere(const torch::Tensor& theta64, double radius) {
  auto norms = theta64.norm(2, {1}, /*keepdim=*/true);  // [V, 1]
  check(norms.min().item<double>() > 0, "a vector vanished (it lies in the span of the learned vectors)");
  return theta64 * (radius / norms);
}

// The request with its tensors on the model's device (inputs from JS arrive on the CPU).
TrainRequest onDevice(const Qwen2& model, const TrainRequest& in) {
  TrainRequest r = in;
  for (auto& e : r.examples) {
    e.x = model.onDevice(e.x);
    e.positions = model.onDevice(e.positions);
    e.z0 = model.onDevice(e.z0);
  }
  r.thetas = model.onDevice(r.thetas);
  r.learned = model.onDevice(r.learned);
  return r;
}

}  // namespace

TrainResult trainBlock(const Qwen2& model, const TrainRequest& request) {
  validate(model, request);
  const TrainRequest r = onDevice(model, request);
  const int64_t V = r.thetas.size(0);
  const LoopSettings& loop = r.loop;
  const double R = r.radius, b1 = loop.beta1, b2 = loop.beta2;
  std::vector<Rope> ropes;
  for (const auto& e : r.examples) ropes.push_back(model.rope(0, e.x.size(0)));

  // θ = R · normalise(project_out(start, learned)): the parameter, [V, d] float32 like torch's.
  auto start = r.thetas.to(torch::kDouble);  // [V, d]
  if (r.orthogonal) start = projectOutBasis(start, r.learned);
  auto theta = onSphere(start, R).to(torch::kFloat);
  // AdamW state, one optimizer per row (every update below is elementwise or per row).
  auto expAvg = torch::zeros_like(theta), expAvgSq = torch::zeros_like(theta), maxExpAvgSq = torch::zeros_like(theta);
  auto trace = torch::zeros({loop.steps, V}, torch::kFloat);
  auto radiusError = torch::zeros({loop.steps}, torch::kFloat);

  for (int64_t step = 1; step <= loop.steps; ++step) {
    loop.checkAbort();
    auto [F, gradF] = objective(model, r, ropes, theta, true);  // [V], [V, d]
    torch::NoGradGuard noGrad;
    trace[step - 1].copy_(F);
    auto g = gradF.neg().to(torch::kDouble);  // [V, d]: g = ∇(−F), since the optimizer minimises
    if (r.orthogonal) g = projectOutBasis(g, r.learned);
    auto theta64 = theta.to(torch::kDouble);
    g = g - (g * theta64).sum(1, /*keepdim=*/true) * theta64 / (R * R);  // [V, d]: tangent space of the sphere
    auto grad = g.to(torch::kFloat);

    // AdamW exactly as torch.optim.AdamW's single-tensor update (torch 1.13, maximize=False).
    theta.mul_(1 - loop.lr * r.weightDecay);
    expAvg.mul_(b1).add_(grad, 1 - b1);
    expAvgSq.mul_(b2).addcmul_(grad, grad, 1 - b2);
    if (r.amsgrad) torch::maximum_out(maxExpAvgSq, maxExpAvgSq, expAvgSq);
    theta = adamUpdate(theta, expAvg, r.amsgrad ? maxExpAvgSq : expAvgSq, loop.lr, b1, b2, loop.eps, step);

    auto next = theta.to(torch::kDouble);  // [V, d]
    if (r.orthogonal) next = projectOutBasis(next, r.learned);
    theta = onSphere(next, R).to(torch::kFloat);
    radiusError[step - 1] = (theta.to(torch::kDouble).norm(2, {1}) - R).abs().max().item<double>();
    if (loop.reportsAt(step)) {
      loop.progress(LoopProgress{step, loop.steps, F.mean().item<double>(), F.max().item<double>()});
    }
  }
  auto finalF = objective(model, r, ropes, theta, false).first;
  return TrainResult{toHost(theta), toHost(finalF), trace, radiusError};
}

}  // namespace melbo
