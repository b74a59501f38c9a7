// Concatenation of any number of contiguous inputs along one dimension, and padding (constant,
// reflect, replicate) with the scatter-add backward of reflect/replicate.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "op_names.h"

namespace sc {
namespace {

// in: any number of contiguous tensors of one dtype, equal except along dim; out: the result;
// attrs: dim. Copies bytes, so every dtype works. Each input row of `inner` elements lands at
// its column offset in the matching output row; outer rows are split over threads.
void cat_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg& y = out[0];
  const int64_t dim = at.i("dim");
  const size_t es = dtype_size(y.dtype);
  int64_t outer = 1, tail = 1;
  for (int d = 0; d < dim; ++d) outer *= y.shape[d];
  for (int d = dim + 1; d < y.ndim; ++d) tail *= y.shape[d];
  const int64_t out_row = y.shape[dim] * tail;
  std::vector<int64_t> offs(in.size()), rows(in.size());
  int64_t col = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i].dtype != y.dtype) throw KernelError("cat: inputs must share the output's dtype");
    offs[i] = col;
    rows[i] = in[i].shape[dim] * tail;
    col += rows[i];
  }
  if (col != out_row) throw KernelError("cat: input sizes along dim do not add up to the output's");
  char* yp = static_cast<char*>(y.data);
  parallel_for(0, outer, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, out_row)), [&](int64_t a, int64_t b) {
    for (int64_t o = a; o < b; ++o)
      for (size_t i = 0; i < in.size(); ++i)
        if (rows[i] > 0)
          std::memcpy(yp + (o * out_row + offs[i]) * es, static_cast<const char*>(in[i].data) + o * rows[i] * es, rows[i] * es);
  });
}
SC_KERNEL("cat", cpu, cat_kernel);

// ---- pad ----------------------------------------------------------------------------------


// Source index of output index o along a dimension of size n padded by `before`; -1 means
// outside the input (constant mode only).
inline int64_t src_index(int64_t o, int64_t n, int64_t before, PadMode m) {
  int64_t i = o - before;
  if (i >= 0 && i < n) return i;
  switch (m) {
    case PadMode::constant: return -1;
    case PadMode::replicate: return i < 0 ? 0 : n - 1;
    case PadMode::reflect: return i < 0 ? -i : 2 * (n - 1) - i;  // TS checks pad < n
  }
  return -1;
}

// The padded dims are a suffix of the shape; `lead` planes of the unpadded leading dims are
// independent, which is what the threads split (and what keeps the backward race-free).
struct PadPlan {
  PadMode mode;
  int nd;
  std::vector<int64_t> before;  // per dim
  int64_t lead = 1, in_plane = 1, out_plane = 1;
  int first_padded = 0;
};

PadPlan pad_plan(const TArg& x, const TArg& y, const Attrs& at) {
  PadPlan p;
  p.mode = parse_pad_mode(at.str("mode", "constant"));
  p.nd = x.ndim;
  p.before = at.ints("before");
  if ((int)p.before.size() != x.ndim) throw KernelError("pad: 'before' must list one pad per dimension");
  p.first_padded = x.ndim;
  for (int d = 0; d < x.ndim; ++d)
    if (p.before[d] != 0 || x.shape[d] != y.shape[d]) { p.first_padded = d; break; }
  for (int d = 0; d < x.ndim; ++d) {
    if (d < p.first_padded) p.lead *= x.shape[d];
    else { p.in_plane *= x.shape[d]; p.out_plane *= y.shape[d]; }
  }
  return p;
}

// Walks the output rows (last dim) of one plane and calls f(out_row_offset, in_row_offset or -1).
template <typename F>
void for_rows(const PadPlan& p, const TArg& x, const TArg& y, F f) {
  const int nd = p.nd, fp = p.first_padded;
  const int64_t rows = p.out_plane / y.shape[nd - 1];
  int64_t idx[kMaxDims] = {0};
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r, src = 0, stride = x.shape[nd - 1];
    bool inside = true;
    for (int d = nd - 2; d >= fp; --d) {
      idx[d] = rem % y.shape[d];
      rem /= y.shape[d];
      const int64_t s = src_index(idx[d], x.shape[d], p.before[d], p.mode);
      if (s < 0) inside = false;
      src += s * stride;
      stride *= x.shape[d];
    }
    f(r * y.shape[nd - 1], inside ? src : -1);
  }
}

template <typename T>
void pad_typed(const TArg& x, const TArg& y, const PadPlan& p, T value) {
  const int64_t n = x.shape[p.nd - 1], on = y.shape[p.nd - 1], b = p.before[p.nd - 1];
  // Source column of each output column (last dim), computed once.
  std::vector<int64_t> cols(on);
  for (int64_t o = 0; o < on; ++o) cols[o] = src_index(o, n, b, p.mode);
  parallel_for(0, p.lead, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, p.out_plane)), [&](int64_t a, int64_t e) {
    for (int64_t l = a; l < e; ++l) {
      const T* xs = x.ptr<T>() + l * p.in_plane;
      T* ys = y.ptr<T>() + l * p.out_plane;
      if (p.first_padded == p.nd) { std::copy(xs, xs + p.in_plane, ys); continue; }
      for_rows(p, x, y, [&](int64_t yo, int64_t xo) {
        T* dst = ys + yo;
        if (xo < 0) { std::fill(dst, dst + on, value); return; }
        for (int64_t o = 0; o < on; ++o) dst[o] = cols[o] < 0 ? value : xs[xo + cols[o]];
      });
    }
  });
}

template <typename T>
void pad_bwd_typed(const TArg& g, const TArg& gx, const PadPlan& p) {
  const int64_t n = gx.shape[p.nd - 1], on = g.shape[p.nd - 1], b = p.before[p.nd - 1];
  std::vector<int64_t> cols(on);
  for (int64_t o = 0; o < on; ++o) cols[o] = src_index(o, n, b, p.mode);
  parallel_for(0, p.lead, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, p.out_plane)), [&](int64_t a, int64_t e) {
    for (int64_t l = a; l < e; ++l) {
      T* dst = gx.ptr<T>() + l * p.in_plane;
      const T* gs = g.ptr<T>() + l * p.out_plane;
      std::fill(dst, dst + p.in_plane, T(0));
      if (p.first_padded == p.nd) { std::copy(gs, gs + p.in_plane, dst); continue; }
      for_rows(p, gx, g, [&](int64_t go, int64_t xo) {
        if (xo < 0) return;
        for (int64_t o = 0; o < on; ++o)
          if (cols[o] >= 0) dst[xo + cols[o]] += gs[go + o];
      });
    }
  });
}

// in: x; out: y; attrs: mode, before (pad before each dim; may be negative in constant mode,
// which crops), value. The output shape carries the pads after.
void pad_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const PadPlan p = pad_plan(in[0], out[0], at);
  const double v = at.num("value", 0.0);
  SC_FLOAT_DISPATCH(in[0].dtype, T, pad_typed<T>(in[0], out[0], p, static_cast<T>(v)));
}
SC_KERNEL("pad", cpu, pad_kernel);

// in: gy (the padded shape); out: gx (the input's shape); attrs as pad (reflect/replicate:
// gradients of positions that map to the same input element add up).
void pad_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const PadPlan p = pad_plan(out[0], in[0], at);
  SC_FLOAT_DISPATCH(in[0].dtype, T, pad_bwd_typed<T>(in[0], out[0], p));
}
SC_KERNEL("pad_backward", cpu, pad_backward_kernel);

}  // namespace
}  // namespace sc
