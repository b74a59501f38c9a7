// Fused optimiser updates on the CUDA backend (mirror native/kernels/optim.cc): in place on
// contiguous parameters and state, one pass over memory.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"
#include "kernels/optim_params.h"

namespace sc {
namespace {

using optim::check_same;

template <typename T>
__global__ void sgd_k(const T* __restrict__ g, T* __restrict__ p, T* __restrict__ buf, int64_t n, T lr, T mom,
                      T damp, T wd, int nesterov, int first) {
  SC_GRID_STRIDE(i, n) {
    T d = g[i] + wd * p[i];
    if (mom != T(0)) {
      const T b = first ? d : mom * buf[i] + (T(1) - damp) * d;
      buf[i] = b;
      d = nesterov ? d + mom * b : b;
    }
    p[i] -= lr * d;
  }
}

template <typename T>
void sgd_typed(const TArg& g, const TArg& p, const TArg& buf, const Attrs& a) {
  const int64_t n = p.numel();
  if (n == 0) return;
  const optim::Sgd h = optim::sgd(a);
  KLAUNCH(sgd_k<T>, cu::blocks_for(n), cu::kThreads, 0, 0)
  (g.ptr<T>(), p.ptr<T>(), buf.ptr<T>(), n, (T)h.lr, (T)h.momentum, (T)h.dampening, (T)h.wd, h.nesterov ? 1 : 0,
   h.first ? 1 : 0);
  cu::check_launch("sgd_step");
}
void sgd_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  check_same({in[0], out[0], out[1]}, "sgd_step");
  SC_FLOAT_DISPATCH(in[0].dtype, T, sgd_typed<T>(in[0], out[0], out[1], a));
}
SC_KERNEL("sgd_step", cuda, sgd_kernel);

template <typename T>
__global__ void adam_k(const T* __restrict__ g, T* __restrict__ p, T* __restrict__ m, T* __restrict__ v, int64_t n,
                       T lr, T b1, T b2, T eps, T wd, T bc1, T bc2s, int decoupled) {
  SC_GRID_STRIDE(i, n) {
    T gr = g[i];
    T pi = p[i];
    if (decoupled) pi *= T(1) - lr * wd;
    else gr += wd * pi;
    const T mi = b1 * m[i] + (T(1) - b1) * gr;
    const T vi = b2 * v[i] + (T(1) - b2) * gr * gr;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - lr / bc1 * mi / (cu::d_sqrt(vi) / bc2s + eps);
  }
}

template <typename T>
void adam_typed(const TArg& g, const TArg& p, const TArg& m, const TArg& v, const Attrs& a) {
  const int64_t n = p.numel();
  if (n == 0) return;
  const optim::Adam h = optim::adam(a);
  const T bc1 = (T)h.bc1(), bc2s = (T)h.bc2s();
  KLAUNCH(adam_k<T>, cu::blocks_for(n), cu::kThreads, 0, 0)
  (g.ptr<T>(), p.ptr<T>(), m.ptr<T>(), v.ptr<T>(), n, (T)h.lr, (T)h.b1, (T)h.b2, (T)h.eps, (T)h.wd, bc1, bc2s,
   h.decoupled ? 1 : 0);
  cu::check_launch("adam_step");
}
void adam_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  check_same({in[0], out[0], out[1], out[2]}, "adam_step");
  SC_FLOAT_DISPATCH(in[0].dtype, T, adam_typed<T>(in[0], out[0], out[1], out[2], a));
}
SC_KERNEL("adam_step", cuda, adam_kernel);

}  // namespace
}  // namespace sc
