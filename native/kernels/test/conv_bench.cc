// Times conv2d forward / backward-input / backward-weight (float) on CMUNeXt-like layers.
//   g++ -std=c++17 -O2 -pthread -Inative native/core/*.cc native/kernels/gemm.cc \
//       native/kernels/conv*.cc native/kernels/fast_gelu.cc native/kernels/test/conv_bench.cc \
//       -o build/conv_bench
// Reports the best of several rounds: wall ms and GFLOP/s (2*MACs / wall time).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/kernel.h"
#include "core/parallel.h"
#include "kernels/gemm.h"

using namespace sc;

static TArg arg(std::vector<float>& v, std::vector<int64_t> s) {
  TArg t;
  t.data = v.data();
  t.ndim = (int)s.size();
  int64_t st = 1;
  for (int i = t.ndim - 1; i >= 0; --i) { t.shape[i] = s[i]; t.strides[i] = st; st *= s[i]; }
  return t;
}

template <typename F>
static double best_ms(F&& f) {
  f();
  double best = 1e30;
  for (int r = 0; r < 7; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

int main() {
  struct L { const char* name; int64_t N, C, H, W, OC, K, s, p, g; };
  const L layers[] = {
      {"dw 3x3  16@256", 1, 16, 256, 256, 16, 3, 1, 1, 16},
      {"dw 7x7  32@128", 1, 32, 128, 128, 32, 7, 1, 3, 32},
      {"dw 9x9 128@32 ", 1, 128, 32, 32, 128, 9, 1, 4, 128},
      {"pw 1x1 32->128@128", 1, 32, 128, 128, 128, 1, 1, 0, 1},
      {"3x3 32->64@128", 1, 32, 128, 128, 64, 3, 1, 1, 1},
      {"3x3 g2 64->64@64", 2, 64, 64, 64, 64, 3, 1, 1, 2},
  };
  std::printf("isa=%s threads=%d\n", gemm_isa(), num_threads());
  for (const L& l : layers) {
    const int64_t OH = (l.H + 2 * l.p - l.K) / l.s + 1, OW = (l.W + 2 * l.p - l.K) / l.s + 1;
    std::vector<float> x(l.N * l.C * l.H * l.W, 0.5f), w(l.OC * (l.C / l.g) * l.K * l.K, 0.1f),
        b(l.OC, 0.f), y(l.N * l.OC * OH * OW), gy(y.size(), 0.3f), gx(x.size()), gw(w.size()), gb(l.OC);
    Attrs a;
    a.lists["stride"] = {(double)l.s, (double)l.s};
    a.lists["padding"] = {(double)l.p, (double)l.p};
    a.lists["dilation"] = {1, 1};
    a.nums["groups"] = (double)l.g;
    a.lists["inputShape"] = {(double)l.N, (double)l.C, (double)l.H, (double)l.W};
    const std::vector<int64_t> xs{l.N, l.C, l.H, l.W}, ws{l.OC, l.C / l.g, l.K, l.K}, ys{l.N, l.OC, OH, OW};
    const double flops = 2.0 * l.N * l.OC * OH * OW * (l.C / l.g) * l.K * l.K;
    const double f = best_ms([&] { KernelRegistry::find("conv2d", Backend::cpu)({arg(x, xs), arg(w, ws), arg(b, {l.OC})}, {arg(y, ys)}, a); });
    const double bi = best_ms([&] { KernelRegistry::find("conv2d_backward_input", Backend::cpu)({arg(gy, ys), arg(w, ws)}, {arg(gx, xs)}, a); });
    const double bw = best_ms([&] { KernelRegistry::find("conv2d_backward_weight", Backend::cpu)({arg(x, xs), arg(gy, ys)}, {arg(gw, ws), arg(gb, {l.OC})}, a); });
    std::printf("%-20s fwd %7.2f ms %6.1f GF/s | bwd_in %7.2f ms %6.1f GF/s | bwd_w %7.2f ms %6.1f GF/s\n", l.name,
                f, flops / f * 1e-6, bi, flops / bi * 1e-6, bw, flops / bw * 1e-6);
  }
}
