// T-PEN power expansion: out[:, (k-1)*C + c] = coeffs[k-1, c] * x[:, c]^k for k = 1..order,
// and its backward. Both are parallel over channels, so each thread owns whole output planes
// and whole coefficient gradients (no atomics).
#include <string>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "tpen_params.h"

namespace sc {
namespace {

using tpen::Dims;
using tpen::dims;

template <typename T>
void forward_typed(const TArg& x, const TArg& coeffs, const TArg& out) {
  const Dims d = dims(x, coeffs);
  const T *xp = x.ptr<T>(), *a = coeffs.ptr<T>();
  T* op = out.ptr<T>();
  parallel_for(0, d.N * d.C, std::max<int64_t>(1, 16384 / (d.HW * d.K + 1)), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / d.C, c = p % d.C;
      const T* xs = xp + p * d.HW;
      for (int64_t i = 0; i < d.HW; ++i) {
        T pw = 1;
        for (int64_t k = 0; k < d.K; ++k) {
          pw *= xs[i];
          op[((n * d.K + k) * d.C + c) * d.HW + i] = a[k * d.C + c] * pw;
        }
      }
    }
  });
}

// in: x [N, C, H, W], coeffs [order, C]; out: [N, order*C, H, W].
void tpen_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, forward_typed<T>(in[0], in[1], out[0]));
}
SC_KERNEL("tpen", cpu, tpen_kernel);

template <typename T>
void backward_typed(const TArg& x, const TArg& coeffs, const TArg& g, const TArg& dx, const TArg& dcoeffs) {
  const Dims d = dims(x, coeffs);
  const T *xp = x.ptr<T>(), *a = coeffs.ptr<T>(), *gp = g.ptr<T>();
  T *dxp = dx.ptr<T>(), *dap = dcoeffs.ptr<T>();
  parallel_for(0, d.C, 1, [&](int64_t c0, int64_t c1) {
    std::vector<double> da(d.K);
    for (int64_t c = c0; c < c1; ++c) {
      std::fill(da.begin(), da.end(), 0.0);
      for (int64_t n = 0; n < d.N; ++n) {
        const T* xs = xp + (n * d.C + c) * d.HW;
        T* dxs = dxp + (n * d.C + c) * d.HW;
        for (int64_t i = 0; i < d.HW; ++i) {
          const double xv = xs[i];
          double prev = 1, s = 0;  // prev = x^(k-1)
          for (int64_t k = 0; k < d.K; ++k) {
            const double gk = gp[((n * d.K + k) * d.C + c) * d.HW + i];
            s += (k + 1) * a[k * d.C + c] * prev * gk;
            prev *= xv;
            da[k] += prev * gk;
          }
          dxs[i] = static_cast<T>(s);
        }
      }
      for (int64_t k = 0; k < d.K; ++k) dap[k * d.C + c] = static_cast<T>(da[k]);
    }
  });
}

// in: x, coeffs, dOut [N, order*C, H, W]; out: dx [N, C, H, W], dcoeffs [order, C].
void tpen_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, backward_typed<T>(in[0], in[1], in[2], out[0], out[1]));
}
SC_KERNEL("tpen_backward", cpu, tpen_backward_kernel);

}  // namespace
}  // namespace sc
