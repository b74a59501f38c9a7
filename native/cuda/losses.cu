// Fused binary cross-entropy with logits and its backward on the CUDA backend (mirror
// native/kernels/losses.cc). Elementwise over the output; inputs arrive broadcast (stride 0) to
// the output's shape. The mean/sum reduction is done afterwards by the reduce op, as on the CPU.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"

namespace sc {
namespace {

template <typename T>
__device__ __forceinline__ T sigmoid_d(T x) {
  if (x >= T(0)) return T(1) / (T(1) + cu::d_exp(-x));
  const T e = cu::d_exp(x);
  return e / (T(1) + e);
}

// Operand order in the plan: x, t, pw, g (as the CPU kernel).
template <typename T>
__global__ void bce_k(cu::StridedPlan<4> plan, const T* __restrict__ x, const T* __restrict__ t,
                      const T* __restrict__ pw, const T* __restrict__ g, T* __restrict__ y, int64_t n, int grad,
                      int pw_tensor, T pw_scalar) {
  SC_GRID_STRIDE(i, n) {
    int64_t off[4];
    cu::strided_offsets<4>(plan, i, off);
    const T xv = x[off[0]], tv = t[off[1]];
    const T w = pw_tensor ? pw[off[2]] : pw_scalar;
    const T lw = T(1) + (w - T(1)) * tv;
    if (grad) {
      y[i] = (lw * sigmoid_d(xv) - w * tv) * g[off[3]];
    } else {
      y[i] = (T(1) - tv) * xv + lw * (cu::d_log1p(cu::d_exp(-cu::d_abs(xv))) + cu::d_max(-xv, T(0)));
    }
  }
}

template <typename T>
void bce_run(const std::vector<TArg>& in, const TArg& out, const Attrs& at, bool grad) {
  const size_t base = grad ? 1 : 0;
  const bool pw_tensor = in.size() == base + 3;
  const TArg &x = in[base], &t = in[base + 1];
  const TArg& g = grad ? in[0] : x;
  const TArg& pw = pw_tensor ? in[base + 2] : x;
  const int64_t n = out.numel();
  if (n == 0) return;
  cu::StridedPlan<4> plan{};
  plan.ndim = out.ndim;
  const TArg* ops[4] = {&x, &t, &pw, &g};
  for (int d = 0; d < out.ndim; ++d) {
    plan.shape[d] = out.shape[d];
    for (int k = 0; k < 4; ++k) {
      const TArg& a = *ops[k];
      const int ad = d + (a.ndim - out.ndim);
      plan.st[k][d] = (ad >= 0 && a.shape[ad] != 1) ? a.strides[ad] : 0;
    }
  }
  KLAUNCH(bce_k<T>, cu::blocks_for(n), cu::kThreads, 0, 0)
  (plan, x.ptr<T>(), t.ptr<T>(), pw.ptr<T>(), g.ptr<T>(), out.ptr<T>(), n, grad ? 1 : 0, pw_tensor ? 1 : 0,
   (T)at.num("posWeight", 1.0));
  cu::check_launch(grad ? "bce_with_logits_backward" : "bce_with_logits");
}

void bce_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, bce_run<T>(in, out[0], at, false));
}
SC_KERNEL("bce_with_logits", cuda, bce_kernel);

void bce_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, bce_run<T>(in, out[0], at, true));
}
SC_KERNEL("bce_with_logits_backward", cuda, bce_backward_kernel);

}  // namespace
}  // namespace sc
