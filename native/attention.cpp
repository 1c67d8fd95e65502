#include "attention.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#define MELBO_ATTENTION_X86 1
#include "x86_avx2.h"
#endif

namespace melbo {

#ifndef MELBO_ATTENTION_X86

bool fusedAttentionApplies(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) { return false; }
torch::Tensor fusedCausalAttention(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
  throw std::runtime_error("fusedCausalAttention: not built for this CPU");
}

#else

namespace {

bool disabledByEnv() {
  const char* env = std::getenv("MELBO_ATTENTION");
  return env != nullptr && std::string(env) == "torch";
}

#pragma GCC push_options
#pragma GCC target("avx2,fma")

// Σ a[i] b[i], n a multiple of 8; always the same summation order (deterministic).
inline float dot(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  if (i < n) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  return horizontalSum(_mm256_add_ps(acc0, acc1));
}

// y += alpha x, n a multiple of 8.
inline void axpy(float* y, float alpha, const float* x, int64_t n) {
  const __m256 a = _mm256_set1_ps(alpha);
  for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
}

// One (batch row, query head): P [T, Tk] (row i: softmax over keys 0..past+i, zeros after) and
// O [T, hd] = P V, with Tk = past + T keys (past > 0: cached keys of earlier positions). q and o
// point at [T, hd] matrices, k and v at [Tk, hd].
void forwardHead(const float* q, const float* k, const float* v, float* p, float* o, int64_t T, int64_t Tk, int64_t hd,
                 float scale) {
  const int64_t past = Tk - T;
  for (int64_t i = 0; i < T; ++i) {
    float* pi = p + i * Tk;
    const int64_t last = past + i;  // the last key query i sees
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j <= last; ++j) {
      pi[j] = dot(q + i * hd, k + j * hd, hd) * scale;
      mx = std::max(mx, pi[j]);
    }
    float sum = 0;
    for (int64_t j = 0; j <= last; ++j) {
      pi[j] = std::exp(pi[j] - mx);
      sum += pi[j];
    }
    for (int64_t j = 0; j <= last; ++j) pi[j] /= sum;
    for (int64_t j = last + 1; j < Tk; ++j) pi[j] = 0;
    float* oi = o + i * hd;
    std::memset(oi, 0, sizeof(float) * hd);
    for (int64_t j = 0; j <= last; ++j) axpy(oi, pi[j], v + j * hd, hd);
  }
}

// One (batch row, query head) of the backward: dQ of this head, and its contributions to dK and
// dV of the kv head it reads (accumulated: the caller owns that kv head for the whole group).
// dS = P ⊙ (dP − rowsum(P ⊙ dP)) with dP = dO Vᵀ; dQ = scale dS KV; dK += scale dSᵀ Q; dV += Pᵀ dO.
// `dsi` is scratch for one row of scale · dS: [Tk].
void backwardHead(const float* q, const float* k, const float* v, const float* p, const float* dout, float* dq, float* dk,
                  float* dv, float* dsi, int64_t T, int64_t Tk, int64_t hd, float scale) {
  const int64_t past = Tk - T;
  for (int64_t i = 0; i < T; ++i) {
    const float* pi = p + i * Tk;
    const float* doi = dout + i * hd;
    const int64_t last = past + i;
    float rowsum = 0;
    for (int64_t j = 0; j <= last; ++j) {
      dsi[j] = dot(doi, v + j * hd, hd);  // dP[i][j]
      rowsum += pi[j] * dsi[j];
    }
    for (int64_t j = 0; j <= last; ++j) dsi[j] = pi[j] * (dsi[j] - rowsum) * scale;
    float* dqi = dq + i * hd;
    std::memset(dqi, 0, sizeof(float) * hd);
    for (int64_t j = 0; j <= last; ++j) {
      axpy(dqi, dsi[j], k + j * hd, hd);
      axpy(dk + j * hd, dsi[j], q + i * hd, hd);
      axpy(dv + j * hd, pi[j], doi, hd);
    }
  }
}

#pragma GCC pop_options

struct FusedAttention : public torch::autograd::Function<FusedAttention> {
  // q [B, H, T, hd], k and v [B, KV, Tk, hd] (Tk = past + T), all contiguous float32.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v) {
    RECORD_FUNCTION("melbo::attention", std::vector<c10::IValue>());
    const int64_t B = q.size(0), H = q.size(1), T = q.size(2), hd = q.size(3), KV = k.size(1), Tk = k.size(2), group = H / KV;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    auto out = torch::empty_like(q);                       // [B, H, T, hd]
    auto probs = torch::empty({B, H, T, Tk}, q.options());  // [B, H, T, Tk]
    const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
    float *op = out.data_ptr<float>(), *pp = probs.data_ptr<float>();
    at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t b = bh / H, h = bh % H, kv = b * KV + h / group;
        forwardHead(qp + bh * T * hd, kp + kv * Tk * hd, vp + kv * Tk * hd, pp + bh * T * Tk, op + bh * T * hd, T, Tk, hd, scale);
      }
    });
    ctx->save_for_backward({q, k, v, probs});  // dropped with the graph (at once when nothing needs a gradient)
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    RECORD_FUNCTION("melbo::attention_backward", std::vector<c10::IValue>());
    auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &probs = saved[3];
    auto dout = grads[0].contiguous();  // [B, H, T, hd]
    const int64_t B = q.size(0), H = q.size(1), T = q.size(2), hd = q.size(3), KV = k.size(1), Tk = k.size(2), group = H / KV;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    auto dq = torch::empty_like(q);
    auto dk = torch::zeros_like(k);
    auto dv = torch::zeros_like(v);
    const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>(), *pp = probs.data_ptr<float>(),
                *gp = dout.data_ptr<float>();
    float *dqp = dq.data_ptr<float>(), *dkp = dk.data_ptr<float>(), *dvp = dv.data_ptr<float>();
    // One task per (batch row, kv head): it owns that head's dK and dV, so no two threads write
    // the same memory, and the query heads of a group are always added in the same order.
    at::parallel_for(0, B * KV, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> ds(static_cast<size_t>(Tk));  // one row at a time
      for (int64_t bk = begin; bk < end; ++bk) {
        const int64_t b = bk / KV, kvh = bk % KV;
        for (int64_t g = 0; g < group; ++g) {
          const int64_t bh = b * H + kvh * group + g;
          backwardHead(qp + bh * T * hd, kp + bk * Tk * hd, vp + bk * Tk * hd, pp + bh * T * Tk, gp + bh * T * hd, dqp + bh * T * hd,
                       dkp + bk * Tk * hd, dvp + bk * Tk * hd, ds.data(), T, Tk, hd, scale);
        }
      }
    });
    return {dq, dk, dv};
  }
};

}  // namespace

bool fusedAttentionApplies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  if (!cpuHasAvx2Fma() || disabledByEnv()) return false;
  for (const auto* t : {&q, &k, &v}) {
    if (!t->is_cpu() || t->scalar_type() != torch::kFloat || t->dim() != 4) return false;
  }
  const int64_t H = q.size(1), KV = k.size(1);
  return q.size(3) % 8 == 0 && KV > 0 && H % KV == 0 && k.sizes() == v.sizes() && k.size(0) == q.size(0) &&
         k.size(2) >= q.size(2) && k.size(3) == q.size(3);
}

torch::Tensor fusedCausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return FusedAttention::apply(q.contiguous(), k.contiguous(), v.contiguous());
}

#endif

}  // namespace melbo
