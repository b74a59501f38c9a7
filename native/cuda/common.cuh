// Helpers shared by the CUDA kernels: launch geometry, warp and block reductions, overloaded
// device math for float/double, strided-offset geometry with compile-time indexing (no local
// memory), and a scratch buffer from the CUDA caching allocator. Everything here must compile
// under nvcc and under the emulator (g++ -DCUDA_EMU).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/compat.cuh"
#include "core/storage.h"

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

// Warp and block reductions, one implementation each, parameterised by the combining operation.
// Op::combine(v, w) folds the value w from another lane into v; Op::pad(scratch) is what lanes
// without a warp partial contribute in the second stage of a block reduction.
struct SumOp {
  template <typename T> __device__ __forceinline__ static T combine(T v, T w) { return v + w; }
  template <typename T> __device__ __forceinline__ static T pad(const T*) { return T(0); }
};
struct MaxOp {
  template <typename T> __device__ __forceinline__ static T combine(T v, T w) { return w > v ? w : v; }
  template <typename T> __device__ __forceinline__ static T pad(const T* scratch) { return scratch[0]; }
};

// ALL == false: tree reduction with __shfl_down_sync, lane 0 gets the result.
// ALL == true: xor butterfly, every lane gets the result.
template <bool ALL, typename Op, typename T>
__device__ __forceinline__ T warp_reduce(T v) {
  for (int o = 16; o > 0; o >>= 1)
    v = Op::combine(v, ALL ? __shfl_xor_sync(0xffffffffu, v, o) : __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) { return warp_reduce<false, SumOp>(v); }
template <typename T> __device__ __forceinline__ T warp_max(T v) { return warp_reduce<false, MaxOp>(v); }
template <typename T> __device__ __forceinline__ T warp_allsum(T v) { return warp_reduce<true, SumOp>(v); }
template <typename T> __device__ __forceinline__ T warp_allmax(T v) { return warp_reduce<true, MaxOp>(v); }

// Reduction over the whole block (blockDim.x a multiple of 32, at most 1024). Every thread gets
// the result. `scratch` is shared memory of at least 32 elements.
template <typename Op, typename T>
__device__ __forceinline__ T block_reduce(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_reduce<false, Op>(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int nwarps = (blockDim.x + 31) >> 5;
  T r = lane < nwarps ? scratch[lane] : Op::pad(scratch);
  if (warp == 0) r = warp_reduce<false, Op>(r);
  if (threadIdx.x == 0) scratch[0] = r;
  __syncthreads();
  r = scratch[0];
  __syncthreads();  // scratch may be reused right after
  return r;
}

template <typename T> __device__ __forceinline__ T block_sum(T v, T* scratch) { return block_reduce<SumOp>(v, scratch); }
template <typename T> __device__ __forceinline__ T block_max(T v, T* scratch) { return block_reduce<MaxOp>(v, scratch); }

// ---- device math, overloaded for float and double -------------------------------------------

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

// Throws on a failed launch (bad configuration, emulator diagnostics surface as exceptions).
inline void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw KernelError(std::string(what) + ": CUDA launch failed: " + cudaGetErrorString(e));
}

}  // namespace cu
}  // namespace sc

// ---- Strided geometry (added for the elementwise / reduce kernels) ---------------------------
// Shapes and per-operand strides travel to kernels by value in a small struct. Device code only
// indexes the arrays inside loops unrolled over kMaxDims, so every index is a compile-time
// constant (no local-memory copy of the parameter struct).
namespace sc {
namespace cu {

template <int N>
struct Geom {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t st[N][kMaxDims];
};

// Offsets of linear index i (row-major over g.shape) in each of the N operands.
template <int N>
__device__ __forceinline__ void geom_offsets(const Geom<N>& g, int64_t i, int64_t* off) {
  SC_UNROLL for (int k = 0; k < N; ++k) off[k] = 0;
  SC_UNROLL for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < g.ndim) {
      const int64_t s = g.shape[d];
      const int64_t q = i / s, r = i - q * s;
      SC_UNROLL for (int k = 0; k < N; ++k) off[k] += r * g.st[k][d];
      i = q;
    }
  }
}

// Builds the iteration geometry over `shape` (ndim dims) for N operands whose strides are given
// right-aligned to that shape (an operand with fewer dims is broadcast over the leading ones).
// Size-1 dimensions are dropped and dimensions contiguous in every operand are merged.
template <int N>
inline Geom<N> make_geom(int ndim, const int64_t* shape, const TArg* const* ops) {
  int64_t shp[kMaxDims];
  int64_t st[N][kMaxDims];
  int nd = 0;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    shp[nd] = shape[d];
    for (int k = 0; k < N; ++k) {
      const int dd = d + (ops[k]->ndim - ndim);
      st[k][nd] = dd >= 0 ? ops[k]->strides[dd] : 0;
    }
    ++nd;
  }
  Geom<N> g{};
  if (nd == 0) {
    g.ndim = 1;
    g.shape[0] = 1;
    for (int k = 0; k < N; ++k) g.st[k][0] = 0;
    return g;
  }
  g.ndim = 0;
  for (int d = 0; d < nd; ++d) {
    if (g.ndim > 0) {
      bool merge = true;
      for (int k = 0; k < N; ++k)
        if (g.st[k][g.ndim - 1] != st[k][d] * shp[d]) merge = false;
      if (merge) {
        g.shape[g.ndim - 1] *= shp[d];
        for (int k = 0; k < N; ++k) g.st[k][g.ndim - 1] = st[k][d];
        continue;
      }
    }
    g.shape[g.ndim] = shp[d];
    for (int k = 0; k < N; ++k) g.st[k][g.ndim] = st[k][d];
    ++g.ndim;
  }
  return g;
}

inline int64_t ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The NN-level kernels' name for the same geometry: offsets of N strided operands for element
// `idx` of a contiguous iteration shape (filled directly, without make_geom's dim merging).
template <int N>
using StridedPlan = Geom<N>;
template <int N>
__device__ __forceinline__ void strided_offsets(const StridedPlan<N>& p, int64_t idx, int64_t* off) {
  geom_offsets<N>(p, idx, off);
}

}  // namespace cu
}  // namespace sc
