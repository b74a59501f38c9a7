// Fused optimiser updates, applied in place to contiguous parameters and their state, so an
// optimiser step is one pass over memory per parameter and allocates nothing.
#include <cmath>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "optim_params.h"

namespace sc {
namespace {

using optim::check_same;

// in: grad; out (updated in place): param, momentum buffer.
// attrs: lr, momentum, dampening, weightDecay, nesterov, first (1 on the step that creates the buffer).
template <typename T>
void sgd_typed(const TArg& g, const TArg& p, const TArg& buf, const Attrs& a) {
  const optim::Sgd h = optim::sgd(a);
  const T lr = (T)h.lr, mom = (T)h.momentum, damp = (T)h.dampening, wd = (T)h.wd;
  const bool nesterov = h.nesterov, first = h.first;
  const T* gp = g.ptr<T>();
  T* pp = p.ptr<T>();
  T* bp = buf.ptr<T>();
  parallel_for(0, p.numel(), 1 << 15, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) {
      T d = gp[i] + wd * pp[i];
      if (mom != T(0)) {
        const T b = first ? d : mom * bp[i] + (T(1) - damp) * d;
        bp[i] = b;
        d = nesterov ? d + mom * b : b;
      }
      pp[i] -= lr * d;
    }
  });
}
void sgd_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  check_same({in[0], out[0], out[1]}, "sgd_step");
  SC_FLOAT_DISPATCH(in[0].dtype, T, sgd_typed<T>(in[0], out[0], out[1], a));
}
SC_KERNEL("sgd_step", cpu, sgd_kernel);

// in: grad; out (in place): param, exp_avg, exp_avg_sq.
// attrs: lr, beta1, beta2, eps, weightDecay, step (1-based), decoupled (AdamW).
template <typename T>
void adam_typed(const TArg& g, const TArg& p, const TArg& m, const TArg& v, const Attrs& a) {
  const optim::Adam h = optim::adam(a);
  const double lr = h.lr, b1 = h.b1, b2 = h.b2, eps = h.eps, wd = h.wd;
  const bool decoupled = h.decoupled;
  const T bc1 = (T)h.bc1(), bc2s = (T)h.bc2s();
  const T* gp = g.ptr<T>();
  T* pp = p.ptr<T>();
  T* mp = m.ptr<T>();
  T* vp = v.ptr<T>();
  const T tb1 = (T)b1, tb2 = (T)b2, teps = (T)eps, tlr = (T)lr, twd = (T)wd;
  parallel_for(0, p.numel(), 1 << 15, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) {
      T gr = gp[i];
      if (decoupled) pp[i] *= T(1) - tlr * twd;
      else gr += twd * pp[i];
      mp[i] = tb1 * mp[i] + (T(1) - tb1) * gr;
      vp[i] = tb2 * vp[i] + (T(1) - tb2) * gr * gr;
      // PyTorch's formulation: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
      pp[i] -= tlr / bc1 * mp[i] / (std::sqrt(vp[i]) / bc2s + teps);
    }
  });
}
void adam_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  check_same({in[0], out[0], out[1], out[2]}, "adam_step");
  SC_FLOAT_DISPATCH(in[0].dtype, T, adam_typed<T>(in[0], out[0], out[1], out[2], a));
}
SC_KERNEL("adam_step", cpu, adam_kernel);

}  // namespace
}  // namespace sc
