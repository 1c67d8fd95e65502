// The projection of MELBO-ortho: a block of B vectors is projected onto the orthogonal
// complement of an orthonormal basis, then orthogonalised within itself in row order
// (Gram–Schmidt: row j loses its components along rows 0..j-1). Computed in float64.
#pragma once
#include <torch/torch.h>

namespace melbo {

// rows [B, d] (any float dtype), basis [m, d] float64 orthonormal (m may be 0) -> [B, d] float64.
// Dispatches to the CUDA kernel when the tensors live on a GPU and melbo was built with CUDA.
torch::Tensor projectBlock(const torch::Tensor& rows, const torch::Tensor& basis);

// The CPU twin (and the reference for the CUDA kernel's tests): same maths with libtorch ops.
torch::Tensor projectBlockReference(const torch::Tensor& rows, const torch::Tensor& basis);

// Only the complement projection (no in-block step): used on gradients in `grad` mode.
torch::Tensor projectOutBasis(const torch::Tensor& rows, const torch::Tensor& basis);

bool projectionCudaBuilt();

}  // namespace melbo
