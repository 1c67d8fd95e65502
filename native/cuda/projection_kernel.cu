// CUDA kernel of the MELBO-ortho projection's in-block step (float64): one thread block
// orthogonalises the B rows of a block in row order. The complement projection before it is
// two GEMMs (cuBLAS through libtorch) in projection_launch.cpp. Plain CUDA, no torch headers,
// so `nvcc -c` compiles this file on any machine with the CUDA toolkit.
#include <cuda_runtime.h>

namespace {

constexpr int kThreads = 256;

// Sum of `value` over the thread block; every thread gets the result.
__device__ double blockSum(double value, double* scratch) {
  for (int offset = warpSize / 2; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  const int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  const int warps = (blockDim.x + warpSize - 1) / warpSize;
  value = threadIdx.x < warps ? scratch[threadIdx.x] : 0.0;
  if (warp == 0) {
    for (int offset = warpSize / 2; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
    if (lane == 0) scratch[0] = value;
  }
  __syncthreads();
  const double total = scratch[0];
  __syncthreads();
  return total;
}

// rows [B, d] row-major, modified in place; units [B, d] scratch for the normalised rows.
__global__ void inBlockGramSchmidt(double* rows, double* units, int B, int d) {
  __shared__ double scratch[32];
  for (int j = 0; j < B; ++j) {
    double* row = rows + static_cast<size_t>(j) * d;
    // Modified Gram–Schmidt against the finished rows' unit vectors. The CPU twin subtracts all
    // coefficients at once (classical); against orthonormal units the two agree up to rounding.
    for (int i = 0; i < j; ++i) {
      const double* u = units + static_cast<size_t>(i) * d;
      double partial = 0;
      for (int k = threadIdx.x; k < d; k += blockDim.x) partial += row[k] * u[k];
      const double c = blockSum(partial, scratch);
      for (int k = threadIdx.x; k < d; k += blockDim.x) row[k] -= c * u[k];
      __syncthreads();
    }
    double partial = 0;
    for (int k = threadIdx.x; k < d; k += blockDim.x) partial += row[k] * row[k];
    const double norm = sqrt(blockSum(partial, scratch));
    double* unit = units + static_cast<size_t>(j) * d;
    for (int k = threadIdx.x; k < d; k += blockDim.x) unit[k] = norm > 0 ? row[k] / norm : 0.0;
    __syncthreads();
  }
}

}  // namespace

// Host entry (C linkage so the C++ launcher needs no CUDA headers). Returns a cudaError_t.
extern "C" int melboInBlockGramSchmidtF64(double* rows, double* units, int B, int d, void* stream) {
  inBlockGramSchmidt<<<1, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(rows, units, B, d);
  return static_cast<int>(cudaGetLastError());
}
