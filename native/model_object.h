// The JS-facing Model class: owns a loaded Qwen2 and runs its jobs off the JS thread.
#pragma once
#include <napi.h>

#include <memory>

#include "qwen2.h"

namespace melbo {

class ModelObject : public Napi::ObjectWrap<ModelObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  // loadModel(options): Promise<Model>
  static Napi::Value Load(const Napi::CallbackInfo& info);

  explicit ModelObject(const Napi::CallbackInfo& info);

  // The model behind a JS value; throws when the object was disposed.
  std::shared_ptr<Qwen2> model(Napi::Env env) const;

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value OrthoLossGrad(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value OrthoBlock(const Napi::CallbackInfo& info);
  Napi::Value TrainBlock(const Napi::CallbackInfo& info);
  Napi::Value SliceMean(const Napi::CallbackInfo& info);
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // Shared with running jobs, so dispose() during a job frees the weights when it ends.
  std::shared_ptr<Qwen2> model_;
};

}  // namespace melbo
