// MELBO training (docs/algorithm.md §3) of a batch of V vectors on the sphere ‖θ‖ = R, all steps
// in C++: maximise F(θ) = Σ_i (Σ_{t∈I_i} ‖Z_{i,t}(θ) − Z_{i,t}(0)‖₂^p)^{1/q} with AdamW (amsgrad).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "optimiser_loop.h"
#include "qwen2.h"

namespace melbo {

// One example prompt, prepared once: nothing before the source block runs inside the loop.
struct TrainExample {
  torch::Tensor x;          // [T_i, d] float32: resid(source) of the unsteered prompt
  torch::Tensor positions;  // [n_i] int64: target positions I_i, each in 0..T_i-1
  torch::Tensor z0;         // [n_i, d] float32: resid(target) of the unsteered prompt at I_i
};

struct TrainRequest {
  std::vector<TrainExample> examples;  // at least one
  torch::Tensor thetas;                // [V, d] float32: each row's starting direction (e.g. randn);
                                       // projected out of `learned` (orthogonal mode), scaled to R
  torch::Tensor learned;               // [m, d] float64 orthonormal (m may be 0): directions to avoid
  LoopSettings loop;  // steps, the slice, Adam's settings, abort; progress: mean and max objective
  // Every field below is read from the request (model_object.cpp); the defaults are the TypeScript
  // side's (src/search/defaults.ts), so these zeros are never used.
  double radius = 0;  // R
  double p = 0, q = 0;
  double weightDecay = 0;
  bool amsgrad = false;
  // Project the gradient (before the step) and θ (after it) out of `learned`.
  bool orthogonal = false;
};

struct TrainResult {
  torch::Tensor thetas;       // [V, d] float32, ‖θ_v‖ = R (and ⟂ learned in orthogonal mode)
  torch::Tensor objectives;   // [V] float32: F at the final thetas
  torch::Tensor trace;        // [steps, V] float32: F at the thetas each step started from
  torch::Tensor radiusError;  // [steps] float32: max_v |‖θ_v‖ − R| after each step (float64 norm)
};

// Throws std::runtime_error on bad input and Aborted (optimiser_loop.h) when request.aborted() says so.
TrainResult trainBlock(const Qwen2& model, const TrainRequest& request);

}  // namespace melbo
