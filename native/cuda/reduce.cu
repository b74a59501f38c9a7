// Reductions, softmax and softmax backward for the CUDA backend, mirroring
// native/kernels/reduce.cc.
//
// reduce: the input's dims are split on the host into kept dims (one output each) and reduced
// dims, each merged where contiguous. Each output is reduced by one warp (short reductions) or
// one block (long ones, or few outputs): a strided per-thread pass, then warp shuffles, then a
// 32-entry shared-memory stage across warps. argmax/argmin carry (value, index) pairs and break
// ties towards the lower index, so the result is the first extremum like the CPU's.
// softmax / softmax_backward: softmax over a contiguous last axis (inner == 1) uses one warp per
// row (or one block per row for long rows) with shuffle reductions; an inner axis (inner > 1)
// uses one thread per (outer, inner) column, which reads coalesced along inner.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"
#include "kernels/op_names.h"

#include <climits>
#include <cmath>
#include <string>
#include <vector>

namespace sc {
namespace cu {
namespace {

#ifdef CUDA_EMU
using std::exp;
using std::log;
#endif

using R = ReduceOp;

template <typename T>
__device__ __forceinline__ T pos_inf() { return T(INFINITY); }

// Per-thread accumulator update with the CPU's semantics (NaN propagates for max/min; argmax and
// argmin ignore NaN and keep the first strict extremum).
template <typename T, R OP>
__device__ __forceinline__ void acc_add(T& v, int& idx, T x, int r) {
  if (OP == R::sum || OP == R::mean) v += x;
  else if (OP == R::max) { if (v == v && (x > v || x != x)) v = x; }
  else if (OP == R::min) { if (v == v && (x < v || x != x)) v = x; }
  else if (OP == R::argmax) { if (x > v) { v = x; idx = r; } }
  else { if (x < v) { v = x; idx = r; } }
}

// Combines two partial results (the second from a higher or lower thread; indices decide ties).
template <typename T, R OP>
__device__ __forceinline__ void acc_combine(T& v, int& idx, T v2, int i2) {
  if (OP == R::sum || OP == R::mean) v += v2;
  else if (OP == R::max) { if (v == v && (v2 > v || v2 != v2)) v = v2; }
  else if (OP == R::min) { if (v == v && (v2 < v || v2 != v2)) v = v2; }
  else if (OP == R::argmax) { if (v2 > v || (v2 == v && i2 < idx)) { v = v2; idx = i2; } }
  else { if (v2 < v || (v2 == v && i2 < idx)) { v = v2; idx = i2; } }
}

template <typename T, R OP>
__device__ __forceinline__ T acc_init() {
  if (OP == R::sum || OP == R::mean) return T(0);
  if (OP == R::max || OP == R::argmax) return -pos_inf<T>();
  return pos_inf<T>();
}

template <typename T, R OP>
__device__ __forceinline__ void warp_combine(T& v, int& idx) {
  for (int o = 16; o > 0; o >>= 1) {
    const T v2 = __shfl_down_sync(0xffffffffu, v, o);
    const int i2 = __shfl_down_sync(0xffffffffu, idx, o);
    acc_combine<T, OP>(v, idx, v2, i2);
  }
}

template <typename T, R OP>
__device__ __forceinline__ void write_out(void* y, int64_t o, T v, int idx, int64_t rcount) {
  if (OP == R::argmax || OP == R::argmin) static_cast<int32_t*>(y)[o] = idx == INT_MAX ? 0 : idx;
  else if (OP == R::mean) static_cast<T*>(y)[o] = v / static_cast<T>(rcount);
  else static_cast<T*>(y)[o] = v;
}

// Offset of kept index o (over kg) and reduced index r (over rg).
__device__ __forceinline__ int64_t offset1(const Geom<1>& g, int64_t i) {
  int64_t off[1];
  geom_offsets<1>(g, i, off);
  return off[0];
}

// One warp per output; blockDim.x = 256 (8 outputs per block per step).
template <typename T, R OP>
__global__ void reduce_warp_k(Geom<1> kg, Geom<1> rg, int64_t nout, int64_t rcount, const T* __restrict__ x, void* y) {
  const int lane = threadIdx.x & 31;
  const int wpb = blockDim.x >> 5;
  for (int64_t o = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); o < nout; o += (int64_t)gridDim.x * wpb) {
    const T* base = x + offset1(kg, o);
    T v = acc_init<T, OP>();
    int idx = INT_MAX;
    for (int64_t r = lane; r < rcount; r += 32) acc_add<T, OP>(v, idx, base[offset1(rg, r)], (int)r);
    warp_combine<T, OP>(v, idx);
    if (lane == 0) write_out<T, OP>(y, o, v, idx, rcount);
  }
}

// One block per output.
template <typename T, R OP>
__global__ void reduce_block_k(Geom<1> kg, Geom<1> rg, int64_t nout, int64_t rcount, const T* __restrict__ x, void* y) {
  __shared__ T sv[32];
  __shared__ int si[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int64_t o = blockIdx.x; o < nout; o += gridDim.x) {
    const T* base = x + offset1(kg, o);
    T v = acc_init<T, OP>();
    int idx = INT_MAX;
    for (int64_t r = threadIdx.x; r < rcount; r += blockDim.x) acc_add<T, OP>(v, idx, base[offset1(rg, r)], (int)r);
    warp_combine<T, OP>(v, idx);
    if (lane == 0) { sv[warp] = v; si[warp] = idx; }
    __syncthreads();
    if (warp == 0) {
      v = lane < nwarps ? sv[lane] : acc_init<T, OP>();
      idx = lane < nwarps ? si[lane] : INT_MAX;
      warp_combine<T, OP>(v, idx);
      if (lane == 0) write_out<T, OP>(y, o, v, idx, rcount);
    }
    __syncthreads();  // sv/si are reused by the next output
  }
}

// Geometry of one operand over the listed dims, with size-1 dims dropped and contiguous dims merged.
Geom<1> sub_geom(const TArg& x, const std::vector<int>& dims) {
  TArg t;
  t.ndim = (int)dims.size();
  for (size_t i = 0; i < dims.size(); ++i) {
    t.shape[i] = x.shape[dims[i]];
    t.strides[i] = x.strides[dims[i]];
  }
  const TArg* ops[1] = {&t};
  return make_geom<1>(t.ndim, t.shape, ops);
}

template <typename T, R OP>
void reduce_launch(const Geom<1>& kg, const Geom<1>& rg, int64_t nout, int64_t rcount, const TArg& x, const TArg& y) {
  if (rcount > INT_MAX) throw KernelError("reduce: reduction too large for the CUDA kernel");
  const bool block_mode = rcount >= 1024 || (rcount >= 64 && nout <= 1024);
  if (block_mode) {
    const unsigned grid = (unsigned)std::min<int64_t>(nout, 65535);
    KLAUNCH((reduce_block_k<T, OP>), grid, kThreads, 0, 0)(kg, rg, nout, rcount, x.ptr<T>(), y.data);
  } else {
    const unsigned grid = (unsigned)std::max<int64_t>(1, std::min<int64_t>(ceil_div64(nout, kThreads / 32), 65535));
    KLAUNCH((reduce_warp_k<T, OP>), grid, kThreads, 0, 0)(kg, rg, nout, rcount, x.ptr<T>(), y.data);
  }
  check_launch("reduce");
}

template <typename T>
void reduce_typed(R op, const TArg& x, const TArg& y, const std::vector<int64_t>& axes) {
  bool red[kMaxDims] = {false};
  for (int64_t a : axes) red[a] = true;
  std::vector<int> kd, rd;
  int64_t rcount = 1;
  for (int d = 0; d < x.ndim; ++d) {
    if (red[d]) { rd.push_back(d); rcount *= x.shape[d]; }
    else kd.push_back(d);
  }
  const int64_t nout = y.numel();
  if (nout == 0) return;
  const Geom<1> kg = sub_geom(x, kd), rg = sub_geom(x, rd);
  switch (op) {
    case R::sum: return reduce_launch<T, R::sum>(kg, rg, nout, rcount, x, y);
    case R::mean: return reduce_launch<T, R::mean>(kg, rg, nout, rcount, x, y);
    case R::max: return reduce_launch<T, R::max>(kg, rg, nout, rcount, x, y);
    case R::min: return reduce_launch<T, R::min>(kg, rg, nout, rcount, x, y);
    case R::argmax: return reduce_launch<T, R::argmax>(kg, rg, nout, rcount, x, y);
    case R::argmin: return reduce_launch<T, R::argmin>(kg, rg, nout, rcount, x, y);
  }
}

// in[0] x (any strides); out[0] contiguous with the reduced axes removed (argmax/argmin: int32);
// attrs: op, axes.
void reduce_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const R op = parse_reduce(at.str("op"));
  const auto axes = at.ints("axes");
  for (int64_t a : axes)
    if (a < 0 || a >= in[0].ndim) throw KernelError("reduction axis out of range");
  SC_FLOAT_DISPATCH(in[0].dtype, T, reduce_typed<T>(op, in[0], out[0], axes));
}

// ---- softmax --------------------------------------------------------------------------------

void outer_dim_inner(const TArg& x, int64_t dim, int64_t& outer, int64_t& d, int64_t& inner) {
  if (dim < 0 || dim >= x.ndim) throw KernelError("softmax: dim out of range");
  outer = 1; inner = 1; d = x.shape[dim];
  for (int i = 0; i < dim; ++i) outer *= x.shape[i];
  for (int i = dim + 1; i < x.ndim; ++i) inner *= x.shape[i];
}

// Group-wide reductions for a row handled by a warp (GROUP == 32) or the whole block.
template <int GROUP, typename T>
__device__ __forceinline__ T group_sum(T v, T* scratch) {
  if (GROUP == 32) {
    v = warp_sum(v);
    return __shfl_sync(0xffffffffu, v, 0);
  }
  return block_sum(v, scratch);
}
template <int GROUP, typename T>
__device__ __forceinline__ T group_max(T v, T* scratch) {
  if (GROUP == 32) {
    v = warp_max(v);
    return __shfl_sync(0xffffffffu, v, 0);
  }
  return block_max(v, scratch);
}

// Rows of length D contiguous in memory (inner == 1). GROUP threads per row.
template <typename T, int GROUP>
__global__ void softmax_rows_k(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t D, int logm) {
  __shared__ T scratch[32];
  const int per_block = blockDim.x / GROUP;
  const int t = threadIdx.x % GROUP;
  for (int64_t row = (int64_t)blockIdx.x * per_block + threadIdx.x / GROUP; row < rows; row += (int64_t)gridDim.x * per_block) {
    const T* px = x + row * D;
    T* py = y + row * D;
    T m = -pos_inf<T>();
    for (int64_t k = t; k < D; k += GROUP) m = px[k] > m ? px[k] : m;
    m = group_max<GROUP>(m, scratch);
    T s = 0;
    for (int64_t k = t; k < D; k += GROUP) s += exp(px[k] - m);
    s = group_sum<GROUP>(s, scratch);
    if (logm) {
      const T ls = log(s);
      for (int64_t k = t; k < D; k += GROUP) py[k] = px[k] - m - ls;
    } else {
      const T inv = T(1) / s;
      for (int64_t k = t; k < D; k += GROUP) py[k] = exp(px[k] - m) * inv;
    }
  }
}

// inner > 1: one thread per (outer, inner) column; neighbouring threads read neighbouring inner.
template <typename T>
__global__ void softmax_cols_k(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t D, int64_t inner, int logm) {
  SC_GRID_STRIDE(r, outer * inner) {
    const int64_t o = r / inner, i = r - o * inner;
    const T* px = x + o * D * inner + i;
    T* py = y + o * D * inner + i;
    T m = -pos_inf<T>();
    for (int64_t k = 0; k < D; ++k) m = px[k * inner] > m ? px[k * inner] : m;
    T s = 0;
    for (int64_t k = 0; k < D; ++k) s += exp(px[k * inner] - m);
    if (logm) {
      const T ls = log(s);
      for (int64_t k = 0; k < D; ++k) py[k * inner] = px[k * inner] - m - ls;
    } else {
      const T inv = T(1) / s;
      for (int64_t k = 0; k < D; ++k) py[k * inner] = exp(px[k * inner] - m) * inv;
    }
  }
}

template <typename T>
void softmax_typed(const TArg& x, const TArg& y, int64_t dim, bool logm) {
  int64_t outer, D, inner;
  outer_dim_inner(x, dim, outer, D, inner);
  if (outer * D * inner == 0) return;
  if (inner == 1) {
    if (D > 1024) {
      KLAUNCH((softmax_rows_k<T, kThreads>), (unsigned)std::min<int64_t>(outer, 65535), kThreads, 0, 0)(x.ptr<T>(), y.ptr<T>(), outer, D, logm ? 1 : 0);
    } else {
      KLAUNCH((softmax_rows_k<T, 32>), (unsigned)std::min<int64_t>(ceil_div64(outer, kThreads / 32), 65535), kThreads, 0, 0)(x.ptr<T>(), y.ptr<T>(), outer, D, logm ? 1 : 0);
    }
  } else {
    KLAUNCH(softmax_cols_k<T>, blocks_for(outer * inner), kThreads, 0, 0)(x.ptr<T>(), y.ptr<T>(), outer, D, inner, logm ? 1 : 0);
  }
  check_launch("softmax");
}

// in[0] x contiguous; out[0] y; attrs: dim, log (0/1).
void softmax_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, softmax_typed<T>(in[0], out[0], at.i("dim"), at.b("log")));
}

