// The MELBO-ortho optimisation of one block of B vectors, all steps in C++.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>

#include "optimiser_loop.h"
#include "projection.h"
#include "qwen2.h"

namespace melbo {

struct OrthoRequest {
  torch::Tensor x;       // [T, d] float32: resid(source) of the unsteered prompt
  torch::Tensor theta0;  // [d] float32: the seed vector (defines the target z0)
  torch::Tensor starts;  // [B, d] float32: each row's start; undefined = theta0 for every row
  torch::Tensor basis;   // [m, d] float64, orthonormal: theta0's direction and all vectors found
  LoopSettings loop;  // steps, the slice, Adam's settings, abort; progress: mean and min loss
  // Every field below is read from the request (model_object.cpp); the defaults are the TypeScript
  // side's (src/search/defaults.ts), so these zeros are never used.
  int64_t rows = 0;  // B
  bool projectGradient = false;  // `grad` mode: also project the gradient before the Adam step
  InBlock inBlock = InBlock::GramSchmidt;  // how the rows are made orthogonal to each other
  bool projectGradientInBlock = false;     // project each row's gradient off the block rows that constrain it
  double lossTolerance = 0;  // > 0: a row stops once its loss is at or below this
  int64_t traceEvery = 0;  // > 0: record every row's loss at steps 1, 1+K, 1+2K, … (before the step)
};

struct OrthoResult {
  torch::Tensor thetas;  // [B, d] float32, orthogonal to the basis and to each other
  torch::Tensor losses;  // [B] float32: loss at the final thetas
  torch::Tensor steps;   // [B] int32: Adam steps each row took
  torch::Tensor trace;   // [points, B] float32 with traceEvery > 0: the loss each recorded step started from
};

OrthoResult orthoBlock(const Qwen2& model, const OrthoRequest& request);

}  // namespace melbo
