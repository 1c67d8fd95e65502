// The projection of MELBO-ortho: a block of B vectors is projected onto the orthogonal
// complement of an orthonormal basis, then orthogonalised within itself. Computed in float64.
// How the rows of a block are made orthogonal to each other (docs/algorithm.md, block mode):
//   GramSchmidt         row j loses its components along rows 0..j-1 (index order)
//   FirstThenSymmetric  row 0 is kept as it is; rows 1..B-1 lose their component along row 0,
//                       then are orthogonalised symmetrically among themselves (Löwdin), so
//                       none of them is favoured by its index
//   Symmetric           all B rows symmetrically (Löwdin)
// Row 0 is only projected onto the complement in the first two modes, so row 0 of any block
// follows the sequential algorithm exactly. Symmetric steps keep every row's norm.
#pragma once
#include <torch/torch.h>

#include <string>

namespace melbo {

enum class InBlock { GramSchmidt, FirstThenSymmetric, Symmetric };

// "gram-schmidt" | "first-then-symmetric" | "symmetric"; anything else throws std::invalid_argument.
InBlock inBlockFromName(const std::string& name);

// rows [B, d] (any float dtype), basis [m, d] float64 orthonormal (m may be 0) -> [B, d] float64.
// Gram–Schmidt dispatches to the CUDA kernel when the tensors live on a GPU and melbo was built
// with CUDA; the symmetric modes use libtorch ops on any device.
torch::Tensor projectBlock(const torch::Tensor& rows, const torch::Tensor& basis, InBlock mode = InBlock::GramSchmidt);

// Löwdin orthogonalisation of rows [k, d] float64 with norms kept: directions N = rows / norms,
// N' = (N Nᵀ)^(-1/2) N (the orthonormal set closest to N), result norms ⊙ N'. Rows of norm 0
// stay 0 and take no part.
torch::Tensor symmetricOrthogonalise(const torch::Tensor& rows);

// The CPU twin (and the reference for the CUDA kernel's tests): same maths with libtorch ops.
torch::Tensor projectBlockReference(const torch::Tensor& rows, const torch::Tensor& basis);

// Only the complement projection (no in-block step): used on gradients in `grad` mode.
torch::Tensor projectOutBasis(const torch::Tensor& rows, const torch::Tensor& basis);

// `grad` mode inside a block: each row's gradient loses its components along the directions of
// the rows that constrain it, as the basis constrains every row (rows [B, d] mutually orthogonal,
// as the projection above leaves them; grads [B, d] float64). Who constrains row j follows the
// in-block mode: rows 0..j-1 (GramSchmidt), every other row (Symmetric), every other row for
// j > 0 and none for row 0 (FirstThenSymmetric). Row 0 is untouched in the first two modes.
torch::Tensor projectGradientInBlock(const torch::Tensor& grads, const torch::Tensor& rows, InBlock mode);

bool projectionCudaBuilt();

}  // namespace melbo
