#include "projection.h"

#include <stdexcept>

namespace melbo {

#ifdef MELBO_WITH_CUDA
torch::Tensor projectBlockCuda(const torch::Tensor& rows, const torch::Tensor& basis);  // cuda/projection_launch.cpp
bool projectionCudaBuilt() { return true; }
#else
bool projectionCudaBuilt() { return false; }
#endif

torch::Tensor projectOutBasis(const torch::Tensor& rows, const torch::Tensor& basis) {
  auto r = rows.to(torch::kDouble);  // [B, d]
  if (basis.size(0) == 0) return r;
  return r - r.matmul(basis.t()).matmul(basis);  // r - (r Q^T) Q
}

torch::Tensor projectBlockReference(const torch::Tensor& rows, const torch::Tensor& basis) {
  auto r = projectOutBasis(rows, basis).contiguous();  // [B, d] float64
  const int64_t B = r.size(0);
  // unit[i] = row i / ||row i|| once row i is final; a row that vanished exactly spans nothing.
  auto unit = torch::zeros_like(r);
  for (int64_t j = 0; j < B; ++j) {
    auto row = r[j];
    if (j > 0) {
      auto previous = unit.narrow(0, 0, j);                  // [j, d], orthonormal (or zero) rows
      row.sub_(previous.t().matmul(previous.matmul(row)));  // row -= sum_i (row . u_i) u_i
    }
    double norm = row.norm().item<double>();
    if (norm > 0) unit[j].copy_(row / norm);
  }
  return r;
}

InBlock inBlockFromName(const std::string& name) {
  if (name == "gram-schmidt") return InBlock::GramSchmidt;
  if (name == "first-then-symmetric") return InBlock::FirstThenSymmetric;
  if (name == "symmetric") return InBlock::Symmetric;
  throw std::invalid_argument("option 'inBlock' must be 'gram-schmidt', 'first-then-symmetric' or 'symmetric', got '" + name + "'");
}

torch::Tensor symmetricOrthogonalise(const torch::Tensor& rows) {
  auto norms = rows.norm(2, {1});                        // [k]
  auto live = torch::nonzero(norms > 0).squeeze(1);      // indices of rows with a direction
  if (live.numel() < 2) return rows.clone();
  auto n = norms.index_select(0, live).unsqueeze(1);     // [l, 1]
  auto unit = rows.index_select(0, live) / n;            // [l, d]
  auto gram = unit.matmul(unit.t());                     // [l, l], symmetric positive semi-definite
  auto [lambda, vecs] = torch::linalg::eigh(gram, "L");  // gram = V diag(lambda) Vᵀ
  // Clamped so that (numerically) parallel rows cannot divide by zero; such rows are then only
  // approximately orthogonal, and one Gram–Schmidt pass below makes them exactly so.
  auto inverseRoot = vecs.matmul(torch::diag(lambda.clamp_min(1e-24).rsqrt())).matmul(vecs.t());  // [l, l]
  auto orthonormal = inverseRoot.matmul(unit);                                                       // [l, d]
  // Clean-up pass: a no-op to rounding when the Gram matrix is well conditioned.
  const int64_t l = orthonormal.size(0);
  for (int64_t j = 1; j < l; ++j) {
    auto row = orthonormal[j];
    auto previous = orthonormal.narrow(0, 0, j);
    row.sub_(previous.t().matmul(previous.matmul(row)));
    row.div_(row.norm().clamp_min(1e-300));
  }
  auto out = torch::zeros_like(rows);
  out.index_copy_(0, live, orthonormal * n);
  return out;
}

torch::Tensor projectGradientInBlock(const torch::Tensor& grads, const torch::Tensor& rows, InBlock mode) {
  const int64_t B = rows.size(0);
  if (B < 2) return grads;
  auto r = rows.to(torch::kDouble);
  auto norms = r.norm(2, {1}, /*keepdim=*/true);                       // [B, 1]
  auto units = torch::where(norms > 0, r / norms.clamp_min(1e-300), torch::zeros_like(r));  // [B, d]
  auto coefficients = grads.matmul(units.t());                           // [B, B]: (g_j . u_i)
  auto opts = coefficients.options().dtype(torch::kBool);
  torch::Tensor constrains;                                              // [B, B]: row i constrains row j
  if (mode == InBlock::GramSchmidt) {
    constrains = torch::ones({B, B}, opts).tril(-1);
  } else {
    constrains = ~torch::eye(B, opts);
    if (mode == InBlock::FirstThenSymmetric) constrains[0].fill_(false);
  }
  return grads - coefficients.masked_fill(~constrains, 0).matmul(units);  // g_j -= sum_i (g_j . u_i) u_i
}

torch::Tensor projectBlock(const torch::Tensor& rows, const torch::Tensor& basis, InBlock mode) {
  if (basis.dim() != 2 || rows.dim() != 2 || (basis.size(0) > 0 && basis.size(1) != rows.size(1))) {
    throw std::runtime_error("projectBlock: rows [B, d] and basis [m, d] must have the same d");
  }
  if (basis.scalar_type() != torch::kDouble) throw std::runtime_error("projectBlock: the basis must be float64");
  if (mode == InBlock::Symmetric) return symmetricOrthogonalise(projectOutBasis(rows, basis));
  if (mode == InBlock::FirstThenSymmetric) {
    auto r = projectOutBasis(rows, basis);  // [B, d] float64
    if (r.size(0) < 2) return r;
    auto first = r.narrow(0, 0, 1);                 // [1, d]: follows the sequential algorithm
    auto rest = r.narrow(0, 1, r.size(0) - 1);      // [B-1, d]
    const double firstNorm = first.norm().item<double>();
    if (firstNorm > 0) rest = projectOutBasis(rest, first / firstNorm);  // rest -= (rest . u) u
    return torch::cat({first, symmetricOrthogonalise(rest)}, 0);
  }
#ifdef MELBO_WITH_CUDA
  if (rows.is_cuda()) return projectBlockCuda(rows, basis);
#endif
  return projectBlockReference(rows, basis);
}

}  // namespace melbo
