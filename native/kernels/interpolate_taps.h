// Host-side planning of 2-D resizing, shared by the CPU backend (native/kernels/interpolate.cc)
// and the CUDA backend (native/cuda/interpolate.cu): argument checks and the per-axis source
// taps and weights with PyTorch's coordinate rules, so both backends read the same pixels with
// the same weights. Plain C++ (also compiled by nvcc).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/kernel.h"

namespace sc {
namespace interp {

// One output coordinate: the two source taps and their weights (nearest: i1 == i0, w1 == 0).
struct Tap {
  int64_t i0, i1;
  double w0, w1;
};

// scale_attr is the user's scale factor for this axis, or 0 when an explicit size was given.
inline std::vector<Tap> taps(int64_t in, int64_t out, double scale_attr, bool bilinear, bool align) {
  std::vector<Tap> t(out);
  if (!bilinear) {
    // PyTorch's nearest_idx computes in float: floor(dst * scale), scale = 1/factor or in/out.
    const float scale = scale_attr > 0 ? static_cast<float>(1.0 / scale_attr) : static_cast<float>(in) / static_cast<float>(out);
    for (int64_t o = 0; o < out; ++o) {
      const int64_t i = std::min(static_cast<int64_t>(std::floor(static_cast<float>(o) * scale)), in - 1);
      t[o] = {i, i, 1.0, 0.0};
    }
    return t;
  }
  double scale;
  if (align) scale = out > 1 ? static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
  else scale = scale_attr > 0 ? 1.0 / scale_attr : static_cast<double>(in) / static_cast<double>(out);
  for (int64_t o = 0; o < out; ++o) {
    double src = align ? scale * o : scale * (o + 0.5) - 0.5;
    if (src < 0) src = 0;
    const int64_t i0 = std::min(static_cast<int64_t>(src), in - 1);
    const int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
    const double l1 = src - i0;
    t[o] = {i0, i1, 1.0 - l1, l1};
  }
  return t;
}

// x: the full-size tensor [N, C, H, W]; y: the resized one [N, C, OH, OW]. attrs: mode
// ('bilinear' | 'nearest'), alignCorners, scales [sh, sw] (0 where an explicit size was given).
struct Resize {
  int64_t planes, H, W, OH, OW;
  std::vector<Tap> th, tw;
};

inline Resize plan(const TArg& x, const TArg& y, const Attrs& at) {
  if (x.ndim != 4 || y.ndim != 4) throw KernelError("interpolate: expected 4-D [N, C, H, W] tensors");
  const std::string mode = at.str("mode");
  if (mode != "bilinear" && mode != "nearest") throw KernelError("interpolate: unknown mode '" + mode + "'");
  const bool bil = mode == "bilinear", align = at.b("alignCorners");
  const auto sc = at.list("scales");
  if (sc.size() < 2) throw KernelError("interpolate: scales needs 2 values");
  Resize r{x.shape[0] * x.shape[1], x.shape[2], x.shape[3], y.shape[2], y.shape[3], {}, {}};
  r.th = taps(r.H, r.OH, sc[0], bil, align);
  r.tw = taps(r.W, r.OW, sc[1], bil, align);
  return r;
}

}  // namespace interp
}  // namespace sc
