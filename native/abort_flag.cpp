#include "abort_flag.h"

namespace melbo {

namespace {
Napi::FunctionReference* abortFlagConstructor = nullptr;
}

Napi::Function AbortFlag::Define(Napi::Env env) {
  Napi::Function ctor = DefineClass(env, "AbortFlag",
                                    {InstanceMethod<&AbortFlag::Abort>("abort"), InstanceMethod<&AbortFlag::Aborted>("aborted")});
  abortFlagConstructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  env.AddCleanupHook([]() {
    delete abortFlagConstructor;
    abortFlagConstructor = nullptr;
  });
  return ctor;
}

AbortFlag::AbortFlag(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AbortFlag>(info) {}

std::shared_ptr<std::atomic<bool>> AbortFlag::From(const Napi::Value& value) {
  if (!value.IsObject() || abortFlagConstructor == nullptr ||
      !value.As<Napi::Object>().InstanceOf(abortFlagConstructor->Value())) {
    throw Napi::TypeError::New(value.Env(), "expected an AbortFlag");
  }
  return Unwrap(value.As<Napi::Object>())->flag_;
}

Napi::Value AbortFlag::Abort(const Napi::CallbackInfo& info) {
  flag_->store(true);
  return info.Env().Undefined();
}

Napi::Value AbortFlag::Aborted(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), flag_->load());
}

}  // namespace melbo
