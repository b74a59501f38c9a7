// Elementwise CPU kernels: copy/cast, fill, unary math, binary arithmetic and comparisons with
// broadcasting, where, and the fused derivatives of the activations.
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "../core/kernel.h"
#include "fast_gelu.h"
#include "op_names.h"
#include "strided.h"

namespace sc {
namespace {

// float32: the vectorisable approximations, double: the exact form (fast_gelu.h).
inline double gelu_f(double x) { return fastmath::gelu_exact(x); }
inline double gelu_grad_f(double x) { return fastmath::gelu_grad_exact(x); }
inline float gelu_f(float x) { return fastmath::gelu(x); }
inline float gelu_grad_f(float x) { return fastmath::gelu_grad(x); }
template <typename T>
inline T sigmoid_f(T x) {
  // Split by sign so exp never overflows.
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

// ---- copy / cast --------------------------------------------------------------------------

// Copies of transposed views (a permute made contiguous: NHWC <-> NCHW, [B, N, C] <-> [B, C, N])
// read the input with a large stride along each output row, and an input cache line served the
// next output row only after a whole plane of rows had passed: the copy ran at 3-7 GB/s. Here
// the output's last dimension (I) and the dimension along which the input is contiguous (J) are
// walked in tiles through a small buffer: each input line is read in one burst and each output
// line written in one, so lines that alias in the cache (plane strides of 4 KB multiples) never
// need to stay resident. The tile is long along the side with the larger stride's partner:
// few long runs where the other side jumps far. Returns false (nothing done) for other layouts.
template <typename S, typename D>
bool copy_transposed(const StridedPlan<1>& p, const S* s, D* d) {
  const int nd = p.ndim;
  const int64_t si = nd >= 2 ? p.strides[0][nd - 1] : 1;
  if (nd < 2 || si == 1 || si == 0) return false;
  int j = -1;
  for (int k = nd - 2; k >= 0 && j < 0; --k)
    if (p.strides[0][k] == 1) j = k;
  if (j < 0) return false;
  int64_t ost[kMaxDims];  // the contiguous output's strides
  ost[nd - 1] = 1;
  for (int k = nd - 2; k >= 0; --k) ost[k] = ost[k + 1] * p.shape[k + 1];
  const int64_t nI = p.shape[nd - 1], nJ = p.shape[j], oj = ost[j];
  if (nI * nJ < 256) return false;
  // Input rows (along J) jump si apart, output rows (along I) oj apart: read 64-long runs from
  // few input rows when the input's jumps are the larger, else write 64-long output runs.
  const int64_t TI = si >= oj ? 16 : 64, TJ = si >= oj ? 64 : 16;
  int64_t outer = 1;
  for (int k = 0; k < nd - 1; ++k)
    if (k != j) outer *= p.shape[k];
  const int64_t jtiles = (nJ + TJ - 1) / TJ;
  parallel_for(0, outer * jtiles, std::max<int64_t>(1, 16384 / (TJ * nI)), [&](int64_t b, int64_t e) {
    D tile[16 * 64];  // [j - j0][i - i0], row length TI
    for (int64_t w = b; w < e; ++w) {
      // Offsets of outer index w / jtiles over the dimensions other than j and the last.
      int64_t r = w / jtiles, io = 0, oo = 0;
      for (int k = nd - 2; k >= 0; --k) {
        if (k == j) continue;
        const int64_t ix = r % p.shape[k];
        r /= p.shape[k];
        io += ix * p.strides[0][k];
        oo += ix * ost[k];
      }
      const int64_t j0 = (w % jtiles) * TJ, j1 = std::min(nJ, j0 + TJ);
      for (int64_t i0 = 0; i0 < nI; i0 += TI) {
        const int64_t i1 = std::min(nI, i0 + TI);
        for (int64_t i = i0; i < i1; ++i) {
          const S* a = s + io + i * si;
          for (int64_t jj = j0; jj < j1; ++jj) tile[(jj - j0) * TI + (i - i0)] = static_cast<D>(a[jj]);
        }
        for (int64_t jj = j0; jj < j1; ++jj) {
          D* y = d + oo + jj * oj;
          const D* t = tile + (jj - j0) * TI - i0;
          for (int64_t i = i0; i < i1; ++i) y[i] = t[i];
        }
      }
    }
  });
  return true;
}

template <typename S, typename D>
void copy_typed(const TArg& src, const TArg& dst) {
  auto plan = make_plan<1>(dst, {&src});
  const S* s = src.ptr<S>();
  D* d = dst.ptr<D>();
  if (copy_transposed(plan, s, d)) return;
  for_each_row<1>(plan, [&](int64_t n, int64_t o, const int64_t* off, const int64_t* st) {
    const S* a = s + off[0];
    D* y = d + o;
    if (st[0] == 1) for (int64_t i = 0; i < n; ++i) y[i] = static_cast<D>(a[i]);
    else for (int64_t i = 0; i < n; ++i) y[i] = static_cast<D>(a[i * st[0]]);
  });
}

template <typename S>
void copy_from(const TArg& src, const TArg& dst) {
  SC_ANY_DISPATCH(dst.dtype, T, copy_typed<S, T>(src, dst));
}

// in[0]: any strided view; out[0]: contiguous, same shape, any dtype (casts when they differ).
void copy_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  const TArg &s = in[0], &d = out[0];
  if (s.dtype == d.dtype && s.contiguous()) {
    std::memcpy(d.data, s.data, s.numel() * dtype_size(s.dtype));
    return;
  }
  SC_ANY_DISPATCH(s.dtype, T, copy_from<T>(s, d));
}
SC_KERNEL("copy", cpu, copy_kernel);

template <typename T>
void fill_typed(const TArg& o, double v) {
  T* p = o.ptr<T>();
  const T x = static_cast<T>(v);
  const int64_t n = o.numel();
  parallel_for(0, n, 1 << 16, [&](int64_t a, int64_t b) { std::fill(p + a, p + b, x); });
}

// out[0] contiguous; attrs: value.
void fill_kernel(const std::vector<TArg>&, const std::vector<TArg>& out, const Attrs& at) {
  const double v = at.num("value");
  SC_ANY_DISPATCH(out[0].dtype, T, fill_typed<T>(out[0], v));
}
SC_KERNEL("fill", cpu, fill_kernel);

// ---- unary --------------------------------------------------------------------------------

using U = UnaryOp;

template <typename T, typename F>
void unary_apply(const TArg& x, const TArg& y, F f) {
  auto plan = make_plan<1>(y, {&x});
  const T* xp = x.ptr<T>();
  T* yp = y.ptr<T>();
  for_each_row<1>(plan, [&](int64_t n, int64_t o, const int64_t* off, const int64_t* st) {
    const T* a = xp + off[0];
    T* r = yp + o;
    if (st[0] == 1) for (int64_t i = 0; i < n; ++i) r[i] = f(a[i]);
    else for (int64_t i = 0; i < n; ++i) r[i] = f(a[i * st[0]]);
  });
}

template <typename T>
void unary_typed(U op, const TArg& x, const TArg& y, const Attrs& at) {
  switch (op) {
    case U::neg: return unary_apply<T>(x, y, [](T v) { return -v; });
    case U::exp: return unary_apply<T>(x, y, [](T v) { return std::exp(v); });
    case U::log: return unary_apply<T>(x, y, [](T v) { return std::log(v); });
    case U::sqrt: return unary_apply<T>(x, y, [](T v) { return std::sqrt(v); });
    case U::abs: return unary_apply<T>(x, y, [](T v) { return std::abs(v); });
    case U::relu: return unary_apply<T>(x, y, [](T v) { return v > T(0) ? v : T(0); });
    case U::gelu:
      if constexpr (std::is_same_v<T, float>) {  // contiguous rows: the vectorised loop
        auto plan = make_plan<1>(y, {&x});
        const float* xp = x.ptr<float>();
        float* yp = y.ptr<float>();
        return for_each_row<1>(plan, [&](int64_t n, int64_t o, const int64_t* off, const int64_t* st) {
          if (st[0] == 1) return gelu_f32_array(xp + off[0], yp + o, n);
          for (int64_t i = 0; i < n; ++i) yp[o + i] = gelu_f(xp[off[0] + i * st[0]]);
        });
      }
      return unary_apply<T>(x, y, [](T v) { return gelu_f(v); });
    case U::sigmoid: return unary_apply<T>(x, y, [](T v) { return sigmoid_f(v); });
    case U::tanh: return unary_apply<T>(x, y, [](T v) { return std::tanh(v); });
    case U::square: return unary_apply<T>(x, y, [](T v) { return v * v; });
    case U::reciprocal: return unary_apply<T>(x, y, [](T v) { return T(1) / v; });
    case U::sin: return unary_apply<T>(x, y, [](T v) { return std::sin(v); });
    case U::cos: return unary_apply<T>(x, y, [](T v) { return std::cos(v); });
    case U::sign: return unary_apply<T>(x, y, [](T v) { return T((v > T(0)) - (v < T(0))); });
    case U::clamp: {
      const T lo = static_cast<T>(at.num("min", -INFINITY)), hi = static_cast<T>(at.num("max", INFINITY));
      return unary_apply<T>(x, y, [=](T v) { return v < lo ? lo : (v > hi ? hi : v); });
    }
    case U::affine: {  // y = a * x + b: scalar arithmetic without allocating scalar tensors
      const T a = static_cast<T>(at.num("a", 1)), b = static_cast<T>(at.num("b", 0));
      return unary_apply<T>(x, y, [=](T v) { return a * v + b; });
    }
    case U::pow: {
      const T p = static_cast<T>(at.num("exponent"));
      if (p == T(2)) return unary_apply<T>(x, y, [](T v) { return v * v; });
      if (p == T(0.5)) return unary_apply<T>(x, y, [](T v) { return std::sqrt(v); });
      return unary_apply<T>(x, y, [=](T v) { return std::pow(v, p); });
    }
  }
}

// in[0] x (strided, broadcast allowed); out[0] y contiguous; attrs: op (+ op parameters).
void unary_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const U op = parse_unary(at.str("op"));
  SC_FLOAT_DISPATCH(in[0].dtype, T, unary_typed<T>(op, in[0], out[0], at));
}
SC_KERNEL("unary", cpu, unary_kernel);

// ---- binary -------------------------------------------------------------------------------

using B = BinaryOp;

template <typename T, typename R, typename F>
void binary_apply(const TArg& a, const TArg& b, const TArg& y, F f) {
  auto plan = make_plan<2>(y, {&a, &b});
  const T* ap = a.ptr<T>();
  const T* bp = b.ptr<T>();
  R* yp = y.ptr<R>();
  for_each_row<2>(plan, [&](int64_t n, int64_t o, const int64_t* off, const int64_t* st) {
    const T* x = ap + off[0];
    const T* z = bp + off[1];
    R* r = yp + o;
    // Specialised inner loops for the common layouts so they vectorise.
    if (st[0] == 1 && st[1] == 1) for (int64_t i = 0; i < n; ++i) r[i] = f(x[i], z[i]);
    else if (st[0] == 1 && st[1] == 0) { const T zv = z[0]; for (int64_t i = 0; i < n; ++i) r[i] = f(x[i], zv); }
    else if (st[0] == 0 && st[1] == 1) { const T xv = x[0]; for (int64_t i = 0; i < n; ++i) r[i] = f(xv, z[i]); }
    else for (int64_t i = 0; i < n; ++i) r[i] = f(x[i * st[0]], z[i * st[1]]);
  });
}

template <typename T>
void binary_typed(B op, const TArg& a, const TArg& b, const TArg& y) {
  switch (op) {
    case B::add: return binary_apply<T, T>(a, b, y, [](T u, T v) { return u + v; });
    case B::sub: return binary_apply<T, T>(a, b, y, [](T u, T v) { return u - v; });
    case B::mul: return binary_apply<T, T>(a, b, y, [](T u, T v) { return u * v; });
    case B::div: return binary_apply<T, T>(a, b, y, [](T u, T v) { return u / v; });
    case B::pow: return binary_apply<T, T>(a, b, y, [](T u, T v) { return std::pow(u, v); });
    case B::maximum: return binary_apply<T, T>(a, b, y, [](T u, T v) { return u > v ? u : v; });
    case B::minimum: return binary_apply<T, T>(a, b, y, [](T u, T v) { return u < v ? u : v; });
    case B::eq: return binary_apply<T, uint8_t>(a, b, y, [](T u, T v) { return uint8_t(u == v); });
    case B::ne: return binary_apply<T, uint8_t>(a, b, y, [](T u, T v) { return uint8_t(u != v); });
    case B::lt: return binary_apply<T, uint8_t>(a, b, y, [](T u, T v) { return uint8_t(u < v); });
    case B::le: return binary_apply<T, uint8_t>(a, b, y, [](T u, T v) { return uint8_t(u <= v); });
    case B::gt: return binary_apply<T, uint8_t>(a, b, y, [](T u, T v) { return uint8_t(u > v); });
    case B::ge: return binary_apply<T, uint8_t>(a, b, y, [](T u, T v) { return uint8_t(u >= v); });
    // Activation derivatives: a = incoming gradient, b = saved input (relu, gelu) or output.
    case B::relu_grad: return binary_apply<T, T>(a, b, y, [](T g, T x) { return x > T(0) ? g : T(0); });
    case B::gelu_grad:
      if constexpr (std::is_same_v<T, float>) {  // both operands contiguous in the row: vectorised
        auto plan = make_plan<2>(y, {&a, &b});
        const float *ap = a.ptr<float>(), *bp = b.ptr<float>();
        float* yp = y.ptr<float>();
        return for_each_row<2>(plan, [&](int64_t n, int64_t o, const int64_t* off, const int64_t* st) {
          if (st[0] == 1 && st[1] == 1) return gelu_grad_f32_array(ap + off[0], bp + off[1], yp + o, n);
          for (int64_t i = 0; i < n; ++i) yp[o + i] = ap[off[0] + i * st[0]] * gelu_grad_f(bp[off[1] + i * st[1]]);
        });
      }
      return binary_apply<T, T>(a, b, y, [](T g, T x) { return g * gelu_grad_f(x); });
    case B::sigmoid_grad: return binary_apply<T, T>(a, b, y, [](T g, T s) { return g * s * (T(1) - s); });
    case B::tanh_grad: return binary_apply<T, T>(a, b, y, [](T g, T t) { return g * (T(1) - t * t); });
  }
}

// in[0], in[1]: strided views broadcast to out's shape; out[0] contiguous; attrs: op.
void binary_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const B op = parse_binary(at.str("op"));
  SC_FLOAT_DISPATCH(in[0].dtype, T, binary_typed<T>(op, in[0], in[1], out[0]));
}
SC_KERNEL("binary", cpu, binary_kernel);

