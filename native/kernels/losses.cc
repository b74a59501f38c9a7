// Fused, numerically stable binary cross-entropy with logits (elementwise; the reduction is
// done by the reduce op) and its derivative with respect to the logits.
//   loss = (1 - t) x + lw * softplus(-x),  lw = 1 + (pw - 1) t,
//   softplus(-x) = log1p(exp(-|x|)) + max(-x, 0)   (never overflows)
//   dloss/dx = lw * sigmoid(x) - pw * t
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "fast_gelu.h"
#include "strided.h"

namespace sc {
namespace {

template <typename T>
inline T sigmoid_f(T x) {
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

// Inputs arrive broadcast to the output's shape (stride 0 where broadcast): [dOut,] x, t,
// [pos_weight]. Without a pos_weight tensor its scalar value comes in the attribute posWeight.
// y = f(x, t, pw), times dOut when `grad`.
template <typename T, typename F>
void bce_map(const std::vector<TArg>& in, const TArg& out, const Attrs& at, bool grad, F&& f) {
  const size_t base = grad ? 1 : 0;
  const bool pw_tensor = in.size() == base + 3;
  const T pw_scalar = static_cast<T>(at.num("posWeight", 1.0));
  const TArg &x = in[base], &t = in[base + 1];
  const TArg& g = grad ? in[0] : x;  // unused stand-ins keep the plan's arity fixed
  const TArg& pw = pw_tensor ? in[base + 2] : x;
  const T *xp = x.ptr<T>(), *tp = t.ptr<T>(), *gp = g.ptr<T>(), *pp = pw.ptr<T>();
  T* y = out.ptr<T>();
  auto plan = make_plan<4>(out, {&x, &t, &pw, &g});
  for_each_row<4>(plan, [&](int64_t n, int64_t o, const int64_t* off, const int64_t* st) {
    for (int64_t i = 0; i < n; ++i) {
      const T w = pw_tensor ? pp[off[2] + i * st[2]] : pw_scalar;
      const T v = f(xp[off[0] + i * st[0]], tp[off[1] + i * st[1]], w);
      y[o + i] = grad ? v * gp[off[3] + i * st[3]] : v;
    }
  }, 8);
}

// float32, every operand contiguous and a scalar pos_weight (the training losses' case): the
// vectorised loops of fast_gelu.cc, in chunks across threads. std::exp / std::log1p per value
// made the loss of a 128 px batch of 8 cost 1.8 ms, more than some of the network's layers.
bool bce_fast(const std::vector<TArg>& in, const TArg& out, const Attrs& at, bool grad) {
  const size_t base = grad ? 1 : 0;
  if (in.size() != base + 2 || out.dtype != DType::f32 || !out.contiguous()) return false;
  for (const TArg& a : in)
    if (a.dtype != DType::f32 || a.numel() != out.numel()) return false;
  if (!in[base].contiguous() || !in[base + 1].contiguous()) return false;
  // The output gradient: contiguous, or one value broadcast (what a mean or sum hands back).
  const TArg* g = grad ? &in[0] : nullptr;
  bool g_scalar = false;
  if (g && !g->contiguous()) {
    for (int d = 0; d < g->ndim; ++d)
      if (g->strides[d] != 0 && g->shape[d] != 1) return false;
    g_scalar = true;
  }
  const float pw = static_cast<float>(at.num("posWeight", 1.0));
  const float *x = in[base].ptr<float>(), *t = in[base + 1].ptr<float>();
  const float* gp = g && !g_scalar ? g->ptr<float>() : nullptr;
  const float gs = g_scalar ? g->ptr<float>()[0] : 1.0f;
  float* y = out.ptr<float>();
  parallel_for(0, out.numel(), 4096, [&](int64_t i0, int64_t i1) {
    if (grad) bce_logits_grad_f32_array(gp ? gp + i0 : nullptr, gs, x + i0, t + i0, pw, y + i0, i1 - i0);
    else bce_logits_f32_array(x + i0, t + i0, pw, y + i0, i1 - i0);
  });
  return true;
}

// in: logits x, target t, [pos_weight]; out: elementwise loss; attrs: posWeight (scalar case).
void bce_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  if (bce_fast(in, out[0], at, false)) return;
  SC_FLOAT_DISPATCH(in[0].dtype, T, bce_map<T>(in, out[0], at, false, [](T x, T t, T pw) {
    const T lw = T(1) + (pw - T(1)) * t;
    return (T(1) - t) * x + lw * (std::log1p(std::exp(-std::abs(x))) + std::max(-x, T(0)));
  }));
}
SC_KERNEL("bce_with_logits", cpu, bce_kernel);

// in: dOut, x, t, [pos_weight]; out: dx.
void bce_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  if (bce_fast(in, out[0], at, true)) return;
  SC_FLOAT_DISPATCH(in[0].dtype, T, bce_map<T>(in, out[0], at, true, [](T x, T t, T pw) {
    return (T(1) + (pw - T(1)) * t) * sigmoid_f(x) - pw * t;
  }));
}
SC_KERNEL("bce_with_logits_backward", cpu, bce_backward_kernel);

}  // namespace
}  // namespace sc
