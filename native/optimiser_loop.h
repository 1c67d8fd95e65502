// What the two native optimiser loops (ortho.cpp, melbo_train.cpp) share: the slice and Adam's
// settings (NativeLoopFields on the TypeScript side), the abort check before every step and the
// progress cadence.
#pragma once
#include <cstdint>
#include <functional>
#include <stdexcept>

namespace melbo {

// Thrown by a loop when the caller asked it to stop; the addon turns it into an AbortError.
struct Aborted : std::runtime_error {
  Aborted() : std::runtime_error("aborted") {}
};

// A loop's report at the end of a step: two statistics over its rows (ortho: mean and minimum
// loss; train: mean and maximum objective before the step).
struct LoopProgress {
  int64_t step = 0, steps = 0;
  double mean = 0, extreme = 0;
};

struct LoopSettings {
  // Every field is read from the request (model_object.cpp parseLoop); the defaults are the
  // TypeScript side's (src/search/defaults.ts), so these zeros are never used.
  int64_t steps = 0;
  int64_t source = 0, target = 0;  // the slice: steering added at the output of `source`, read at `target`
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0;
  int64_t progressEvery = 1;
  std::function<bool()> aborted;                   // may be empty
  std::function<void(const LoopProgress&)> progress;  // may be empty

  // Called before every step: throws Aborted once the caller has asked to stop.
  void checkAbort() const {
    if (aborted && aborted()) throw Aborted();
  }
  // Whether step `step` (1-based) reports progress: every progressEvery steps, and the last.
  bool reportsAt(int64_t step) const { return progress && (step % progressEvery == 0 || step == steps); }
};

}  // namespace melbo
