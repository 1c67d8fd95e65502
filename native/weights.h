// Building the Qwen2 weights from memory-mapped safetensors files.
#pragma once
#include <string>
#include <vector>

#include "qwen2.h"

namespace melbo {

// One tensor's location, already validated by the TypeScript layer (re-checked here).
struct TensorSource {
  std::string name;
  std::string path;
  std::string dtype;  // "F32" | "F16" | "BF16"
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute byte offset in the file
  uint64_t nbytes = 0;
};

struct LoadRequest {
  Qwen2Config cfg;
  torch::ScalarType dtype = torch::kFloat;  // compute dtype
  torch::Device device{torch::kCPU};         // where the weights are placed (built on the CPU, then moved)
  int64_t firstBlock = 0, lastBlock = -1;
  bool embedding = false;  // model.embed_tokens
  bool head = false;       // model.norm + lm_head (or the tied embedding)
  std::vector<TensorSource> tensors;
};

// Maps the files, builds tensors in the compute dtype (zero-copy where the dtype already
// matches and the data is aligned), and checks that every needed tensor is present with the
// shape the config implies.
Qwen2 loadQwen2(const LoadRequest& request);

}  // namespace melbo
