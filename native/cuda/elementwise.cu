// Elementwise CUDA kernels, mirroring native/kernels/elementwise.cc: copy (with dtype casts,
// from any strided view to a contiguous output), fill, copy_strided, unary, binary (broadcast,
// comparisons -> uint8, activation derivatives) and where.
//
// Every kernel is a grid-stride loop over the output; operand offsets come from a Geom (shape
// and per-operand strides, by value, with size-1 dims dropped and contiguous dims merged on the
// host). A fully contiguous launch takes the fast path without index arithmetic.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"
#include "kernels/op_names.h"

#include <cmath>
#include <cstring>
#include <string>

namespace sc {
namespace cu {
namespace {

#ifdef CUDA_EMU
using std::abs;
using std::erf;
using std::exp;
using std::fabs;
using std::log;
using std::pow;
using std::sqrt;
using std::tanh;
#endif

// ---- device math, same formulas as the CPU kernels ------------------------------------------

template <typename T>
__device__ __forceinline__ T gelu_f(T x) { return T(0.5) * x * (T(1) + erf(x * T(0.70710678118654752440))); }
template <typename T>
__device__ __forceinline__ T gelu_grad_f(T x) {
  const T cdf = T(0.5) * (T(1) + erf(x * T(0.70710678118654752440)));
  const T pdf = exp(T(-0.5) * x * x) * T(0.39894228040143267794);
  return cdf + x * pdf;
}
// sin/cos through sinpi/cospi of a double argument: CUDA's sin/cos slow-path (Payne-Hanek) range
// reduction keeps a table in local memory, which the build forbids. Reducing x/pi in double is
// accurate to ~|x|*1e-16, far below float rounding.
template <typename T>
__device__ __forceinline__ T sin_f(T v) {
#ifdef CUDA_EMU
  return std::sin(v);
#else
  return static_cast<T>(sinpi(static_cast<double>(v) * 0.31830988618379067154));
#endif
}
template <typename T>
__device__ __forceinline__ T cos_f(T v) {
#ifdef CUDA_EMU
  return std::cos(v);
#else
  return static_cast<T>(cospi(static_cast<double>(v) * 0.31830988618379067154));
#endif
}

template <typename T>
__device__ __forceinline__ T sigmoid_f(T x) {
  if (x >= T(0)) return T(1) / (T(1) + exp(-x));
  const T e = exp(x);
  return e / (T(1) + e);
}

// ---- copy / cast ----------------------------------------------------------------------------

// Operand 0 is the output, operand 1 the source.
template <typename S, typename D>
__global__ void copy_k(Geom<2> g, int64_t n, const S* __restrict__ s, D* __restrict__ d, int contiguous) {
  if (contiguous) {
    SC_GRID_STRIDE(i, n) d[i] = static_cast<D>(s[i]);
    return;
  }
  SC_GRID_STRIDE(i, n) {
    int64_t off[2];
    geom_offsets<2>(g, i, off);
    d[off[0]] = static_cast<D>(s[off[1]]);
  }
}

inline bool geom_contiguous(const Geom<2>& g) { return g.ndim == 1 && g.st[0][0] == 1 && g.st[1][0] == 1; }
inline bool geom_contiguous(const Geom<3>& g) { return g.ndim == 1 && g.st[0][0] == 1 && g.st[1][0] == 1 && g.st[2][0] == 1; }

template <typename S, typename D>
void copy_launch(const TArg& s, const TArg& d) {
  const int64_t n = d.numel();
  const TArg* ops[2] = {&d, &s};
  const Geom<2> g = make_geom<2>(d.ndim, d.shape, ops);
  KLAUNCH((copy_k<S, D>), blocks_for(n), kThreads, 0, 0)(g, n, s.ptr<S>(), d.ptr<D>(), geom_contiguous(g) ? 1 : 0);
  check_launch("copy");
}

template <typename S>
void copy_from(const TArg& s, const TArg& d) {
  SC_ANY_DISPATCH(d.dtype, T, copy_launch<S, T>(s, d));
}

// in[0]: any strided view; out[0]: contiguous, same shape, any dtype.
void copy_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  const TArg &s = in[0], &d = out[0];
  if (d.numel() == 0) return;
  if (s.dtype == d.dtype && s.contiguous()) {
    SC_CUDA_CHECK(cudaMemcpyAsync(d.data, s.data, s.numel() * dtype_size(s.dtype), cudaMemcpyDeviceToDevice, 0));
    return;
  }
  SC_ANY_DISPATCH(s.dtype, T, copy_from<T>(s, d));
}

// ---- fill ------------------------------------------------------------------------------------

template <typename T>
__global__ void fill_k(T* __restrict__ p, int64_t n, T v) {
  SC_GRID_STRIDE(i, n) p[i] = v;
}

template <typename T>
void fill_launch(const TArg& o, double v) {
  const int64_t n = o.numel();
  if (n == 0) return;
  KLAUNCH(fill_k<T>, blocks_for(n), kThreads, 0, 0)(o.ptr<T>(), n, static_cast<T>(v));
  check_launch("fill");
}

void fill_cuda(const std::vector<TArg>&, const std::vector<TArg>& out, const Attrs& at) {
  const double v = at.num("value");
  SC_ANY_DISPATCH(out[0].dtype, T, fill_launch<T>(out[0], v));
}

// ---- copy_strided ----------------------------------------------------------------------------

template <typename T>
void copy_strided_launch(const TArg& s, const TArg& d) {
  const int64_t n = s.numel();
  if (n == 0) return;
  const TArg* ops[2] = {&d, &s};
  const Geom<2> g = make_geom<2>(s.ndim, s.shape, ops);
  KLAUNCH((copy_k<T, T>), blocks_for(n), kThreads, 0, 0)(g, n, s.ptr<T>(), d.ptr<T>(), geom_contiguous(g) ? 1 : 0);
  check_launch("copy_strided");
}

void copy_strided_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  if (in[0].ndim != out[0].ndim || in[0].dtype != out[0].dtype) throw KernelError("copy_strided: shape or dtype mismatch");
  for (int i = 0; i < in[0].ndim; ++i)
    if (in[0].shape[i] != out[0].shape[i]) throw KernelError("copy_strided: shape mismatch");
  switch (dtype_size(in[0].dtype)) {
    case 1: return copy_strided_launch<uint8_t>(in[0], out[0]);
    case 4: return copy_strided_launch<uint32_t>(in[0], out[0]);
    case 8: return copy_strided_launch<uint64_t>(in[0], out[0]);
  }
}

// ---- unary -----------------------------------------------------------------------------------

using U = UnaryOp;

template <typename T>
__device__ __forceinline__ T unary_op(U op, T v, T a, T b) {
  switch (op) {
    case U::neg: return -v;
    case U::exp: return exp(v);
    case U::log: return log(v);
    case U::sqrt: return sqrt(v);
    case U::abs: return fabs(v);
    case U::relu: return v > T(0) ? v : T(0);
    case U::gelu: return gelu_f(v);
    case U::sigmoid: return sigmoid_f(v);
    case U::tanh: return tanh(v);
    case U::square: return v * v;
    case U::reciprocal: return T(1) / v;
    case U::sin: return sin_f(v);
    case U::cos: return cos_f(v);
    case U::sign: return T((v > T(0)) - (v < T(0)));
    case U::clamp: return v < a ? a : (v > b ? b : v);
    case U::affine: return a * v + b;
    case U::pow:
      if (a == T(2)) return v * v;
      if (a == T(0.5)) return sqrt(v);
      return pow(v, a);
  }
  return v;
}

template <typename T>
__global__ void unary_k(Geom<2> g, int64_t n, const T* __restrict__ x, T* __restrict__ y, U op, T a, T b, int contiguous) {
  if (contiguous) {
    SC_GRID_STRIDE(i, n) y[i] = unary_op<T>(op, x[i], a, b);
    return;
  }
  SC_GRID_STRIDE(i, n) {
    int64_t off[2];
    geom_offsets<2>(g, i, off);
    y[off[0]] = unary_op<T>(op, x[off[1]], a, b);
  }
}

template <typename T>
void unary_launch(U op, const TArg& x, const TArg& y, const Attrs& at) {
  T a = 0, b = 0;
  if (op == U::clamp) { a = static_cast<T>(at.num("min", -INFINITY)); b = static_cast<T>(at.num("max", INFINITY)); }
  else if (op == U::affine) { a = static_cast<T>(at.num("a", 1)); b = static_cast<T>(at.num("b", 0)); }
  else if (op == U::pow) a = static_cast<T>(at.num("exponent"));
  const int64_t n = y.numel();
  if (n == 0) return;
  const TArg* ops[2] = {&y, &x};
  const Geom<2> g = make_geom<2>(y.ndim, y.shape, ops);
  KLAUNCH(unary_k<T>, blocks_for(n), kThreads, 0, 0)(g, n, x.ptr<T>(), y.ptr<T>(), op, a, b, geom_contiguous(g) ? 1 : 0);
  check_launch("unary");
}

void unary_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const U op = parse_unary(at.str("op"));
  SC_FLOAT_DISPATCH(in[0].dtype, T, unary_launch<T>(op, in[0], out[0], at));
}

