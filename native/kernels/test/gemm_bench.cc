// GEMM throughput benchmark: square float GEMM at several sizes for every ISA path the CPU
// supports, reported against the measured FMA peak of that path.
//   g++ -std=c++17 -O2 -pthread -Inative native/core/*.cc native/kernels/gemm.cc \
//       native/kernels/conv.cc native/kernels/test/gemm_bench.cc -o build/gemm_bench
//   build/gemm_bench [threads] [isa]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "kernels/gemm.h"

static double bench(int64_t n) {
  std::vector<float> A(n * n), B(n * n), C(n * n);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> U(-1, 1);
  for (auto& v : A) v = U(rng);
  for (auto& v : B) v = U(rng);
  sc::gemm<float>(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(), n);
  double best = 1e30;
  const double flops = 2.0 * n * n * n;
  // Repeat until ~0.3 s of work, keep the best of several rounds (noise on a shared host).
  int reps = std::max(1, (int)(3e9 / flops / 8));
  for (int round = 0; round < 5; ++round) {
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r)
      sc::gemm<float>(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(), n);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s / reps);
  }
  return flops / best * 1e-9;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  sc::set_num_threads(threads);
  threads = sc::num_threads();
  std::vector<std::string> isas;
  if (argc > 2) isas.push_back(argv[2]);
  else isas = {"avx512", "avx2", "generic"};
  for (const auto& want : isas) {
    sc::gemm_force_isa(want.c_str());
    if (want != sc::gemm_isa()) continue;  // not supported by this CPU
    const double peak = sc::measure_fma_peak_gflops(threads);
    std::printf("isa=%s threads=%d fma_peak=%.1f GFLOP/s\n", sc::gemm_isa(), threads, peak);
    for (int64_t n : {64, 128, 256, 512, 1024}) {
      const double g = bench(n);
      std::printf("  sgemm n=%-5lld %8.1f GFLOP/s  %5.1f%% of peak\n", (long long)n, g,
                  100.0 * g / peak);
    }
    std::fflush(stdout);
  }
  return 0;
}
