// Self-test of the CUDA emulator: kernels written the way real kernels are (KLAUNCH,
// SC_DYN_SMEM, __shared__ tiles, warp shuffles), run under every schedule and compared with
// plain C++ references, plus deliberately broken kernels the emulator must catch.
//   g++ -std=c++17 -O1 -g -Wall -DCUDA_EMU -Inative -x c++ native/cuda/emu/emu.cc
//       native/cuda/emu/selftest.cc -o build/emu-selftest -lpthread
// Prints `PASS name` / `FAIL name: why` per check (name = check.schedule) and `INFO ...` lines;
// exits non-zero if anything failed.
#include "../compat.cuh"

#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr unsigned FULL = 0xffffffffu;
int failures = 0;
std::string sched_name;

void report(const std::string& name, bool ok, const std::string& why = "") {
  if (ok) std::printf("PASS %s.%s\n", name.c_str(), sched_name.c_str());
  else {
    std::printf("FAIL %s.%s: %s\n", name.c_str(), sched_name.c_str(), why.c_str());
    ++failures;
  }
  std::fflush(stdout);
}

// Runs a check body; any exception is a failure of that check, not of the program.
void check(const std::string& name, const std::function<std::string()>& body) {
  try {
    std::string why = body();
    report(name, why.empty(), why);
  } catch (const std::exception& e) {
    report(name, false, std::string("unexpected exception: ") + e.what());
  }
}

// A device buffer (cudaMalloc'd, so the emulator's allocation path is exercised too).
template <class T> struct DBuf {
  T* p = nullptr;
  size_t n;
  explicit DBuf(size_t n_) : n(n_) { SC_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T))); }
  explicit DBuf(const std::vector<T>& h) : DBuf(h.size()) {
    SC_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  DBuf(const DBuf&) = delete;
  ~DBuf() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    SC_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

std::vector<float> randv(size_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Empty string when close, else a description of the worst element.
template <class A, class B> std::string compare(const A& got, const B& want, double tol) {
  if (got.size() != want.size()) return "size mismatch";
  for (size_t i = 0; i < got.size(); ++i) {
    double g = got[i], w = want[i];
    if (!(std::fabs(g - w) <= tol * (1 + std::fabs(w))))
      return "element " + std::to_string(i) + ": got " + std::to_string(g) + ", want " + std::to_string(w);
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
std::string at_line(int line) { return "selftest.cc:" + std::to_string(line); }

// Expects a KernelError whose message contains every part (computed after the run, because the
// kernels record the lines of their barriers while they run).
std::string expect_error(const std::function<void()>& run,
                         const std::function<std::vector<std::string>()>& parts) {
  try {
    run();
  } catch (const sc::KernelError& e) {
    std::string m = e.what();
    for (auto& p : parts())
      if (!contains(m, p)) return "message lacks '" + p + "': " + m;
    return "";
  }
  return "no error was raised";
}

// ---------------------------------------------------------------- kernels
constexpr int TS = 16;
__global__ void sgemm(const float* A, const float* B, float* C, int M, int N, int K) {
  __shared__ float As[TS][TS];
  __shared__ float Bs[TS][TS];
  int tx = threadIdx.x, ty = threadIdx.y;
  int row = blockIdx.y * TS + ty, col = blockIdx.x * TS + tx;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += TS) {
    As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.f;
    Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(k0 + ty) * N + col] : 0.f;
    __syncthreads();
    for (int k = 0; k < TS; ++k) acc += As[ty][k] * Bs[k][tx];
    __syncthreads();
  }
  if (row < M && col < N) C[row * N + col] = acc;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(FULL, v, o);
  return v;
}

// One partial sum per block: warp shuffles, then the warp partials through dynamic shared memory.
__global__ void block_sum(const float* x, float* out, int n) {
  SC_DYN_SMEM(float, part);
  float v = 0.f;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) v += x[i];
  v = warp_sum(v);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x / 32;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nw ? part[lane] : 0.f;
    v = warp_sum(v);
    if (lane == 0) out[blockIdx.x] = v;
  }
}

