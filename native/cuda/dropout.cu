// Dropout / dropout2d on the CUDA backend (mirror native/kernels/dropout.cc): the same
// counter-based hash (splitmix64 finaliser over seed-offset counters), so the masks are
// identical to the CPU backend's for the same seed.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"
#include "kernels/dropout_hash.h"

namespace sc {
namespace {

using dropout::keep;

template <typename T>
__global__ void dropout_k(const T* __restrict__ x, T* __restrict__ y, int64_t n, int64_t group, uint64_t seed,
                          double p, T scale) {
  SC_GRID_STRIDE(i, n) {
    if (group > 1) {
      const T k = keep(seed, (uint64_t)(i / group), p) ? scale : T(0);
      y[i] = x[i] * k;
    } else {
      y[i] = keep(seed, (uint64_t)i, p) ? x[i] * scale : T(0);
    }
  }
}

template <typename T>
void dropout_typed(const TArg& x, const TArg& y, uint64_t seed, double p, int64_t group) {
  const int64_t n = x.numel();
  if (n == 0) return;
  KLAUNCH(dropout_k<T>, cu::blocks_for(n), cu::kThreads, 0, 0)
  (x.ptr<T>(), y.ptr<T>(), n, group, seed, p, static_cast<T>(1.0 / (1.0 - p)));
  cu::check_launch("dropout");
}

// in: x (contiguous); out: y; attrs: p in [0, 1), seed, group (1: dropout, H*W: dropout2d).
void dropout_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const dropout::Args d = dropout::parse(in, at);
  SC_FLOAT_DISPATCH(in[0].dtype, T, dropout_typed<T>(in[0], out[0], d.seed, d.p, d.group));
}
SC_KERNEL("dropout", cuda, dropout_kernel);

}  // namespace
}  // namespace sc
