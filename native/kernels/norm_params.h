// Host-side argument handling of batch and layer normalisation, shared by the CPU backend
// (native/kernels/norm.cc) and the CUDA backend (native/cuda/norm.cu). Plain C++.
#pragma once
#include <cstddef>
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

}  // namespace norm
}  // namespace sc
