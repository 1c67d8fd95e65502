// Building the Qwen2 weights from memory-mapped safetensors files.
#pragma once
#include <string>
#include <vector>

#include "qwen2.h"

namespace melbo {

// One tensor's location, already validated by the TypeScript layer (re-checked here). The
// checkpoint layout (names, which shape each has) lives in src/model/qwen2-layout.ts: this side
// receives each tensor by its role (a BlockWeights field, or embedTokens / norm / lmHead).
struct TensorSource {
  std::string name;  // the checkpoint's name, for messages only
  std::string role;  // "qProj", "inputLayernorm", … ; "embedTokens", "norm", "lmHead"
  int64_t block = -1;  // the decoder block, -1 for the tensors outside the blocks
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
// matches and the data is aligned), and checks that every role the computation needs was sent,
// with the shape qwen2.cpp's maths needs for it.
Qwen2 loadQwen2(const LoadRequest& request);

}  // namespace melbo
