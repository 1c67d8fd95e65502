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

torch::Tensor projectBlock(const torch::Tensor& rows, const torch::Tensor& basis) {
  if (basis.dim() != 2 || rows.dim() != 2 || (basis.size(0) > 0 && basis.size(1) != rows.size(1))) {
    throw std::runtime_error("projectBlock: rows [B, d] and basis [m, d] must have the same d");
  }
  if (basis.scalar_type() != torch::kDouble) throw std::runtime_error("projectBlock: the basis must be float64");
#ifdef MELBO_WITH_CUDA
  if (rows.is_cuda()) return projectBlockCuda(rows, basis);
#endif
  return projectBlockReference(rows, basis);
}

}  // namespace melbo