// One warp per row; blockDim = (32, rows per block).
__global__ void softmax_rows(const float* x, float* y, int rows, int cols) {
  int row = blockIdx.x * blockDim.y + threadIdx.y;
  if (row >= rows) return;
  const float* xr = x + (size_t)row * cols;
  float m = -INFINITY;
  for (int c = threadIdx.x; c < cols; c += 32) m = fmaxf(m, xr[c]);
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(FULL, m, o));
  float s = 0.f;
  for (int c = threadIdx.x; c < cols; c += 32) s += __expf(xr[c] - m);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(FULL, s, o);
  float inv = __fdividef(1.f, s);
  for (int c = threadIdx.x; c < cols; c += 32) y[(size_t)row * cols + c] = __expf(xr[c] - m) * inv;
}

// Depthwise 'same' convolution, one 16x16 output tile per block, input tile plus halo in
// dynamic shared memory; grid.z = channel.
template <int K> __global__ void dwconv(const float* x, const float* w, float* y, int H, int W) {
  constexpr int R = K / 2, S = TS + K - 1;
  SC_DYN_SMEM(float, tile);
  const float* xc = x + (size_t)blockIdx.z * H * W;
  int oy0 = blockIdx.y * TS, ox0 = blockIdx.x * TS;
  for (int i = threadIdx.y * TS + threadIdx.x; i < S * S; i += TS * TS) {
    int iy = oy0 + i / S - R, ix = ox0 + i % S - R;
    tile[i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xc[iy * W + ix] : 0.f;
  }
  __syncthreads();
  int oy = oy0 + threadIdx.y, ox = ox0 + threadIdx.x;
  if (oy >= H || ox >= W) return;
  const float* wc = w + blockIdx.z * K * K;
  float acc = 0.f;
  for (int ky = 0; ky < K; ++ky)
    for (int kx = 0; kx < K; ++kx) acc += tile[(threadIdx.y + ky) * S + threadIdx.x + kx] * wc[ky * K + kx];
  y[(size_t)blockIdx.z * H * W + oy * W + ox] = acc;
}

__global__ void histogram(const int* v, int n, unsigned* hist, int nbins, float* total, int* vmax,
                          unsigned long long* count) {
  __shared__ unsigned local[64];
  for (int i = threadIdx.x; i < nbins; i += blockDim.x) local[i] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    atomicAdd(&local[v[i]], 1u);
    atomicAdd(total, 0.5f);
    atomicMax(vmax, v[i]);
    atomicAdd(count, 1ull);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nbins; i += blockDim.x) atomicAdd(&hist[i], local[i]);
}

__global__ void ballot_k(const float* x, int n, unsigned* masks, int* anyall) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  int pred = i < n && x[i] > 0.f;
  unsigned b = __ballot_sync(FULL, pred);
  int an = __any_sync(FULL, pred), al = __all_sync(FULL, pred);
  if ((threadIdx.x & 31) == 0) {
    masks[i / 32] = b;
    anyall[i / 32] = an | (al << 1) | (__popc(b) << 2);
  }
}

// Inclusive warp scan with __shfl_up_sync, and a width-8 broadcast with __shfl_sync.
__global__ void warp_scan(const int* x, int* scan, int* bcast) {
  int i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x & 31;
  int v = x[i];
  for (int o = 1; o < 32; o <<= 1) {
    int u = __shfl_up_sync(FULL, v, o);
    if (lane >= o) v += u;
  }
  scan[i] = v;
  bcast[i] = __shfl_sync(FULL, x[i], 3, 8);  // lane 3 of each group of 8
}

// Lanes >= 16 exit; the rest read from them: the emulator returns NaN, like the GPU's garbage.
__global__ void shfl_from_exited(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_down_sync(FULL, 1.f, 8);
}

// ---- broken kernels ----
// (a) Missing barrier between the shared write and the read of a neighbour's entry.
__global__ void shift_nosync(const float* in, float* out) {
  __shared__ float s[128];
  int t = threadIdx.x, base = blockIdx.x * blockDim.x;
  s[t] = in[base + t];
  // BUG: __syncthreads() missing here.
  out[base + t] = t ? s[t - 1] : 0.f;
}

