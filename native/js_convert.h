// Reading option objects and moving tensors across the JS boundary (JS thread only).
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace melbo {

// The options object every entry point takes as its first argument; `call` names the entry point
// in the TypeError thrown without one ("forward(options)").
Napi::Object optionsArgument(const Napi::CallbackInfo& info, const char* call);

// Option readers: throw a TypeError naming the option when it is missing or of the wrong kind.
bool has(const Napi::Object& o, const char* key);
int64_t getInt(const Napi::Object& o, const char* key);
double getNumber(const Napi::Object& o, const char* key);
bool getBool(const Napi::Object& o, const char* key);
// An optional switch: false when absent (the only kind of option with a native default).
bool getFlag(const Napi::Object& o, const char* key);
std::string getString(const Napi::Object& o, const char* key);
std::vector<int64_t> getIntList(const Napi::Object& o, const char* key);

// Copies of typed arrays as tensors of the given shape (numel must match, else RangeError).
torch::Tensor float32Tensor(const Napi::Object& o, const char* key, std::vector<int64_t> shape);
torch::Tensor int32TensorAsLong(const Napi::Object& o, const char* key);
// A Float64Array of [n * d] values as an [n, d] float64 tensor (n may be 0).
torch::Tensor float64Rows(const Napi::Object& o, const char* key, int64_t d);

// Zero-copy views of a tensor's memory as JS typed arrays; the tensor lives until GC.
Napi::Float32Array toFloat32Array(Napi::Env env, torch::Tensor t);
Napi::Int32Array toInt32Array(Napi::Env env, torch::Tensor t);

}  // namespace melbo