// ---- binary ----------------------------------------------------------------------------------

using B = BinaryOp;

inline bool is_comparison(B op) { return op >= B::eq && op <= B::ge; }

template <typename T>
__device__ __forceinline__ T binary_arith(B op, T u, T v) {
  switch (op) {
    case B::add: return u + v;
    case B::sub: return u - v;
    case B::mul: return u * v;
    case B::div: return u / v;
    case B::pow: return pow(u, v);
    case B::maximum: return u > v ? u : v;
    case B::minimum: return u < v ? u : v;
    case B::relu_grad: return v > T(0) ? u : T(0);
    case B::gelu_grad: return u * gelu_grad_f(v);
    case B::sigmoid_grad: return u * v * (T(1) - v);
    case B::tanh_grad: return u * (T(1) - v * v);
    default: break;  // comparisons: binary_cmp
  }
  return u;
}

template <typename T>
__device__ __forceinline__ uint8_t binary_cmp(B op, T u, T v) {
  switch (op) {
    case B::eq: return uint8_t(u == v);
    case B::ne: return uint8_t(u != v);
    case B::lt: return uint8_t(u < v);
    case B::le: return uint8_t(u <= v);
    case B::gt: return uint8_t(u > v);
    case B::ge: return uint8_t(u >= v);
    default: break;  // arithmetic: binary_arith
  }
  return 0;
}