int line_b1, line_b2, line_c1, line_c2, line_c3, line_d;
// (b) Threads reach different barriers.
__global__ void divergent_barrier(float* out) {
  if (threadIdx.x < 16) { line_b1 = __LINE__; __syncthreads(); }
  out[threadIdx.x] = 1.f;
  line_b2 = __LINE__; __syncthreads();
}
// (c1) Lane 31 uses a different mask than the rest of the warp.
__global__ void shfl_mask_mismatch(float* out) {
  float v = threadIdx.x;
  if (threadIdx.x == 31) { line_c1 = __LINE__; v = __shfl_sync(0x80000001u, v, 0); }
  else { line_c2 = __LINE__; v = __shfl_sync(FULL, v, 0); }
  out[threadIdx.x] = v;
}
// (c2) Lane 5 never arrives at the shuffle: it waits at a barrier instead.
__global__ void shfl_lane_at_barrier(float* out) {
  float v = threadIdx.x;
  if (threadIdx.x == 5) { line_c3 = __LINE__; __syncthreads(); }
  else v = __shfl_down_sync(FULL, v, 1);
  out[threadIdx.x] = v;
}
// (d) Threads exit while others wait at a barrier.
__global__ void exit_at_barrier(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = 1.f;
  line_d = __LINE__; __syncthreads();
}
__global__ void throwing_kernel(float* out) {
  out[threadIdx.x] = 1.f;
  __syncthreads();
  if (threadIdx.x == 7) throw sc::KernelError("boom from thread 7");
}

// ---------------------------------------------------------------- checks
std::string run_sgemm(int M, int N, int K, double* ms = nullptr) {
  auto a = randv(size_t(M) * K, 1), b = randv(size_t(K) * N, 2);
  DBuf<float> da(a), db(b), dc(size_t(M) * N);
  // Timed runs: best of three, so that first-touch page faults of fresh fiber stacks don't count.
  for (int rep = 0; rep < (ms ? 3 : 1); ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    KLAUNCH(sgemm, dim3((N + TS - 1) / TS, (M + TS - 1) / TS), dim3(TS, TS), 0, 0)(da.p, db.p, dc.p, M, N, K);
    double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (ms && (rep == 0 || t < *ms)) *ms = t;
  }
  std::vector<double> ref(size_t(M) * N, 0.0);
  for (int i = 0; i < M; ++i)
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < N; ++j) ref[size_t(i) * N + j] += double(a[size_t(i) * K + k]) * b[size_t(k) * N + j];
  return compare(dc.get(), ref, 1e-4);
}

std::string run_block_sum(int n, int threads, int blocks) {
  auto x = randv(n, 3);
  DBuf<float> dx(x), dout(blocks);
  KLAUNCH(block_sum, blocks, threads, (threads / 32) * sizeof(float), 0)(dx.p, dout.p, n);
  double got = 0, want = 0;
  for (float v : dout.get()) got += v;
  for (float v : x) want += v;
  return compare(std::vector<double>{got}, std::vector<double>{want}, 1e-4);
}

template <int K> std::string run_dwconv() {
  const int C = 3, H = 37, W = 29, S = TS + K - 1;
  auto x = randv(size_t(C) * H * W, 4), w = randv(size_t(C) * K * K, 5);
  DBuf<float> dx(x), dw(w), dy(x.size());
  KLAUNCH(dwconv<K>, dim3((W + TS - 1) / TS, (H + TS - 1) / TS, C), dim3(TS, TS), S * S * sizeof(float), 0)(
      dx.p, dw.p, dy.p, H, W);
  std::vector<double> ref(x.size(), 0.0);
  for (int c = 0; c < C; ++c)
    for (int oy = 0; oy < H; ++oy)
      for (int ox = 0; ox < W; ++ox) {
        double acc = 0;
        for (int ky = 0; ky < K; ++ky)
          for (int kx = 0; kx < K; ++kx) {
            int iy = oy + ky - K / 2, ix = ox + kx - K / 2;
            if (iy >= 0 && iy < H && ix >= 0 && ix < W)
              acc += double(x[(size_t(c) * H + iy) * W + ix]) * w[(size_t(c) * K + ky) * K + kx];
          }
        ref[(size_t(c) * H + oy) * W + ox] = acc;
      }
  return compare(dy.get(), ref, 1e-4);
}

