// GEMM throughput benchmark: square float GEMM at several sizes for every ISA path the CPU
// supports, reported against the measured FMA peak of that path.
//   g++ -std=c++17 -O2 -pthread -Inative native/core/*.cc native/kernels/gemm.cc \
//       native/kernels/conv.cc native/kernels/test/gemm_bench.cc -o build/gemm_bench
//   build/gemm_bench [threads] [isa]
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "kernels/gemm.h"

// The host may be shared, so every figure is the best of several short rounds, measured two
// ways: wall clock, and process CPU time scaled by the thread count (which ignores time the
// threads were descheduled by other processes; it is what the code achieves while it runs).
struct Rate {
  double wall = 0, cpu = 0;  // GFLOP/s
};

static double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

template <typename F>
static Rate best_rate(double flops_per_call, int threads, double round_s, int rounds, F&& call) {
  call();
  auto t0 = std::chrono::steady_clock::now();
  call();
  const double once = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int reps = std::max(1, (int)(round_s / std::max(once, 1e-7)));
  Rate r;
  for (int round = 0; round < rounds; ++round) {
    const double c0 = cpu_seconds();
    auto w0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) call();
    const double w = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    const double c = cpu_seconds() - c0;
    r.wall = std::max(r.wall, flops_per_call * reps / w * 1e-9);
    r.cpu = std::max(r.cpu, flops_per_call * reps / (c / threads) * 1e-9);
  }
  return r;
}

static Rate bench(int64_t n, int threads) {
  std::vector<float> A(n * n), B(n * n), C(n * n);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> U(-1, 1);
  for (auto& v : A) v = U(rng);
  for (auto& v : B) v = U(rng);
  return best_rate(2.0 * n * n * n, threads, 0.05, 12, [&] {
    sc::gemm<float>(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(), n);
  });
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
    // Peak from the per-thread-CPU-time calibration; best of a few calls.
    double peak = 0;
    for (int i = 0; i < 3; ++i) peak = std::max(peak, sc::measure_fma_peak_gflops(threads));
    std::printf("isa=%s threads=%d fma_peak=%.1f GFLOP/s\n", sc::gemm_isa(), threads, peak);
    for (int64_t n : {64, 128, 256, 512, 1024}) {
      const Rate g = bench(n, threads);
      std::printf("  sgemm n=%-5lld wall %7.1f GFLOP/s %5.1f%% of peak | cpu-time %7.1f GFLOP/s %5.1f%% of peak\n",
                  (long long)n, g.wall, 100.0 * g.wall / peak, g.cpu, 100.0 * g.cpu / peak);
    }
    std::fflush(stdout);
  }
  return 0;
}
