// Host-side argument parsing and validation of the 2-D convolution kernels, shared by the CPU
// backend (native/kernels/conv.cc) and the CUDA backend (native/cuda/conv.cu), so both accept
// the same arguments and report the same errors. Plain C++ (also compiled by nvcc).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "../core/kernel.h"

namespace sc {
namespace conv {

struct ConvP {
  int64_t N, C, H, W;     // input
  int64_t OC, KH, KW;     // weight
  int64_t OH, OW;         // output
  int64_t sh, sw, ph, pw, dh, dw, G;
  int64_t Cg, OCg, CKK, P, HW;
  bool depthwise() const { return G == C && OC == C; }
  bool pointwise() const { return KH == 1 && KW == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

inline std::vector<int64_t> pair_attr(const Attrs& a, const char* name) {
  std::vector<int64_t> v = a.ints(name);
  if (v.size() == 1) v.push_back(v[0]);
  if (v.size() != 2) throw KernelError(std::string("conv2d: attribute '") + name + "' must have 2 values");
  return v;
}

inline void check_arg(const TArg& t, int ndim, DType dt, const char* what) {
  if (t.ndim != ndim)
    throw KernelError(std::string("conv2d: ") + what + " must be " + std::to_string(ndim) + "-D");
  if (t.dtype != dt) throw KernelError(std::string("conv2d: ") + what + " has mismatched dtype");
  if (!t.contiguous()) throw KernelError(std::string("conv2d: ") + what + " must be contiguous");
  for (int i = 0; i < ndim; ++i)
    if (t.shape[i] < 0) throw KernelError(std::string("conv2d: ") + what + " has a negative dim");
  if (t.numel() > 0 && !t.data) throw KernelError(std::string("conv2d: ") + what + " has no data");
}

// xs: [N, C, H, W]; ws: [OC, C/g, KH, KW].
inline ConvP make_params(const int64_t* xs, const int64_t* ws, const Attrs& a) {
  ConvP p;
  p.N = xs[0]; p.C = xs[1]; p.H = xs[2]; p.W = xs[3];
  p.OC = ws[0]; p.KH = ws[2]; p.KW = ws[3];
  auto st = pair_attr(a, "stride"), pd = pair_attr(a, "padding"), dl = pair_attr(a, "dilation");
  p.sh = st[0]; p.sw = st[1]; p.ph = pd[0]; p.pw = pd[1]; p.dh = dl[0]; p.dw = dl[1];
  p.G = a.i("groups", 1);
  if (p.sh <= 0 || p.sw <= 0) throw KernelError("conv2d: stride must be positive");
  if (p.dh <= 0 || p.dw <= 0) throw KernelError("conv2d: dilation must be positive");
  if (p.ph < 0 || p.pw < 0) throw KernelError("conv2d: padding must be non-negative");
  if (p.G <= 0) throw KernelError("conv2d: groups must be positive");
  if (p.C % p.G != 0 || p.OC % p.G != 0) throw KernelError("conv2d: channels not divisible by groups");
  p.Cg = p.C / p.G;
  p.OCg = p.OC / p.G;
  if (ws[1] != p.Cg) throw KernelError("conv2d: weight in-channels != C / groups");
  if (p.KH <= 0 || p.KW <= 0) throw KernelError("conv2d: empty kernel");
  const int64_t eh = p.H + 2 * p.ph - p.dh * (p.KH - 1) - 1;
  const int64_t ew = p.W + 2 * p.pw - p.dw * (p.KW - 1) - 1;
  if (eh < 0 || ew < 0) throw KernelError("conv2d: kernel larger than padded input");
  p.OH = eh / p.sh + 1;
  p.OW = ew / p.sw + 1;
  p.CKK = p.Cg * p.KH * p.KW;
  p.P = p.OH * p.OW;
  p.HW = p.H * p.W;
  return p;
}

inline void check_shape(const TArg& t, std::initializer_list<int64_t> want, const char* what) {
  int i = 0;
  for (int64_t v : want) {
    if (t.shape[i] != v) throw KernelError(std::string("conv2d: ") + what + " has the wrong shape");
    ++i;
  }
}

// Entry-point validation: argument counts, ranks, dtypes and shapes of each kernel's tensors.
// in: x, w[, b]; out: y.
inline ConvP check_forward(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  if (in.size() != 2 && in.size() != 3) throw KernelError("conv2d: expected 2 or 3 inputs");
  if (out.size() != 1) throw KernelError("conv2d: expected 1 output");
  const TArg &x = in[0], &w = in[1], &y = out[0];
  const DType dt = x.dtype;
  check_arg(x, 4, dt, "input");
  check_arg(w, 4, dt, "weight");
  check_arg(y, 4, dt, "output");
  const ConvP p = make_params(x.shape, w.shape, a);
  check_shape(y, {p.N, p.OC, p.OH, p.OW}, "output");
  if (in.size() == 3) {
    check_arg(in[2], 1, dt, "bias");
    check_shape(in[2], {p.OC}, "bias");
  }
  return p;
}

// in: gy, w; out: gx; attrs: inputShape.
inline ConvP check_backward_input(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  if (in.size() != 2 || out.size() != 1)
    throw KernelError("conv2d_backward_input: expected inputs (gy, w) and output gx");
  const TArg &gy = in[0], &w = in[1], &gx = out[0];
  const DType dt = gy.dtype;
  check_arg(gy, 4, dt, "grad output");
  check_arg(w, 4, dt, "weight");
  check_arg(gx, 4, dt, "grad input");
  const std::vector<int64_t> xs = a.ints("inputShape");
  if (xs.size() != 4) throw KernelError("conv2d_backward_input: inputShape must have 4 values");
  for (int64_t v : xs)
    if (v < 0) throw KernelError("conv2d_backward_input: negative inputShape");
  const ConvP p = make_params(xs.data(), w.shape, a);
  check_shape(gx, {p.N, p.C, p.H, p.W}, "grad input");
  check_shape(gy, {p.N, p.OC, p.OH, p.OW}, "grad output");
  return p;
}

// in: x, gy; out: gw[, gb].
inline ConvP check_backward_weight(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  if (in.size() != 2 || (out.size() != 1 && out.size() != 2))
    throw KernelError("conv2d_backward_weight: expected inputs (x, gy) and outputs gw[, gb]");
  const TArg &x = in[0], &gy = in[1], &gw = out[0];
  const DType dt = x.dtype;
  check_arg(x, 4, dt, "input");
  check_arg(gy, 4, dt, "grad output");
  check_arg(gw, 4, dt, "grad weight");
  const ConvP p = make_params(x.shape, gw.shape, a);
  check_shape(gy, {p.N, p.OC, p.OH, p.OW}, "grad output");
  if (out.size() == 2) {
    check_arg(out[1], 1, dt, "grad bias");
    check_shape(out[1], {p.OC}, "grad bias");
  }
  return p;
}

// conv2d_fused (inference): y = act(conv(x, w) + bias) * scale + shift, per output channel.
// in: x, w, [bias] (attr hasBias), [scale, shift] (attr hasAffine); attrs as conv2d plus
// act = "none" | "relu" | "gelu".
enum class FusedAct : int { none = 0, relu = 1, gelu = 2 };

struct FusedArgs {
  ConvP p;
  FusedAct act;
  const TArg* bias;
  const TArg* scale;
  const TArg* shift;
};

inline FusedArgs check_fused(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  const bool hb = a.b("hasBias"), ha = a.b("hasAffine");
  const size_t want = 2 + (hb ? 1 : 0) + (ha ? 2 : 0);
  if (in.size() != want) throw KernelError("conv2d_fused: expected " + std::to_string(want) + " inputs (x, w[, bias][, scale, shift])");
  std::vector<TArg> base(in.begin(), in.begin() + (hb ? 3 : 2));
  FusedArgs f;
  f.p = check_forward(base, out, a);
  const std::string act = a.str("act", "none");
  if (act == "none") f.act = FusedAct::none;
  else if (act == "relu") f.act = FusedAct::relu;
  else if (act == "gelu") f.act = FusedAct::gelu;
  else throw KernelError("conv2d_fused: unknown act '" + act + "' (none, relu, gelu)");
  f.bias = hb ? &in[2] : nullptr;
  f.scale = ha ? &in[want - 2] : nullptr;
  f.shift = ha ? &in[want - 1] : nullptr;
  if (ha) {
    check_arg(*f.scale, 1, in[0].dtype, "scale");
    check_shape(*f.scale, {f.p.OC}, "scale");
    check_arg(*f.shift, 1, in[0].dtype, "shift");
    check_shape(*f.shift, {f.p.OC}, "shift");
  }
  return f;
}

// Entry points, the same on every backend: validate, skip empty outputs, then call the backend's
// typed implementation with the tensors' data pointers (T = float or double):
//   fwd(p, x, w, bias_or_null, y);  bwd_in(p, gy, w, gx);  bwd_w(p, x, gy, gw, gb_or_null).
template <typename F>
void run_forward(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a, F&& fwd) {
  const ConvP p = check_forward(in, out, a);
  const TArg &x = in[0], &w = in[1], &y = out[0];
  const TArg* b = in.size() == 3 ? &in[2] : nullptr;
  if (y.numel() == 0) return;
  if (x.numel() == 0 || w.numel() == 0) throw KernelError("conv2d: empty input or weight");
  SC_FLOAT_DISPATCH(x.dtype, T, fwd(p, x.ptr<T>(), w.ptr<T>(), b ? b->ptr<T>() : nullptr, y.ptr<T>()));
}

template <typename F>
void run_backward_input(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a, F&& bwd_in) {
  const ConvP p = check_backward_input(in, out, a);
  const TArg &gy = in[0], &w = in[1], &gx = out[0];
  if (gx.numel() == 0) return;
  SC_FLOAT_DISPATCH(gy.dtype, T, bwd_in(p, gy.ptr<T>(), w.ptr<T>(), gx.ptr<T>()));
}

template <typename F>
void run_backward_weight(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a, F&& bwd_w) {
  const ConvP p = check_backward_weight(in, out, a);
  const TArg &x = in[0], &gy = in[1], &gw = out[0];
  const TArg* gb = out.size() == 2 ? &out[1] : nullptr;
  if (gw.numel() == 0) return;
  SC_FLOAT_DISPATCH(x.dtype, T, bwd_w(p, x.ptr<T>(), gy.ptr<T>(), gw.ptr<T>(), gb ? gb->ptr<T>() : nullptr));
}

}  // namespace conv
}  // namespace sc
