// A flag JS sets and a running native job polls: how an AbortSignal reaches C++ loops.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

namespace melbo {

class AbortFlag : public Napi::ObjectWrap<AbortFlag> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit AbortFlag(const Napi::CallbackInfo& info);
  // The shared flag behind a JS AbortFlag (throws TypeError for anything else).
  static std::shared_ptr<std::atomic<bool>> From(const Napi::Value& value);

 private:
  Napi::Value Abort(const Napi::CallbackInfo& info);
  Napi::Value Aborted(const Napi::CallbackInfo& info);
  std::shared_ptr<std::atomic<bool>> flag_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace melbo
