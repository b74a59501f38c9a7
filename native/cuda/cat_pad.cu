// Concatenation and padding on the CUDA backend (mirror native/kernels/cat_pad.cc).
//
// cat: any number of contiguous inputs of one dtype (any dtype: the copy moves 1-, 4- or 8-byte
// words). One grid-stride launch per non-empty input; each input row of `rows` elements lands at
// its column offset in the matching output row.
// pad: one thread per output element; the output index is decomposed over the shape with
// compile-time dimension indices (no local memory) and mapped to its source per dimension
// (constant / reflect / replicate; negative constant pads crop).
// pad_backward: separable and deterministic, no atomics: the padded dims are folded back one at a
// time, each a gather [A, on, B] -> [A, n, B] in which every input position sums the (at most
// three for reflect, a contiguous edge range for replicate) output positions that map to it.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"
#include "kernels/op_names.h"

#include <string>
#include <vector>

namespace sc {
namespace cu {
namespace {

// ---- cat ------------------------------------------------------------------------------------

template <typename E>
__global__ void cat_copy_k(const E* __restrict__ src, E* __restrict__ dst, int64_t outer, int64_t rows,
                           int64_t out_row, int64_t off) {
  SC_GRID_STRIDE(j, outer * rows) {
    const int64_t o = j / rows, r = j - o * rows;
    dst[o * out_row + off + r] = src[j];
  }
}

template <typename E>
void cat_launch(const TArg& src, const TArg& y, int64_t outer, int64_t rows, int64_t out_row, int64_t off) {
  KLAUNCH(cat_copy_k<E>, blocks_for(outer * rows), kThreads, 0, 0)(src.ptr<E>(), y.ptr<E>(), outer, rows, out_row, off);
  check_launch("cat");
}

// in: any number of contiguous tensors of one dtype, equal except along dim; out: the result;
// attrs: dim.
void cat_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg& y = out[0];
  const int64_t dim = at.i("dim");
  if (dim < 0 || dim >= y.ndim) throw KernelError("cat: dim out of range");
  const size_t es = dtype_size(y.dtype);
  int64_t outer = 1, tail = 1;
  for (int d = 0; d < dim; ++d) outer *= y.shape[d];
  for (int d = dim + 1; d < y.ndim; ++d) tail *= y.shape[d];
  const int64_t out_row = y.shape[dim] * tail;
  int64_t col = 0;
  for (const TArg& t : in) {
    if (t.dtype != y.dtype) throw KernelError("cat: inputs must share the output's dtype");
    col += t.shape[dim] * tail;
  }
  if (col != out_row) throw KernelError("cat: input sizes along dim do not add up to the output's");
  col = 0;
  for (const TArg& t : in) {
    const int64_t rows = t.shape[dim] * tail;
    if (rows > 0 && outer > 0) {
      if (es == 8) cat_launch<uint64_t>(t, y, outer, rows, out_row, col);
      else if (es == 4) cat_launch<uint32_t>(t, y, outer, rows, out_row, col);
      else if (es == 1) cat_launch<uint8_t>(t, y, outer, rows, out_row, col);
      else throw KernelError("cat: unsupported element size");
    }
    col += rows;
  }
}

// ---- pad ------------------------------------------------------------------------------------


// Source index of output index o along a dimension of size n padded by `before`; -1 means
// outside the input (constant mode only).
__device__ __forceinline__ int64_t src_index(int64_t o, int64_t n, int64_t before, PadMode mode) {
  const int64_t i = o - before;
  if (i >= 0 && i < n) return i;
  if (mode == PadMode::constant) return -1;
  if (mode == PadMode::replicate) return i < 0 ? 0 : n - 1;
  return i < 0 ? -i : 2 * (n - 1) - i;  // reflect (TS checks pad < n)
}

struct PadGeom {
  int ndim;
  PadMode mode;
  int64_t xshape[kMaxDims];
  int64_t yshape[kMaxDims];
  int64_t before[kMaxDims];
};

template <typename T>
__global__ void pad_k(PadGeom g, const T* __restrict__ x, T* __restrict__ y, int64_t total, T value) {
  SC_GRID_STRIDE(idx, total) {
    int64_t rem = idx, src = 0, stride = 1;
    bool inside = true;
    SC_UNROLL for (int d = kMaxDims - 1; d >= 0; --d) {
      if (d < g.ndim) {
        const int64_t on = g.yshape[d];
        const int64_t q = rem / on, o = rem - q * on;
        rem = q;
        const int64_t s = src_index(o, g.xshape[d], g.before[d], g.mode);
        if (s < 0) inside = false;
        src += s * stride;
        stride *= g.xshape[d];
      }
    }
    y[idx] = inside ? x[src] : value;
  }
}

PadGeom pad_geom(const TArg& x, const TArg& y, const Attrs& at) {
  PadGeom g{};
  g.mode = parse_pad_mode(at.str("mode", "constant"));
  const auto before = at.ints("before");
  if ((int)before.size() != x.ndim) throw KernelError("pad: 'before' must list one pad per dimension");
  if (x.ndim != y.ndim) throw KernelError("pad: input and output ranks differ");
  g.ndim = x.ndim;
  for (int d = 0; d < x.ndim; ++d) {
    g.xshape[d] = x.shape[d];
    g.yshape[d] = y.shape[d];
    g.before[d] = before[d];
  }
  return g;
}

// in: x; out: y; attrs: mode, before (may be negative in constant mode: crops), value.
void pad_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const PadGeom g = pad_geom(in[0], out[0], at);
  const double v = at.num("value", 0.0);
  const int64_t total = out[0].numel();
  if (total == 0) return;
  if (g.mode != PadMode::constant && in[0].numel() == 0) throw KernelError("pad: reflect/replicate of an empty input");
  SC_FLOAT_DISPATCH(in[0].dtype, T, {
    KLAUNCH(pad_k<T>, blocks_for(total), kThreads, 0, 0)(g, in[0].ptr<T>(), out[0].ptr<T>(), total, static_cast<T>(v));
    check_launch("pad");
  });
}

// ---- pad backward ---------------------------------------------------------------------------

// src [A, on, B] -> dst [A, n, B]: dst[a, i, b] = sum of src[a, o, b] over the o that map to i.
template <typename T>
__global__ void pad_fold_k(const T* __restrict__ src, T* __restrict__ dst, int64_t A, int64_t n, int64_t on,
                           int64_t B, int64_t before, PadMode mode) {
  SC_GRID_STRIDE(idx, A * n * B) {
    const int64_t b = idx % B, ai = idx / B, i = ai % n, a = ai / n;
    const T* s = src + a * on * B + b;
    T acc = 0;
    if (mode == PadMode::replicate) {
      // Positions o with clamp(o - before, 0, n - 1) == i: a contiguous range.
      int64_t lo = i == 0 ? 0 : i + before, hi = i == n - 1 ? on - 1 : i + before;
      lo = lo < 0 ? 0 : lo;
      hi = hi > on - 1 ? on - 1 : hi;
      for (int64_t o = lo; o <= hi; ++o) acc += s[o * B];
    } else {
      // Same order as the CPU's scatter: left reflection, direct, right reflection (ascending o).
      const int64_t od = i + before;
      if (mode == PadMode::reflect) {
        const int64_t ol = before - i;  // o - before = -i < 0
        if (i > 0 && ol >= 0 && ol < on) acc += s[ol * B];
      }
      if (od >= 0 && od < on) acc += s[od * B];
      if (mode == PadMode::reflect) {
        const int64_t orr = before + 2 * (n - 1) - i;  // o - before = 2(n-1) - i >= n
        if (i <= n - 2 && orr >= 0 && orr < on) acc += s[orr * B];
      }
    }
    dst[idx] = acc;
  }
}

template <typename T>
__global__ void copy_k(const T* __restrict__ src, T* __restrict__ dst, int64_t n) {
  SC_GRID_STRIDE(i, n) dst[i] = src[i];
}

template <typename T>
void pad_bwd_typed(const TArg& g, const TArg& gx, const PadGeom& p) {
  const int nd = p.ndim;
  const int64_t total_x = gx.numel();
  if (total_x == 0) return;
  // Current shape: starts as the padded shape; each folded dim takes the input's size.
  int64_t cur[kMaxDims];
  for (int d = 0; d < nd; ++d) cur[d] = p.yshape[d];
  std::vector<int> dims;
  for (int d = nd - 1; d >= 0; --d)
    if (p.before[d] != 0 || p.xshape[d] != p.yshape[d]) dims.push_back(d);
  if (dims.empty()) {
    KLAUNCH(copy_k<T>, blocks_for(total_x), kThreads, 0, 0)(g.ptr<T>(), gx.ptr<T>(), total_x);
    check_launch("pad_backward");
    return;
  }
  // Ping-pong through two scratch buffers sized for the largest intermediate.
  int64_t maxsz = 0;
  {
    int64_t tmp[kMaxDims];
    for (int d = 0; d < nd; ++d) tmp[d] = cur[d];
    for (size_t k = 0; k + 1 < dims.size(); ++k) {
      tmp[dims[k]] = p.xshape[dims[k]];
      int64_t s = 1;
      for (int d = 0; d < nd; ++d) s *= tmp[d];
      maxsz = std::max(maxsz, s);
    }
  }
  Scratch s0(maxsz * sizeof(T)), s1(maxsz * sizeof(T));
  const T* src = g.ptr<T>();
  for (size_t k = 0; k < dims.size(); ++k) {
    const int d = dims[k];
    int64_t A = 1, B = 1;
    for (int e = 0; e < d; ++e) A *= cur[e];
    for (int e = d + 1; e < nd; ++e) B *= cur[e];
    const int64_t n = p.xshape[d], on = cur[d];
    T* dst = k + 1 == dims.size() ? gx.ptr<T>() : (k % 2 == 0 ? s0.as<T>() : s1.as<T>());
    const int64_t total = A * n * B;
    if (total > 0)
      KLAUNCH(pad_fold_k<T>, blocks_for(total), kThreads, 0, 0)(src, dst, A, n, on, B, p.before[d], p.mode);
    check_launch("pad_backward");
    cur[d] = n;
    src = dst;
  }
}

// in: gy (the padded shape); out: gx (the input's shape); attrs as pad.
void pad_backward_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const PadGeom p = pad_geom(out[0], in[0], at);
  SC_FLOAT_DISPATCH(in[0].dtype, T, pad_bwd_typed<T>(in[0], out[0], p));
}

}  // namespace

SC_KERNEL("cat", cuda, cat_cuda);
SC_KERNEL("pad", cuda, pad_cuda);
SC_KERNEL("pad_backward", cuda, pad_backward_cuda);

}  // namespace cu
}  // namespace sc
