// Helpers for the NN-level CUDA kernels (optimisers, attention, T-PEN, losses, pooling, norms...):
// overloaded device math for float/double, warp all-reductions (xor butterflies: every lane gets
// the result), strided-offset plans with compile-time indexing (no local memory), and a scratch
// buffer from the CUDA caching allocator. Builds under nvcc and the emulator (g++ -DCUDA_EMU).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/common.cuh"
#include "core/storage.h"

namespace sc {
namespace cu {

__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }
__device__ __forceinline__ float d_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double d_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float d_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double d_abs(double x) { return fabs(x); }
__device__ __forceinline__ float d_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double d_pow(double x, double y) { return pow(x, y); }
template <typename T> __device__ __forceinline__ T d_max(T a, T b) { return a < b ? b : a; }
template <typename T> __device__ __forceinline__ T d_min(T a, T b) { return b < a ? b : a; }
template <typename T> __device__ __forceinline__ T d_inf() { return T(1) / T(0); }

template <typename T>
__device__ __forceinline__ T warp_allsum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename T>
__device__ __forceinline__ T warp_allmax(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    const T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Offsets of N strided operands for element `idx` of a contiguous iteration shape. Dimensions are
// walked with compile-time indices (SC_UNROLL + guard) so nvcc never copies the parameter arrays
// to local memory.
template <int N>
struct StridedPlan {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t st[N][kMaxDims];
};
template <int N>
__device__ __forceinline__ void strided_offsets(const StridedPlan<N>& p, int64_t idx, int64_t* off) {
  SC_UNROLL for (int k = 0; k < N; ++k) off[k] = 0;
  SC_UNROLL for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < p.ndim) {
      const int64_t c = idx % p.shape[d];
      idx /= p.shape[d];
      SC_UNROLL for (int k = 0; k < N; ++k) off[k] += c * p.st[k][d];
    }
  }
}

// Temporary device memory from the backend's caching allocator (stream-ordered reuse is safe:
// every kernel runs on the default stream).
struct Scratch {
  void* p = nullptr;
  size_t block = 0;
  explicit Scratch(size_t bytes) { p = allocator(Backend::cuda).alloc(bytes ? bytes : 16, &block); }
  ~Scratch() { allocator(Backend::cuda).free(p, block); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(p); }
};

constexpr size_t kSmemLimit = 48 * 1024;

}  // namespace cu
}  // namespace sc