// ---- softmax backward -----------------------------------------------------------------------
//   log:  gx = g - exp(y) * sum(g)        plain: gx = y * (g - sum(g * y))

template <typename T, int GROUP>
__global__ void softmax_bwd_rows_k(const T* __restrict__ g, const T* __restrict__ y, T* __restrict__ gx, int64_t rows, int64_t D, int logm) {
  __shared__ T scratch[32];
  const int per_block = blockDim.x / GROUP;
  const int t = threadIdx.x % GROUP;
  for (int64_t row = (int64_t)blockIdx.x * per_block + threadIdx.x / GROUP; row < rows; row += (int64_t)gridDim.x * per_block) {
    const T* pg = g + row * D;
    const T* py = y + row * D;
    T* po = gx + row * D;
    T s = 0;
    if (logm) for (int64_t k = t; k < D; k += GROUP) s += pg[k];
    else for (int64_t k = t; k < D; k += GROUP) s += pg[k] * py[k];
    s = group_sum<GROUP>(s, scratch);
    if (logm) for (int64_t k = t; k < D; k += GROUP) po[k] = pg[k] - exp(py[k]) * s;
    else for (int64_t k = t; k < D; k += GROUP) po[k] = py[k] * (pg[k] - s);
  }
}

template <typename T>
__global__ void softmax_bwd_cols_k(const T* __restrict__ g, const T* __restrict__ y, T* __restrict__ gx, int64_t outer, int64_t D, int64_t inner, int logm) {
  SC_GRID_STRIDE(r, outer * inner) {
    const int64_t o = r / inner, i = r - o * inner;
    const int64_t base = o * D * inner + i;
    T s = 0;
    if (logm) for (int64_t k = 0; k < D; ++k) s += g[base + k * inner];
    else for (int64_t k = 0; k < D; ++k) s += g[base + k * inner] * y[base + k * inner];
    if (logm) for (int64_t k = 0; k < D; ++k) { const int64_t j = base + k * inner; gx[j] = g[j] - exp(y[j]) * s; }
    else for (int64_t k = 0; k < D; ++k) { const int64_t j = base + k * inner; gx[j] = y[j] * (g[j] - s); }
  }
}

