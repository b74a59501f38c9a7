// Host-side argument handling of batch, layer and group normalisation, shared by the CPU backend
// (native/kernels/norm.cc) and the CUDA backend (native/cuda/norm.cu). Plain C++.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/kernel.h"

namespace sc {
namespace norm {

// Optional inputs follow the leading ones in a fixed order; the attrs say which are present.
struct Opt {
  const TArg* weight = nullptr;
  const TArg* bias = nullptr;
  const TArg* rmean = nullptr;
  const TArg* rvar = nullptr;
};

inline Opt optional_inputs(const std::vector<TArg>& in, size_t first, const Attrs& at, bool running) {
  Opt o;
  size_t i = first;
  auto next = [&]() -> const TArg* {
    if (i >= in.size()) throw KernelError("normalisation: fewer inputs than the attrs announce");
    return &in[i++];
  };
  if (at.b("hasWeight")) o.weight = next();
  if (at.b("hasBias")) o.bias = next();
  if (running && at.b("hasRunning")) { o.rmean = next(); o.rvar = next(); }
  return o;
}

// layer_norm_backward's inputs: gy, x, weight? (attr hasWeight), mean, invstd; attrs: d (the
// normalised length D; R = rows).
template <typename T>
struct LnBackward {
  const T *g, *x, *w, *mean, *inv;  // w is null without a weight
  int64_t D, R;
};

template <typename T>
LnBackward<T> ln_backward_inputs(const std::vector<TArg>& in, const Attrs& at) {
  const bool hw = at.b("hasWeight");
  const int64_t D = at.i("d"), R = D > 0 ? in[1].numel() / D : 0;
  return {in[0].ptr<T>(), in[1].ptr<T>(), hw ? in[2].ptr<T>() : nullptr, in[hw ? 3 : 2].ptr<T>(), in[hw ? 4 : 3].ptr<T>(), D, R};
}

// group_norm_fused's rows are (image, group): Cg = C / G channel planes of S values each.
struct GnShape {
  int64_t N, C, G, Cg, S;
  bool relu;  // attr post: "relu" after the affine
};
inline GnShape gn_shape(const TArg& x, const Attrs& at, const char* what) {
  GnShape s;
  s.N = x.shape[0];
  s.C = x.shape[1];
  s.G = at.i("groups");
  if (s.G < 1 || s.C % s.G != 0) throw KernelError(std::string(what) + ": channels not divisible by groups");
  s.Cg = s.C / s.G;
  s.S = x.numel() / std::max<int64_t>(1, s.N * s.C);
  const std::string post = at.str("post", "none");
  if (post != "none" && post != "relu") throw KernelError(std::string(what) + ": post must be relu or none, got " + post);
  s.relu = post == "relu";
  return s;
}

// group_norm_fused_backward's inputs: gy, x, weight? (attr hasWeight), mean, invstd, then the
// forward's output y with post relu (its mask).
template <typename T>
struct GnBackward {
  const T *g, *x, *w, *mean, *inv, *y;  // w null without a weight, y without the ReLU
  GnShape s;
};

template <typename T>
GnBackward<T> gn_backward_inputs(const std::vector<TArg>& in, const Attrs& at) {
  const GnShape s = gn_shape(in[1], at, "group_norm_fused_backward");
  const size_t k = at.b("hasWeight") ? 3 : 2;
  if (in.size() < k + 2 + (s.relu ? 1 : 0)) throw KernelError("group_norm_fused_backward: fewer inputs than the attrs announce");
  return {in[0].ptr<T>(), in[1].ptr<T>(), k == 3 ? in[2].ptr<T>() : nullptr, in[k].ptr<T>(), in[k + 1].ptr<T>(),
          s.relu ? in[k + 2].ptr<T>() : nullptr, s};
}

}  // namespace norm
}  // namespace sc
