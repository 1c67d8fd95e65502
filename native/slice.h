// Hidden states of the whole model, and the slice map f_{s->t} with autograd for the losses.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "qwen2.h"

namespace melbo {

struct ForwardRequest {
  torch::Tensor tokens;  // [B, T] int64
  std::vector<int64_t> layers;  // blocks whose output resid(k) is returned
  bool logits = false;
  torch::Tensor steer;   // [B, d] float32, or undefined
  int64_t steerAt = -1;
};

struct ForwardResult {
  std::vector<torch::Tensor> resid;  // per requested layer: [B, T, d] float32
  torch::Tensor logits;              // [B, T, V] float32, or undefined
};

// Runs blocks 0.. as far as the deepest requested output, adding `steer` to resid(steerAt).
ForwardResult forward(const Qwen2& model, const ForwardRequest& request);

struct SliceRequest {
  torch::Tensor x;       // [T, d] resid(source) of the unsteered prompt
  torch::Tensor thetas;  // [B, d]
  torch::Tensor z0;      // [d] target mean of resid(target)
  int64_t source = 0, target = 0;
};

struct SliceResult {
  torch::Tensor loss;  // [B] ||mean_T f(x + theta_b) - z0||_2
  torch::Tensor grad;  // [B, d] d loss_b / d theta_b
};

// z(theta) = mean over positions of f_{s->t}(x + theta): [B, d] in float32. Differentiable.
torch::Tensor sliceMean(const Qwen2& model, const torch::Tensor& x, const torch::Tensor& thetas, int64_t source,
                        int64_t target, const Rope& rope);

SliceResult orthoLossGrad(const Qwen2& model, const SliceRequest& request);

}  // namespace melbo