template <typename T>
void softmax_bwd_typed(const TArg& gy, const TArg& y, const TArg& gx, int64_t dim, bool logm) {
  int64_t outer, D, inner;
  outer_dim_inner(y, dim, outer, D, inner);
  if (outer * D * inner == 0) return;
  if (inner == 1) {
    if (D > 1024) {
      KLAUNCH((softmax_bwd_rows_k<T, kThreads>), (unsigned)std::min<int64_t>(outer, 65535), kThreads, 0, 0)(gy.ptr<T>(), y.ptr<T>(), gx.ptr<T>(), outer, D, logm ? 1 : 0);
    } else {
      KLAUNCH((softmax_bwd_rows_k<T, 32>), (unsigned)std::min<int64_t>(ceil_div64(outer, kThreads / 32), 65535), kThreads, 0, 0)(gy.ptr<T>(), y.ptr<T>(), gx.ptr<T>(), outer, D, logm ? 1 : 0);
    }
  } else {
    KLAUNCH(softmax_bwd_cols_k<T>, blocks_for(outer * inner), kThreads, 0, 0)(gy.ptr<T>(), y.ptr<T>(), gx.ptr<T>(), outer, D, inner, logm ? 1 : 0);
  }
  check_launch("softmax_backward");
}

// in: gy, y (forward output), both contiguous; out[0] gx; attrs: dim, log.
void softmax_backward_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, softmax_bwd_typed<T>(in[0], in[1], out[0], at.i("dim"), at.b("log")));
}

}  // namespace

SC_KERNEL("reduce", cuda, reduce_cuda);
SC_KERNEL("softmax", cuda, softmax_cuda);
SC_KERNEL("softmax_backward", cuda, softmax_backward_cuda);

}  // namespace cu
}  // namespace sc
