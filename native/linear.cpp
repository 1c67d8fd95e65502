#include "linear.h"

#include "skinny.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

namespace melbo {

namespace {

// Widened weights are made in row chunks of at most this many elements (64 MiB in float32):
// every block weight of a 1.8B model fits in one chunk; an lm_head takes several.
constexpr int64_t kWidenChunk = int64_t{1} << 24;

int64_t widenChunkRows(const torch::Tensor& w) {
  return std::max<int64_t>(1, kWidenChunk / std::max<int64_t>(1, w.size(1)));
}

// Rows r0 .. r0+n-1 of the bf16 weight w [out, in] as float32 [n, in], in this thread's buffer
// (valid until the next call on this thread). A fresh 45 MB allocation per call would cost
// page faults every time; the buffer is written with a plain vectorised copy.
torch::Tensor widenRows(const torch::Tensor& w, int64_t r0, int64_t n) {
  RECORD_FUNCTION("melbo::widen_bf16", std::vector<c10::IValue>());  // named in profiles
  thread_local torch::Tensor buffer;
  const int64_t numel = n * w.size(1);
  if (!buffer.defined() || buffer.numel() < numel) buffer = torch::empty({numel}, torch::TensorOptions().dtype(torch::kFloat));
  auto out = buffer.narrow(0, 0, numel).view({n, w.size(1)});  // [n, in]
  out.copy_(w.narrow(0, r0, n));
  return out;
}

// x [..., in] float32 @ w [out, in]^T -> [..., out], w bf16 widened chunk by chunk.
torch::Tensor widenedForward(const torch::Tensor& x, const torch::Tensor& w) {
  auto x2 = x.reshape({-1, x.size(-1)});  // [N, in]
  const int64_t out = w.size(0), rows = widenChunkRows(w);
  torch::Tensor y;
  if (rows >= out) {
    y = torch::mm(x2, widenRows(w, 0, out).t());  // [N, out]
  } else {
    y = torch::empty({x2.size(0), out}, x2.options());
    for (int64_t r = 0; r < out; r += rows) {
      const int64_t n = std::min(rows, out - r);
      y.narrow(1, r, n).copy_(torch::mm(x2, widenRows(w, r, n).t()));
    }
  }
  auto sizes = x.sizes().vec();
  sizes.back() = out;
  return y.view(sizes);
}

// The input gradient of widenedForward: gy [..., out] @ w [out, in] -> [..., in].
torch::Tensor widenedBackward(const torch::Tensor& gy, const torch::Tensor& w) {
  auto g2 = gy.reshape({-1, gy.size(-1)});  // [N, out]
  const int64_t out = w.size(0), rows = widenChunkRows(w);
  torch::Tensor gx;
  for (int64_t r = 0; r < out; r += rows) {
    const int64_t n = std::min(rows, out - r);
    auto part = g2.narrow(1, r, n);  // [N, n]
    if (!gx.defined()) gx = torch::mm(part, widenRows(w, r, n));  // [N, in]
    else gx.addmm_(part, widenRows(w, r, n));
  }
  auto sizes = gy.sizes().vec();
  sizes.back() = w.size(1);
  return gx.view(sizes);
}

// Autograd node of a bf16-weight linear: saves the bf16 weight, widens it again for backward.
struct WidenedLinear : public torch::autograd::Function<WidenedLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    ctx->save_for_backward({w});
    return widenedForward(x, w);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto w = ctx->get_saved_variables()[0];
    return {widenedBackward(grads[0], w), torch::Tensor()};
  }
};

// Autograd node of a few-row linear on the skinny kernels (skinny.h): saves the weight as stored.
struct SkinnyLinear : public torch::autograd::Function<SkinnyLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    ctx->save_for_backward({w});
    auto sizes = x.sizes().vec();
    sizes.back() = w.size(0);
    return skinnyForward(x.reshape({-1, x.size(-1)}), w).view(sizes);  // [..., out]
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto w = ctx->get_saved_variables()[0];
    const auto& g = grads[0];  // [..., out]
    auto sizes = g.sizes().vec();
    sizes.back() = w.size(1);
    return {skinnyBackward(g.reshape({-1, g.size(-1)}).contiguous(), w).view(sizes), torch::Tensor()};
  }
};

}  // namespace

