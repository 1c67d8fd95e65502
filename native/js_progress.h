// Progress events and abort checks shared by the native loops' JS methods.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace melbo {

using ProgressFields = std::vector<std::pair<std::string, double>>;

// Calls a JS function from a worker thread with {name: value, ...} events. Empty (report is a
// no-op) when no function was given. The job must call release() when it ends, however it
// ends, or the process cannot exit: hold a ReleaseOnExit in the worker.
class ProgressChannel {
 public:
  ProgressChannel() = default;
  ProgressChannel(Napi::Env env, const Napi::Value& callback, const char* name);
  void report(ProgressFields fields) const;
  void release() const;
  bool active() const { return static_cast<bool>(tsfn_); }

 private:
  std::shared_ptr<Napi::ThreadSafeFunction> tsfn_;
};

struct ReleaseOnExit {
  ProgressChannel channel;
  ~ReleaseOnExit() { channel.release(); }
};

// The abort check of option `abort` (an AbortFlag), or an empty function.
std::function<bool()> abortCheck(const Napi::Object& options);

}  // namespace melbo
