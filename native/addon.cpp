// Module entry: free functions and class registration.
#include <napi.h>
#include <torch/torch.h>

#include "model_object.h"
#include "promise_worker.h"

namespace melbo {
namespace {
int threads = 0;
}
int configuredThreads() { return threads > 0 ? threads : at::get_num_threads(); }
void setConfiguredThreads(int n) { threads = n; at::set_num_threads(n); }
}  // namespace melbo

namespace {

Napi::Value Version(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("torch", Napi::String::New(info.Env(), TORCH_VERSION));
  return out;
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), melbo::configuredThreads());
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(env, "setThreads(n): n must be a positive integer");
  }
  int n = info[0].As<Napi::Number>().Int32Value();
  if (n < 1) throw Napi::RangeError::New(env, "setThreads(n): n must be >= 1");
  melbo::setConfiguredThreads(n);
  return env.Undefined();
}

Napi::Value CudaAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), torch::cuda::is_available());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("version", Napi::Function::New(env, Version));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("cudaAvailable", Napi::Function::New(env, CudaAvailable));
  exports.Set("Model", melbo::ModelObject::Define(env));
  exports.Set("loadModel", Napi::Function::New(env, melbo::ModelObject::Load));
  return exports;
}

}  // namespace

NODE_API_MODULE(melbo_native, Init)
