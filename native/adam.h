// The parameter update of torch.optim.Adam / AdamW after their moment updates (torch 1.13's
// single-tensor implementation, maximize=False): θ − lr · (m / (1 − β1^t)) / (√v / √(1 − β2^t) + ε),
// with v the second moment (AdamW with amsgrad: its running maximum) and t the 1-based step.
// One place for both searches (ortho.cpp, melbo_train.cpp), so that they cannot drift apart.
#pragma once
#include <torch/torch.h>

#include <cmath>
#include <cstdint>

namespace melbo {

inline torch::Tensor adamUpdate(const torch::Tensor& theta, const torch::Tensor& m, const torch::Tensor& v, double lr, double beta1,
                                double beta2, double eps, int64_t step) {
  const double bias1 = 1 - std::pow(beta1, static_cast<double>(step));
  const double bias2 = 1 - std::pow(beta2, static_cast<double>(step));
  auto denom = (v.sqrt() / std::sqrt(bias2)).add_(eps);  // same shape as θ
  return theta.addcdiv(m, denom, -lr / bias1);
}

}  // namespace melbo
