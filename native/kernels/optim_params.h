// Host-side argument handling of the fused optimiser updates, shared by the CPU backend
// (native/kernels/optim.cc) and the CUDA backend (native/cuda/optim.cu). Plain C++.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "../core/kernel.h"

namespace sc {
namespace optim {

inline void check_same(const std::vector<TArg>& ts, const char* what) {
  for (auto& t : ts)
    if (t.numel() != ts[0].numel() || t.dtype != ts[0].dtype || !t.contiguous())
      throw KernelError(std::string(what) + ": parameter, gradient and state must be contiguous with equal size and dtype");
}

// attrs: lr, momentum, dampening, weightDecay, nesterov, first (1 on the step that creates the buffer).
struct Sgd {
  double lr, momentum, dampening, wd;
  bool nesterov, first;
};
inline Sgd sgd(const Attrs& a) {
  return {a.num("lr"), a.num("momentum", 0), a.num("dampening", 0), a.num("weightDecay", 0), a.b("nesterov"), a.b("first")};
}

// attrs: lr, beta1, beta2, eps, weightDecay, step (1-based), decoupled (AdamW).
struct Adam {
  double lr, b1, b2, eps, wd, step;
  bool decoupled;
  double bc1() const { return 1 - std::pow(b1, step); }              // bias correction of m
  double bc2s() const { return std::sqrt(1 - std::pow(b2, step)); }  // sqrt of v's
};
inline Adam adam(const Attrs& a) {
  return {a.num("lr"), a.num("beta1"), a.num("beta2"), a.num("eps"), a.num("weightDecay", 0), a.num("step"), a.b("decoupled")};
}

}  // namespace optim
}  // namespace sc
