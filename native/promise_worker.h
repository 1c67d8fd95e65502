// Runs a computation on libuv's thread pool and settles a Promise with its result.
// Nothing in `compute` may touch a Napi value; `convert` runs back on the JS thread.
#pragma once
#include <napi.h>
#include <c10/util/Exception.h>
#include <ATen/Parallel.h>

#include <functional>
#include <optional>
#include <string>

namespace melbo {

// Thread count chosen by the user; applied at the start of every job because OpenMP keeps
// the setting per calling thread and jobs run on libuv's threads.
int configuredThreads();
void setConfiguredThreads(int n);

template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Compute = std::function<Result()>;
  using Convert = std::function<Napi::Value(Napi::Env, Result&)>;

  static Napi::Promise Start(Napi::Env env, Compute compute, Convert convert) {
    auto* worker = new PromiseWorker(env, std::move(compute), std::move(convert));
    auto promise = worker->deferred_.Promise();
    worker->Queue();  // the worker deletes itself after OnOK / OnError
    return promise;
  }

 protected:
  void Execute() override {
    try {
      at::set_num_threads(configuredThreads());
      result_.emplace(compute_());
    } catch (const c10::Error& e) {
      SetError(e.what_without_backtrace());
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    try {
      deferred_.Resolve(convert_(Env(), *result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(Env(), e.what()).Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  PromiseWorker(Napi::Env env, Compute compute, Convert convert)
      : Napi::AsyncWorker(env, "melbo"),
        deferred_(Napi::Promise::Deferred::New(env)),
        compute_(std::move(compute)),
        convert_(std::move(convert)) {}

  Napi::Promise::Deferred deferred_;
  Compute compute_;
  Convert convert_;
  std::optional<Result> result_;
};

}  // namespace melbo
