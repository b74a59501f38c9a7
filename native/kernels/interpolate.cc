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

// Separable: each output row blends two horizontally resized source rows, and each resized
// source row is computed once per plane and reused by the output rows that read it (about two
// per source row when upsampling x2), in T with the weights rounded to T once.
template <typename T>
void interp_typed(const TArg& x, const TArg& y, const Resize& r) {
  std::vector<int64_t> wi0(r.OW), wi1(r.OW);
  std::vector<T> ww0(r.OW), ww1(r.OW);
  for (int64_t ow = 0; ow < r.OW; ++ow) {
    wi0[ow] = r.tw[ow].i0, wi1[ow] = r.tw[ow].i1;
    ww0[ow] = static_cast<T>(r.tw[ow].w0), ww1[ow] = static_cast<T>(r.tw[ow].w1);
  }
  parallel_for(0, r.planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, r.OH * r.OW)), [&](int64_t a, int64_t b) {
    std::vector<T> buf(2 * r.OW);
    T* rows[2] = {buf.data(), buf.data() + r.OW};
    for (int64_t pl = a; pl < b; ++pl) {
      const T* xs = x.ptr<T>() + pl * r.H * r.W;
      T* ys = y.ptr<T>() + pl * r.OH * r.OW;
      int64_t held[2] = {-1, -1};
      // The horizontally resized source row i, from the two-row cache.
      auto row = [&](int64_t i, int64_t keep) -> const T* {
        for (int k = 0; k < 2; ++k)
          if (held[k] == i) return rows[k];
        const int k = held[0] == keep ? 1 : 0;
        const T* src = xs + i * r.W;
        T* dst = rows[k];
        for (int64_t ow = 0; ow < r.OW; ++ow) dst[ow] = ww0[ow] * src[wi0[ow]] + ww1[ow] * src[wi1[ow]];
        held[k] = i;
        return dst;
      };
      for (int64_t oh = 0; oh < r.OH; ++oh) {
        const Tap& h = r.th[oh];
        const T* r0 = row(h.i0, -1);
        const T* r1 = row(h.i1, h.i0);
        const T w0 = static_cast<T>(h.w0), w1 = static_cast<T>(h.w1);
        T* yo = ys + oh * r.OW;
        for (int64_t ow = 0; ow < r.OW; ++ow) yo[ow] = w0 * r0[ow] + w1 * r1[ow];
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
