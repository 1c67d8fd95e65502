#include "js_progress.h"

#include "abort_flag.h"
#include "js_convert.h"

namespace melbo {

ProgressChannel::ProgressChannel(Napi::Env env, const Napi::Value& callback, const char* name) {
  if (!callback.IsFunction()) return;
  tsfn_ = std::make_shared<Napi::ThreadSafeFunction>(Napi::ThreadSafeFunction::New(env, callback.As<Napi::Function>(), name, 0, 1));
}

void ProgressChannel::report(ProgressFields fields) const {
  if (!tsfn_) return;
  auto* copy = new ProgressFields(std::move(fields));
  auto status = tsfn_->NonBlockingCall(copy, [](Napi::Env env, Napi::Function callback, ProgressFields* f) {
    Napi::Object event = Napi::Object::New(env);
    for (const auto& [key, value] : *f) event.Set(key, Napi::Number::New(env, value));
    delete f;
    callback.Call({event});  // an exception thrown by the callback surfaces as uncaught in JS
  });
  if (status != napi_ok) delete copy;
}

void ProgressChannel::release() const {
  if (tsfn_) tsfn_->Release();
}

std::function<bool()> abortCheck(const Napi::Object& options) {
  if (!has(options, "abort")) return {};
  auto flag = AbortFlag::From(options.Get("abort"));
  return [flag]() { return flag->load(); };
}

}  // namespace melbo
