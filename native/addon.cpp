// Module entry: free functions and class registration.
#include <napi.h>
#include <torch/torch.h>

#include "abort_flag.h"
#include "model_object.h"
#include "js_convert.h"
#include "projection.h"
#include "pickle_io.h"

#include <atomic>
#include <cstring>
#include "promise_worker.h"

namespace melbo {
namespace {
// Set on the JS thread, read by every job's libuv thread when it starts.
std::atomic<int> threads{0};
}
int configuredThreads() {
  const int n = threads.load();
  return n > 0 ? n : at::get_num_threads();
}
void setConfiguredThreads(int n) {
  threads.store(n);
  at::set_num_threads(n);
}
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

// projectBlock({rows: Float64Array [B*d], basis: Float64Array [m*d], d, device: "cpu" | "cuda", reference,
//               inBlock?: "gram-schmidt" | "first-then-symmetric" | "symmetric"})
//   -> Float64Array [B*d]. Synchronous: for tests of the projection kernel, its CPU twin and the in-block modes.
Napi::Value ProjectBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = melbo::optionsArgument(info, "projectBlock(options)");
  const int64_t d = melbo::getInt(o, "d");
  auto rows = melbo::float64Rows(o, "rows", d), basis = melbo::float64Rows(o, "basis", d);
  const bool cuda = o.Get("device").IsString() && o.Get("device").As<Napi::String>().Utf8Value() == "cuda";
  const bool reference = melbo::getFlag(o, "reference");
  try {
    if (cuda) {
      rows = rows.to(torch::kCUDA);
      basis = basis.to(torch::kCUDA);
    }
    const auto mode = melbo::has(o, "inBlock") ? melbo::inBlockFromName(melbo::getString(o, "inBlock")) : melbo::InBlock::GramSchmidt;
    auto out = reference ? melbo::projectBlockReference(rows, basis) : melbo::projectBlock(rows, basis, mode);
    out = out.to(torch::kCPU).contiguous();
    auto result = Napi::Float64Array::New(env, static_cast<size_t>(out.numel()));
    std::memcpy(result.Data(), out.data_ptr<double>(), static_cast<size_t>(out.numel()) * sizeof(double));
    return result;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("version", Napi::Function::New(env, Version));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("cudaAvailable", Napi::Function::New(env, CudaAvailable));
  exports.Set("AbortFlag", melbo::AbortFlag::Define(env));
  exports.Set("cudaKernelsBuilt", Napi::Function::New(env, [](const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), melbo::projectionCudaBuilt()); }));
  exports.Set("projectBlock", Napi::Function::New(env, ProjectBlock));
  exports.Set("Model", melbo::ModelObject::Define(env));
  exports.Set("loadModel", Napi::Function::New(env, melbo::ModelObject::Load));
  exports.Set("loadPt", Napi::Function::New(env, melbo::LoadPt));
  exports.Set("savePt", Napi::Function::New(env, melbo::SavePt));
  return exports;
}

}  // namespace

NODE_API_MODULE(melbo_native, Init)