ProductPath productPath(torch::ScalarType activations, torch::Device device, const torch::Tensor& w, int64_t rows) {
  if (!w.requires_grad() && skinnyAppliesTo(activations, device, w, rows)) return ProductPath::Skinny;
  if (w.scalar_type() == activations) return ProductPath::Blas;
  if (w.scalar_type() == torch::kBFloat16 && activations == torch::kFloat && !w.requires_grad() && w.device().is_cpu()) return ProductPath::Widened;
  return ProductPath::Converted;
}

std::string productPathName(ProductPath path, torch::ScalarType activations, torch::Device device, const torch::Tensor& w) {
  const std::string weights = w.scalar_type() == torch::kBFloat16 ? "bf16" : w.scalar_type() == torch::kFloat ? "f32" : "other";
  const std::string acts = activations == torch::kBFloat16 ? "bf16" : "f32";
  if (!device.is_cpu()) return device.str() + " " + acts + (weights == acts ? "" : " (" + weights + " weights converted)");
  switch (path) {
    case ProductPath::Skinny:
      return (acts == "bf16" ? "skinny-avx512bf16 (" : "skinny-avx2 (") + weights + " weights read in place)";
    case ProductPath::Blas:
      if (acts == "f32") return "blas f32";
      return cpuHasFastBf16() ? "onednn bf16" : "scalar bf16 (slow)";
    case ProductPath::Widened: return "widened bf16 -> f32, blas f32";
    case ProductPath::Converted: return "converted to " + acts + ", torch::linear";
  }
  return "unknown";
}

torch::Tensor mixedLinear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  const int64_t rows = w.dim() == 2 && x.size(-1) == w.size(1) ? x.numel() / w.size(1) : 0;
  const auto path = productPath(x.scalar_type(), x.device(), w, rows);
  if (path == ProductPath::Skinny) {  // few rows: no BLAS repacking of the weight
    const bool grad = torch::GradMode::is_enabled() && x.requires_grad();
    torch::Tensor y;
    if (grad) {
      y = SkinnyLinear::apply(x, w);
    } else {
      auto sizes = x.sizes().vec();
      sizes.back() = w.size(0);
      y = skinnyForward(x.reshape({-1, x.size(-1)}), w).view(sizes);
    }
    if (b.defined()) y = y + b.to(y.scalar_type());
    return y;
  }
  if (path == ProductPath::Blas) return torch::linear(x, w, b);
  if (path == ProductPath::Converted) return torch::linear(x, w.to(x.scalar_type()), b.defined() ? b.to(x.scalar_type()) : b);
  auto y = (torch::GradMode::is_enabled() && x.requires_grad()) ? WidenedLinear::apply(x, w) : widenedForward(x, w);
  if (b.defined()) y = y + b.to(torch::kFloat);
  return y;
}

torch::ScalarType chooseActivationDtype(torch::ScalarType weights, torch::Device device) {
  if (weights != torch::kBFloat16) return weights;
  if (const char* env = std::getenv("MELBO_BF16_MATMUL")) {
    const std::string v(env);
    if (v == "bf16") return torch::kBFloat16;
    if (v == "f32") return torch::kFloat;
  }
  if (!device.is_cpu()) return torch::kBFloat16;  // GPUs multiply bf16 natively
  return cpuHasFastBf16() ? torch::kBFloat16 : torch::kFloat;
}

bool cpuHasFastBf16() {
#if defined(__x86_64__) || defined(__i386__)
  // libtorch (1.13 and 2.x) sends bf16 matrix products to oneDNN only when the CPU has AVX-512
  // BW, VL and DQ (its mkldnn_bf16_device_check); otherwise they run in a scalar loop.
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return true;
#endif
}

}  // namespace melbo
