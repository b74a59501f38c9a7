// Helpers shared by the CUDA kernels: launch geometry, warp and block reductions, dtype
// dispatch. Everything here must compile under nvcc and under the emulator (g++ -DCUDA_EMU).
#pragma once
#include <algorithm>
#include <cstdint>

#include "cuda/compat.cuh"

namespace sc {
namespace cu {

constexpr int kThreads = 256;

// Enough blocks for n elements with a grid-stride loop, capped so tiny launches stay cheap in
// the emulator and huge ones do not oversubscribe.
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(b, 4096)));
}

#define SC_GRID_STRIDE(i, n) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    const T w = __shfl_down_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024). Every thread gets the
// result. `scratch` is shared memory of at least 32 elements.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int nwarps = (blockDim.x + 31) >> 5;
  T r = lane < nwarps ? scratch[lane] : T(0);
  if (warp == 0) r = warp_sum(r);
  if (threadIdx.x == 0) scratch[0] = r;
  __syncthreads();
  r = scratch[0];
  __syncthreads();  // scratch may be reused right after
  return r;
}

template <typename T>
__device__ __forceinline__ T block_max(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int nwarps = (blockDim.x + 31) >> 5;
  T r = lane < nwarps ? scratch[lane] : scratch[0];
  if (warp == 0) r = warp_max(r);
  if (threadIdx.x == 0) scratch[0] = r;
  __syncthreads();
  r = scratch[0];
  __syncthreads();
  return r;
}

// Throws on a failed launch (bad configuration, emulator diagnostics surface as exceptions).
inline void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw KernelError(std::string(what) + ": CUDA launch failed: " + cudaGetErrorString(e));
}

}  // namespace cu
}  // namespace sc
