// MELBO_PROFILE=FILE: a per-op trace (chrome://tracing JSON) of a loop's steps 2..T, written
// when the loop ends. For benchmarks (bench/run.ts reads it); off by default. It uses libtorch's
// legacy profiler, which 1.13 and 2.x both ship; a libtorch without it records nothing.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define MELBO_LEGACY_PROFILER 1
#endif

namespace melbo {

class StepProfile {
 public:
  // Called before every step: the trace starts at step 2 (step 1 pays first-touch costs).
  void beforeStep(int64_t step) {
#ifdef MELBO_LEGACY_PROFILER
    const char* path = std::getenv("MELBO_PROFILE");
    if (step == 2 && path && *path) profile_ = std::make_unique<torch::autograd::profiler::RecordProfile>(std::string(path));
#else
    (void)step;
#endif
  }
  // Writes the trace (when one was recorded).
  void finish() {
#ifdef MELBO_LEGACY_PROFILER
    profile_.reset();
#endif
  }

 private:
#ifdef MELBO_LEGACY_PROFILER
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profile_;
#endif
};

}  // namespace melbo
