// Launches the CUDA projection on libtorch's current stream (built only with MELBO_CUDA).
#include <ATen/cuda/CUDAContext.h>
#include <torch/torch.h>

#include <stdexcept>
#include <string>

#include "../projection.h"

extern "C" int melboInBlockGramSchmidtF64(double* rows, double* units, int B, int d, void* stream);

namespace melbo {

torch::Tensor projectBlockCuda(const torch::Tensor& rows, const torch::Tensor& basis) {
  TORCH_CHECK(rows.is_cuda() && basis.device() == rows.device(), "projectBlockCuda: rows and basis must be on the same GPU");
  auto r = projectOutBasis(rows, basis).contiguous();  // [B, d] float64, cuBLAS GEMMs
  auto units = torch::empty_like(r);
  int status = melboInBlockGramSchmidtF64(r.data_ptr<double>(), units.data_ptr<double>(), static_cast<int>(r.size(0)),
                                          static_cast<int>(r.size(1)), at::cuda::getCurrentCUDAStream().stream());
  if (status != 0) throw std::runtime_error("projection kernel launch failed (CUDA error " + std::to_string(status) + ")");
  return r;
}

}  // namespace melbo