void run_checks() {
  check("sgemm_odd", [] { return run_sgemm(37, 53, 29); });
  check("sgemm_128", [] {
    double ms = 0;
    std::string why = run_sgemm(128, 128, 128, &ms);
    std::printf("INFO sgemm_128.%s %.2f ms per launch, best of 3 (%d workers)\n", sched_name.c_str(), ms, sc::emu::workers());
    return why;
  });
  check("block_sum", [] {
    std::string a = run_block_sum(1000, 256, 3);
    return a.empty() ? run_block_sum(777, 96, 5) : a;
  });
  check("softmax", [] {
    const int rows = 37, cols = 75;
    auto x = randv(size_t(rows) * cols, 6, -4.f, 4.f);
    DBuf<float> dx(x), dy(x.size());
    KLAUNCH(softmax_rows, (rows + 3) / 4, dim3(32, 4), 0, 0)(dx.p, dy.p, rows, cols);
    std::vector<double> ref(x.size());
    for (int r = 0; r < rows; ++r) {
      double m = -1e30, s = 0;
      for (int c = 0; c < cols; ++c) m = std::max(m, double(x[r * cols + c]));
      for (int c = 0; c < cols; ++c) s += std::exp(x[r * cols + c] - m);
      for (int c = 0; c < cols; ++c) ref[r * cols + c] = std::exp(x[r * cols + c] - m) / s;
    }
    return compare(dy.get(), ref, 1e-5);
  });
  check("dwconv_k7", [] { return run_dwconv<7>(); });
  check("dwconv_k31", [] { return run_dwconv<31>(); });
  check("histogram", [] {
    const int n = 5000, nbins = 64;
    std::vector<int> v(n);
    std::mt19937 g(7);
    for (auto& x : v) x = int(g() % nbins);
    DBuf<int> dv(v), dmax(std::vector<int>{-1});
    DBuf<unsigned> dh(std::vector<unsigned>(nbins, 0));
    DBuf<float> dt(std::vector<float>{0.f});
    DBuf<unsigned long long> dc(std::vector<unsigned long long>{0});
    KLAUNCH(histogram, 6, 128, 0, 0)(dv.p, n, dh.p, nbins, dt.p, dmax.p, dc.p);
    std::vector<unsigned> ref(nbins, 0);
    for (int x : v) ref[x]++;
    std::string why = compare(dh.get(), ref, 0);
    if (why.empty() && dt.get()[0] != 0.5f * n) why = "float atomicAdd total " + std::to_string(dt.get()[0]);
    if (why.empty() && dmax.get()[0] != nbins - 1) why = "atomicMax gave " + std::to_string(dmax.get()[0]);
    if (why.empty() && dc.get()[0] != unsigned(n)) why = "u64 atomicAdd gave " + std::to_string(dc.get()[0]);
    return why;
  });
  check("ballot", [] {
    const int n = 200;  // 256 threads launched: the last warp has inactive predicates
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) x[i] = (i >= 64 && i < 96) ? 1.f : (i >= 96 && i < 128) ? -1.f : (i % 3 == 0 ? 1.f : -1.f);
    DBuf<float> dx(x);
    DBuf<unsigned> dm(8);
    DBuf<int> da(8);
    KLAUNCH(ballot_k, 4, 64, 0, 0)(dx.p, n, dm.p, da.p);
    auto m = dm.get();
    auto a = da.get();
    for (int w = 0; w < 8; ++w) {
      unsigned want = 0;
      for (int l = 0; l < 32; ++l)
        if (w * 32 + l < n && x[w * 32 + l] > 0.f) want |= 1u << l;
      int wa = (want != 0) | ((want == FULL) << 1) | (__builtin_popcount(want) << 2);
      if (m[w] != want || a[w] != wa) return "warp " + std::to_string(w) + " ballot/any/all mismatch";
    }
    return std::string();
  });
  check("warp_scan", [] {
    std::vector<int> x(64);
    for (int i = 0; i < 64; ++i) x[i] = i * 7 % 11;
    DBuf<int> dx(x), ds(64), db(64);
    KLAUNCH(warp_scan, 1, 64, 0, 0)(dx.p, ds.p, db.p);
    std::vector<int> rs(64), rb(64);
    for (int i = 0; i < 64; ++i) {
      rs[i] = x[i] + ((i & 31) ? rs[i - 1] : 0);
      rb[i] = x[(i & ~7) + 3];
    }
    std::string why = compare(ds.get(), rs, 0);
    return why.empty() ? compare(db.get(), rb, 0) : "scan: " + why;
  });
  check("shfl_poison", [] {
    DBuf<float> d(std::vector<float>(16, 0.f));
    KLAUNCH(shfl_from_exited, 1, 32, 0, 0)(d.p);
    auto o = d.get();
    for (int l = 0; l < 16; ++l)
      if (l < 8 ? o[l] != 1.f : !std::isnan(o[l]))
        return "lane " + std::to_string(l) + " got " + std::to_string(o[l]);
    return std::string();
  });

  // (a) The missing barrier hides in forward order and shows in reverse and random order.
  check("missing_sync", [] {
    const int nb = 4, nt = 128;
    auto in = randv(nb * nt, 8, 1.f, 2.f);
    DBuf<float> din(in), dout(in.size());
    KLAUNCH(shift_nosync, nb, nt, 0, 0)(din.p, dout.p);
    std::vector<float> ref(in.size());
    for (int i = 0; i < nb * nt; ++i) ref[i] = (i % nt) ? in[i - 1] : 0.f;
    bool wrong = !compare(dout.get(), ref, 0).empty();
    bool forward = sc::emu::schedule() == sc::emu::Schedule::forward;
    if (forward) return wrong ? std::string("forward order should hide the race") : std::string();
    return wrong ? std::string() : std::string("race not exposed");
  });
  check("divergent_barrier", [] {
    DBuf<float> d(32);
    return expect_error([&] { KLAUNCH(divergent_barrier, 1, 32, 0, 0)(d.p); },
                        [] { return std::vector<std::string>{"barrier divergence", at_line(line_b1), at_line(line_b2)}; });
  });
  check("shfl_mask_mismatch", [] {
    DBuf<float> d(32);
    return expect_error([&] { KLAUNCH(shfl_mask_mismatch, 1, 32, 0, 0)(d.p); },
                        [] { return std::vector<std::string>{"warp deadlock", "mismatched mask", at_line(line_c1), at_line(line_c2)}; });
  });
  check("shfl_lane_at_barrier", [] {
    DBuf<float> d(32);
    return expect_error([&] { KLAUNCH(shfl_lane_at_barrier, 1, 32, 0, 0)(d.p); },
                        [] { return std::vector<std::string>{"warp deadlock", "lane 5 waits at __syncthreads", at_line(line_c3)}; });
  });
  check("exit_at_barrier", [] {
    DBuf<float> d(32);
    return expect_error([&] { KLAUNCH(exit_at_barrier, 1, 32, 0, 0)(d.p); },
                        [] { return std::vector<std::string>{"barrier divergence", "exited", at_line(line_d)}; });
  });
  check("kernel_exception", [] {
    DBuf<float> d(64);
    return expect_error([&] { KLAUNCH(throwing_kernel, 2, 64, 0, 0)(d.p); },
                        [] { return std::vector<std::string>{"boom from thread 7"}; });
  });
  check("launch_config", [] {
    DBuf<float> d(32);
    return expect_error([&] { KLAUNCH(exit_at_barrier, 1, 2048, 0, 0)(d.p); },
                        [] { return std::vector<std::string>{"invalid launch configuration", "selftest.cc:"}; });
  });
  // After all those errors the emulator must be as good as new.
  check("recovers_after_error", [] {
    std::string a = run_block_sum(1000, 256, 3);
    return a.empty() ? run_sgemm(37, 53, 29) : a;
  });
  check("workers", [] {
    int saved = sc::emu::workers();
    std::string why;
    for (int w : {1, 3}) {
      sc::emu::set_workers(w);
      why = run_sgemm(40, 33, 50);
      if (why.empty()) why = run_block_sum(3000, 128, 7);
      if (!why.empty()) break;
    }
    sc::emu::set_workers(saved);
    return why;
  });
}

}  // namespace

int main() {
  using sc::emu::Schedule;
  for (Schedule s : {Schedule::forward, Schedule::reverse, Schedule::random}) {
    sc::emu::set_schedule(s, 12345);
    sched_name = sc::emu::schedule_name(s);
    run_checks();
  }
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "OK", failures);
  return failures ? 1 : 0;
}
