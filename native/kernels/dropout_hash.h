// Dropout's counter-based RNG and argument checks, shared by the CPU backend
// (native/kernels/dropout.cc) and the CUDA backend (native/cuda/dropout.cu): whether element (or
// channel) i is kept depends only on (seed, i), so both backends draw bit-identical masks.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../core/kernel.h"
#include "host_device.h"

namespace sc {
namespace dropout {

// splitmix64's finaliser over seed-offset counters. Every backend uses exactly this:
//   h = mix(seed * 0x9E3779B97F4A7C15 + i + 1);  keep = (h >> 11) * 2^-53 >= p
SC_HOST_DEVICE uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
SC_HOST_DEVICE bool keep(uint64_t seed, uint64_t i, double p) {
  const uint64_t h = mix64(seed * 0x9E3779B97F4A7C15ull + i + 1);
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0) >= p;
}

// attrs: p in [0, 1), seed (an integer below 2^53), group (elements sharing one draw: 1 for
// dropout, H*W for dropout2d).
struct Args {
  double p;
  int64_t group;
  uint64_t seed;
};

inline Args parse(const std::vector<TArg>& in, const Attrs& at) {
  Args r;
  r.p = at.num("p");
  if (!(r.p >= 0 && r.p < 1)) throw KernelError("dropout: p must be in [0, 1)");
  r.group = std::max<int64_t>(1, at.i("group", 1));
  if (in[0].numel() % r.group != 0) throw KernelError("dropout: group does not divide the element count");
  r.seed = static_cast<uint64_t>(at.num("seed"));
  return r;
}

}  // namespace dropout
}  // namespace sc
