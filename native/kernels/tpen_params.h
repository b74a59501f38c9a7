// Shape checks of the T-PEN power expansion, shared by the CPU backend (native/kernels/tpen.cc)
// and the CUDA backend (native/cuda/tpen.cu). Plain C++.
#pragma once
#include <cstdint>

#include "../core/kernel.h"

namespace sc {
namespace tpen {

struct Dims { int64_t N, C, HW, K; };

// x [N, C, H, W], coeffs [order, C].
inline Dims dims(const TArg& x, const TArg& coeffs) {
  if (x.ndim != 4 || coeffs.ndim != 2 || coeffs.shape[1] != x.shape[1])
    throw KernelError("tpen: expected x [N, C, H, W] and coeffs [order, C]");
  return {x.shape[0], x.shape[1], x.shape[2] * x.shape[3], coeffs.shape[0]};
}

}  // namespace tpen
}  // namespace sc
