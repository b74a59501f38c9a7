// Dropout with a counter-based RNG: whether element (or channel) i is kept depends only on
// (seed, i), so every backend draws the same mask, the forward is reproducible, and the
// backward is the same kernel applied to the gradient with the same seed (the op is linear).
#include <algorithm>
#include <cstdint>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "dropout_hash.h"

namespace sc {
namespace {

using dropout::keep;

template <typename T>
void dropout_typed(const TArg& x, const TArg& y, uint64_t seed, double p, int64_t group) {
  const T* xp = x.ptr<T>();
  T* yp = y.ptr<T>();
  const int64_t n = x.numel(), groups = n / group;
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  parallel_for(0, groups, std::max<int64_t>(1, 32768 / group), [&](int64_t a, int64_t b) {
    for (int64_t gi = a; gi < b; ++gi) {
      const T* s = xp + gi * group;
      T* d = yp + gi * group;
      if (group > 1) {  // one draw per channel
        const T k = keep(seed, gi, p) ? scale : T(0);
        for (int64_t i = 0; i < group; ++i) d[i] = s[i] * k;
      } else {
        d[0] = keep(seed, gi, p) ? s[0] * scale : T(0);
      }
    }
  });
}

// in: x (contiguous); out: y; attrs: p in [0, 1), seed (an integer below 2^53), group (elements
// sharing one draw: 1 for dropout, H*W for dropout2d).
void dropout_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const dropout::Args d = dropout::parse(in, at);
  SC_FLOAT_DISPATCH(in[0].dtype, T, dropout_typed<T>(in[0], out[0], d.seed, d.p, d.group));
}
SC_KERNEL("dropout", cpu, dropout_kernel);

}  // namespace
}  // namespace sc
