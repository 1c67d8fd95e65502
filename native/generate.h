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
  // One seed per row (size B): row b draws from its own generator, so its tokens do not depend on
  // which other rows share its batch. Empty: all rows draw from one generator seeded with `seed`.
  std::vector<int64_t> rowSeeds;
  std::vector<int64_t> stopTokens;
  bool firstLogits = false;  // also return the logits of the first new token
};

struct GenerateResult {
  torch::Tensor tokens;   // [B, maxNewTokens] int32, padded with -1 after a row stops
  torch::Tensor lengths;  // [B] int32, new tokens per row (a stop token is counted)
  torch::Tensor firstLogits;  // [B, V] float32 at the first answer position, when asked for
};

GenerateResult generate(const Qwen2& model, const GenerateRequest& request);

// Next tokens from last-position logits [B, V]: argmax, or a sample at the given temperature
// from the smallest set of tokens whose probability reaches topP. `gens`: one generator for the
// whole batch, or one per row.
torch::Tensor sampleNext(const torch::Tensor& logits, double temperature, double topP, std::vector<at::Generator>& gens);

}  // namespace melbo