template <typename T, typename R>
__device__ __forceinline__ R binary_op(B op, T u, T v);
template <>
__device__ __forceinline__ float binary_op<float, float>(B op, float u, float v) { return binary_arith<float>(op, u, v); }
template <>
__device__ __forceinline__ double binary_op<double, double>(B op, double u, double v) { return binary_arith<double>(op, u, v); }
template <>
__device__ __forceinline__ uint8_t binary_op<float, uint8_t>(B op, float u, float v) { return binary_cmp<float>(op, u, v); }
template <>
__device__ __forceinline__ uint8_t binary_op<double, uint8_t>(B op, double u, double v) { return binary_cmp<double>(op, u, v); }

// Operands: 0 output, 1 a, 2 b.
template <typename T, typename R>
__global__ void binary_k(Geom<3> g, int64_t n, const T* __restrict__ a, const T* __restrict__ b, R* __restrict__ y, B op, int contiguous) {
  if (contiguous) {
    SC_GRID_STRIDE(i, n) y[i] = binary_op<T, R>(op, a[i], b[i]);
    return;
  }
  SC_GRID_STRIDE(i, n) {
    int64_t off[3];
    geom_offsets<3>(g, i, off);
    y[off[0]] = binary_op<T, R>(op, a[off[1]], b[off[2]]);
  }
}

template <typename T>
void binary_launch(B op, const TArg& a, const TArg& b, const TArg& y) {
  const int64_t n = y.numel();
  if (n == 0) return;
  const TArg* ops[3] = {&y, &a, &b};
  const Geom<3> g = make_geom<3>(y.ndim, y.shape, ops);
  const int c = geom_contiguous(g) ? 1 : 0;
  if (is_comparison(op)) {
    if (y.dtype != DType::u8) throw KernelError("binary: comparison output must be uint8");
    KLAUNCH((binary_k<T, uint8_t>), blocks_for(n), kThreads, 0, 0)(g, n, a.ptr<T>(), b.ptr<T>(), y.ptr<uint8_t>(), op, c);
  } else {
    KLAUNCH((binary_k<T, T>), blocks_for(n), kThreads, 0, 0)(g, n, a.ptr<T>(), b.ptr<T>(), y.ptr<T>(), op, c);
  }
  check_launch("binary");
}

void binary_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const B op = parse_binary(at.str("op"));
  SC_FLOAT_DISPATCH(in[0].dtype, T, binary_launch<T>(op, in[0], in[1], out[0]));
}

// ---- where -----------------------------------------------------------------------------------

template <typename T>
__global__ void where_k(Geom<4> g, int64_t n, const uint8_t* __restrict__ c, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y) {
  SC_GRID_STRIDE(i, n) {
    int64_t off[4];
    geom_offsets<4>(g, i, off);
    y[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]];
  }
}

template <typename T>
void where_launch(const TArg& c, const TArg& a, const TArg& b, const TArg& y) {
  const int64_t n = y.numel();
  if (n == 0) return;
  const TArg* ops[4] = {&y, &c, &a, &b};
  const Geom<4> g = make_geom<4>(y.ndim, y.shape, ops);
  KLAUNCH(where_k<T>, blocks_for(n), kThreads, 0, 0)(g, n, c.ptr<uint8_t>(), a.ptr<T>(), b.ptr<T>(), y.ptr<T>());
  check_launch("where");
}

void where_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  if (in[0].dtype != DType::u8) throw KernelError("where: condition must be uint8");
  SC_FLOAT_DISPATCH(in[1].dtype, T, where_launch<T>(in[0], in[1], in[2], out[0]));
}

}  // namespace

SC_KERNEL("copy", cuda, copy_cuda);
SC_KERNEL("fill", cuda, fill_cuda);
SC_KERNEL("copy_strided", cuda, copy_strided_cuda);
SC_KERNEL("unary", cuda, unary_cuda);
SC_KERNEL("binary", cuda, binary_cuda);
SC_KERNEL("where", cuda, where_cuda);

}  // namespace cu
}  // namespace sc