template <typename T>
void where_typed(const TArg& c, const TArg& a, const TArg& b, const TArg& y) {
  auto plan = make_plan<3>(y, {&c, &a, &b});
  const uint8_t* cp = c.ptr<uint8_t>();
  const T* ap = a.ptr<T>();
  const T* bp = b.ptr<T>();
  T* yp = y.ptr<T>();
  for_each_row<3>(plan, [&](int64_t n, int64_t o, const int64_t* off, const int64_t* st) {
    for (int64_t i = 0; i < n; ++i)
      yp[o + i] = cp[off[0] + i * st[0]] ? ap[off[1] + i * st[1]] : bp[off[2] + i * st[2]];
  });
}

// in: cond (uint8), a, b (broadcast views); out[0] contiguous.
void where_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  SC_FLOAT_DISPATCH(in[1].dtype, T, where_typed<T>(in[0], in[1], in[2], out[0]));
}
SC_KERNEL("where", cpu, where_kernel);

}  // namespace
}  // namespace sc

namespace sc {
namespace {
// Copies a strided view into another strided view of the same shape and dtype (used to
// scatter gradients into slices). Plain odometer; not performance critical.
template <typename T>
void copy_strided_typed(const TArg& s, const TArg& d) {
  const int64_t n = s.numel();
  int64_t idx[kMaxDims] = {0};
  int64_t so = 0, dof = 0;
  const T* sp = s.ptr<T>();
  T* dp = d.ptr<T>();
  for (int64_t i = 0; i < n; ++i) {
    dp[dof] = sp[so];
    for (int k = s.ndim - 1; k >= 0; --k) {
      ++idx[k];
      so += s.strides[k];
      dof += d.strides[k];
      if (idx[k] < s.shape[k]) break;
      so -= idx[k] * s.strides[k];
      dof -= idx[k] * d.strides[k];
      idx[k] = 0;
    }
  }
}
void copy_strided_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  if (in[0].ndim != out[0].ndim || in[0].dtype != out[0].dtype) throw KernelError("copy_strided: shape or dtype mismatch");
  for (int i = 0; i < in[0].ndim; ++i)
    if (in[0].shape[i] != out[0].shape[i]) throw KernelError("copy_strided: shape mismatch");
  switch (dtype_size(in[0].dtype)) {
    case 1: return copy_strided_typed<uint8_t>(in[0], out[0]);
    case 4: return copy_strided_typed<uint32_t>(in[0], out[0]);
    case 8: return copy_strided_typed<uint64_t>(in[0], out[0]);
  }
}
SC_KERNEL("copy_strided", cpu, copy_strided_kernel);
}  // namespace
}  // namespace sc
