// Steered generation with a KV cache: one prompt, B steering vectors, B continuations.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "qwen2.h"

namespace melbo {

struct GenerateRequest {
  torch::Tensor prompt;   // [T] int64
  torch::Tensor vectors;  // [B, d] float32, or undefined for one unsteered row
  int64_t at = -1;        // block whose output gets the vector added (when vectors given)
  int64_t maxNewTokens = 0;
  double temperature = 0;  // 0 = greedy
  double topP = 1;
  uint64_t seed = 0;
  std::vector<int64_t> stopTokens;
};

struct GenerateResult {
  torch::Tensor tokens;   // [B, maxNewTokens] int32, padded with -1 after a row stops
  torch::Tensor lengths;  // [B] int32, new tokens per row (a stop token is counted)
};

GenerateResult generate(const Qwen2& model, const GenerateRequest& request);

// Next tokens from last-position logits [B, V]: argmax, or a sample at the given temperature
// from the smallest set of tokens whose probability reaches topP.
torch::Tensor sampleNext(const torch::Tensor& logits, double temperature, double topP, at::Generator& gen);

}  // namespace melbo
