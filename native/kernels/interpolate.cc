// 2-D resizing of contiguous NCHW tensors with PyTorch's coordinate rules (bilinear with or
// without align_corners, nearest), and the backward scatter-add. Per-axis source indices and
// weights are computed once; planes (n, c) are split over threads, so no atomics are needed.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "interpolate_taps.h"

namespace sc {
namespace {

using interp::Resize;
using interp::Tap;
using interp::plan;

template <typename T>
void interp_typed(const TArg& x, const TArg& y, const Resize& r) {
  parallel_for(0, r.planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, r.OH * r.OW)), [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* xs = x.ptr<T>() + pl * r.H * r.W;
      T* ys = y.ptr<T>() + pl * r.OH * r.OW;
      for (int64_t oh = 0; oh < r.OH; ++oh) {
        const Tap& h = r.th[oh];
        const T* row0 = xs + h.i0 * r.W;
        const T* row1 = xs + h.i1 * r.W;
        for (int64_t ow = 0; ow < r.OW; ++ow) {
          const Tap& w = r.tw[ow];
          ys[oh * r.OW + ow] = static_cast<T>(h.w0 * (w.w0 * row0[w.i0] + w.w1 * row0[w.i1]) +
                                              h.w1 * (w.w0 * row1[w.i0] + w.w1 * row1[w.i1]));
        }
      }
    }
  });
}

template <typename T>
void interp_bwd_typed(const TArg& g, const TArg& gx, const Resize& r) {
  parallel_for(0, r.planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, r.OH * r.OW)), [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* gs = g.ptr<T>() + pl * r.OH * r.OW;
      T* dst = gx.ptr<T>() + pl * r.H * r.W;
      std::fill(dst, dst + r.H * r.W, T(0));
      for (int64_t oh = 0; oh < r.OH; ++oh) {
        const Tap& h = r.th[oh];
        T* row0 = dst + h.i0 * r.W;
        T* row1 = dst + h.i1 * r.W;
        for (int64_t ow = 0; ow < r.OW; ++ow) {
          const Tap& w = r.tw[ow];
          const double v = gs[oh * r.OW + ow];
          row0[w.i0] += static_cast<T>(h.w0 * w.w0 * v);
          row0[w.i1] += static_cast<T>(h.w0 * w.w1 * v);
          row1[w.i0] += static_cast<T>(h.w1 * w.w0 * v);
          row1[w.i1] += static_cast<T>(h.w1 * w.w1 * v);
        }
      }
    }
  });
}

// in: x; out: y [N, C, OH, OW]; attrs: mode ('bilinear' | 'nearest'), alignCorners,
// scales [sh, sw] (the scale factors the caller gave, 0 where an explicit size was given).
void interpolate_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const Resize r = plan(in[0], out[0], at);
  SC_FLOAT_DISPATCH(in[0].dtype, T, interp_typed<T>(in[0], out[0], r));
}
SC_KERNEL("interpolate", cpu, interpolate_kernel);

// in: gy; out: gx (the input's shape); attrs as interpolate.
void interpolate_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const Resize r = plan(out[0], in[0], at);
  SC_FLOAT_DISPATCH(in[0].dtype, T, interp_bwd_typed<T>(in[0], out[0], r));
}
SC_KERNEL("interpolate_backward", cpu, interpolate_backward_kernel);

}  // namespace
}  // namespace sc
