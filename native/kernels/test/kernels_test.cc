// Standalone checks of the CPU GEMM, bmm and conv2d kernels against naive double-precision
// reference loops, on every ISA path this CPU can run. Prints one PASS/FAIL line per check
// and exits non-zero if anything failed.
//   g++ -std=c++17 -O2 -pthread -Inative native/core/*.cc native/kernels/gemm.cc \
//       native/kernels/conv.cc native/kernels/test/kernels_test.cc -o build/kernels_test
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/kernel.h"
#include "core/parallel.h"
#include "kernels/gemm.h"

using namespace sc;

static int g_fail = 0, g_pass = 0;
static std::mt19937 rng(12345);

static void report(bool ok, const std::string& what, double err) {
  std::printf("%s %s (err %.3g)\n", ok ? "PASS" : "FAIL", what.c_str(), err);
  if (ok) ++g_pass;
  else ++g_fail;
}

template <typename T> DType dtype_of();
template <> DType dtype_of<float>() { return DType::f32; }
template <> DType dtype_of<double>() { return DType::f64; }
template <typename T> const char* tname() { return sizeof(T) == 4 ? "f32" : "f64"; }

template <typename T>
TArg make_arg(std::vector<T>& v, std::vector<int64_t> shape) {
  TArg t;
  t.data = v.data();
  t.dtype = dtype_of<T>();
  t.ndim = (int)shape.size();
  int64_t s = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    t.shape[i] = shape[i];
    t.strides[i] = s;
    s *= shape[i];
  }
  return t;
}

template <typename T>
std::vector<T> rand_vec(size_t n) {
  std::uniform_real_distribution<double> U(-1, 1);
  std::vector<T> v(n);
  for (auto& x : v) x = (T)U(rng);
  return v;
}

// max |got - ref| / (1 + max |ref|)
template <typename T>
double rel_err(const std::vector<T>& got, const std::vector<double>& ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs((double)got[i] - ref[i]);
    e = std::max(e, std::isnan(d) ? 1e30 : d);
    m = std::max(m, std::fabs(ref[i]));
  }
  return e / (1 + m);
}

// ------------------------------------------------------------------------------------------
// GEMM
// ------------------------------------------------------------------------------------------

template <typename T>
bool check_gemm(bool tA, bool tB, int64_t M, int64_t N, int64_t K, double alpha, double beta,
                int64_t pad, double* err_out) {
  const int64_t lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
  const int64_t arows = tA ? K : M, brows = tB ? N : K;
  std::vector<T> A = rand_vec<T>(std::max<int64_t>(1, arows * lda));
  std::vector<T> B = rand_vec<T>(std::max<int64_t>(1, brows * ldb));
  std::vector<T> C = rand_vec<T>(std::max<int64_t>(1, M * ldc));
  if (beta == 0)  // beta == 0 must not read C
    for (auto& c : C) c = std::numeric_limits<T>::quiet_NaN();
  std::vector<double> ref(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = tA ? A[k * lda + i] : A[i * lda + k];
        const double b = tB ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
      }
      ref[i * N + j] = alpha * s + (beta == 0 ? 0.0 : beta * (double)C[i * ldc + j]);
    }
  gemm<T>(tA, tB, M, N, K, (T)alpha, A.data(), lda, B.data(), ldb, (T)beta, C.data(), ldc);
  std::vector<T> got(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) got[i * N + j] = C[i * ldc + j];
  const double e = rel_err(got, ref);
  *err_out = e;
  const double tol = (sizeof(T) == 4 ? 3e-6 : 1e-13) * (double)(K + 4);
  return e <= tol;
}

template <typename T>
void test_gemm_suite() {
  const int64_t sizes[] = {1, 2, 3, 5, 7, 8, 13, 14, 15, 16, 17, 31, 32, 33, 48, 64, 100, 127, 129, 255, 257, 300};
  const int ns = sizeof(sizes) / sizeof(sizes[0]);
  std::uniform_int_distribution<int> pick(0, ns - 1);
  for (int tA = 0; tA < 2; ++tA)
    for (int tB = 0; tB < 2; ++tB) {
      int ok = 0, total = 0;
      double worst = 0;
      std::string first_bad;
      auto run = [&](int64_t M, int64_t N, int64_t K, double al, double be, int64_t pad) {
        double e;
        const bool good = check_gemm<T>(tA, tB, M, N, K, al, be, pad, &e);
        worst = std::max(worst, e);
        ++total;
        if (good) ++ok;
        else if (first_bad.empty())
          first_bad = " first bad M=" + std::to_string(M) + " N=" + std::to_string(N) +
                      " K=" + std::to_string(K);
      };
      // Diagonal sizes, random mixes, alpha/beta variants, padded leading dimensions.
      for (int64_t s : sizes) run(s, s, s, 1, 0, 0);
      for (int t = 0; t < 30; ++t)
        run(sizes[pick(rng)], sizes[pick(rng)], sizes[pick(rng)], 1, 0, 0);
      for (int t = 0; t < 12; ++t)
        run(sizes[pick(rng)], sizes[pick(rng)], sizes[pick(rng)], -0.75, 1.5, 3);
      run(37, 45, 29, 2.0, 1.0, 5);
      run(3, 4300, 5, 1.0, 0.5, 0);   // N beyond one NC block
      run(600, 20, 530, 0.5, 0.0, 1);  // M beyond MC, K beyond KC (uneven blocks)
      run(9, 7, 0, 1.0, 0.5, 0);       // K == 0: C = beta*C
      run(9, 7, 0, 1.0, 0.0, 0);       // K == 0, beta == 0: C = 0
      report(ok == total,
             std::string("gemm ") + tname<T>() + " isa=" + gemm_isa() + " transA=" +
                 std::to_string(tA) + " transB=" + std::to_string(tB) + " (" +
                 std::to_string(ok) + "/" + std::to_string(total) + " shapes)" + first_bad,
             worst);
    }
}

template <typename T>
void test_bmm(bool tA, bool tB, int64_t Bn, int64_t M, int64_t N, int64_t K) {
  std::vector<T> a = rand_vec<T>(Bn * M * K), b = rand_vec<T>(Bn * K * N), c(Bn * M * N);
  std::vector<double> ref(Bn * M * N);
  for (int64_t q = 0; q < Bn; ++q)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += (double)(tA ? a[q * M * K + k * M + i] : a[q * M * K + i * K + k]) *
               (double)(tB ? b[q * K * N + j * K + k] : b[q * K * N + k * N + j]);
        ref[q * M * N + i * N + j] = s;
      }
  Attrs at;
  at.nums["transA"] = tA;
  at.nums["transB"] = tB;
  KernelFn fn = KernelRegistry::find("bmm", Backend::cpu);
  std::vector<TArg> in = {make_arg(a, tA ? std::vector<int64_t>{Bn, K, M} : std::vector<int64_t>{Bn, M, K}),
                          make_arg(b, tB ? std::vector<int64_t>{Bn, N, K} : std::vector<int64_t>{Bn, K, N})};
  std::vector<TArg> out = {make_arg(c, {Bn, M, N})};
  fn(in, out, at);
  const double e = rel_err(c, ref);
  report(e <= (sizeof(T) == 4 ? 3e-6 : 1e-13) * (K + 4),
         std::string("bmm ") + tname<T>() + " B=" + std::to_string(Bn) + " M=" + std::to_string(M) +
             " N=" + std::to_string(N) + " K=" + std::to_string(K) + " tA=" + std::to_string(tA) +
             " tB=" + std::to_string(tB),
         e);
}

// ------------------------------------------------------------------------------------------
// conv2d
// ------------------------------------------------------------------------------------------

struct ConvCase {
  int64_t N, C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw, G;
  bool bias;
};

template <typename T>
void test_conv(const ConvCase& k) {
  const int64_t Cg = k.C / k.G, OCg = k.OC / k.G;
  const int64_t OH = (k.H + 2 * k.ph - k.dh * (k.KH - 1) - 1) / k.sh + 1;
  const int64_t OW = (k.W + 2 * k.pw - k.dw * (k.KW - 1) - 1) / k.sw + 1;
  std::vector<T> x = rand_vec<T>(k.N * k.C * k.H * k.W);
  std::vector<T> w = rand_vec<T>(k.OC * Cg * k.KH * k.KW);
  std::vector<T> b = rand_vec<T>(k.OC);
  std::vector<T> gy = rand_vec<T>(k.N * k.OC * OH * OW);
  std::vector<double> y_ref(gy.size(), 0.0), gx_ref(x.size(), 0.0), gw_ref(w.size(), 0.0),
      gb_ref(k.OC, 0.0);
  auto X = [&](int64_t n, int64_t c, int64_t h, int64_t ww) -> int64_t { return ((n * k.C + c) * k.H + h) * k.W + ww; };
  auto Wi = [&](int64_t o, int64_t c, int64_t h, int64_t ww) -> int64_t { return ((o * Cg + c) * k.KH + h) * k.KW + ww; };
  for (int64_t n = 0; n < k.N; ++n)
    for (int64_t o = 0; o < k.OC; ++o) {
      const int64_t g = o / OCg;
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t yi = ((n * k.OC + o) * OH + oh) * OW + ow;
          double s = k.bias ? (double)b[o] : 0.0;
          const double gyv = gy[yi];
          gb_ref[o] += gyv;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t kh = 0; kh < k.KH; ++kh)
              for (int64_t kw = 0; kw < k.KW; ++kw) {
                const int64_t ih = oh * k.sh - k.ph + kh * k.dh, iw = ow * k.sw - k.pw + kw * k.dw;
                if (ih < 0 || ih >= k.H || iw < 0 || iw >= k.W) continue;
                const int64_t xi = X(n, g * Cg + c, ih, iw), wi = Wi(o, c, kh, kw);
                s += (double)x[xi] * (double)w[wi];
                gx_ref[xi] += gyv * (double)w[wi];
                gw_ref[wi] += gyv * (double)x[xi];
              }
          y_ref[yi] = s;
        }
    }
  Attrs at;
  at.lists["stride"] = {(double)k.sh, (double)k.sw};
  at.lists["padding"] = {(double)k.ph, (double)k.pw};
  at.lists["dilation"] = {(double)k.dh, (double)k.dw};
  at.nums["groups"] = (double)k.G;
  at.lists["inputShape"] = {(double)k.N, (double)k.C, (double)k.H, (double)k.W};
  const std::vector<int64_t> xs = {k.N, k.C, k.H, k.W}, ws = {k.OC, Cg, k.KH, k.KW},
                             ys = {k.N, k.OC, OH, OW};
  char desc[256];
  std::snprintf(desc, sizeof desc,
                "%s isa=%s N=%lld C=%lld %lldx%lld OC=%lld k=%lldx%lld s=%lld,%lld p=%lld,%lld d=%lld,%lld g=%lld%s",
                tname<T>(), gemm_isa(), (long long)k.N, (long long)k.C, (long long)k.H, (long long)k.W,
                (long long)k.OC, (long long)k.KH, (long long)k.KW, (long long)k.sh, (long long)k.sw,
                (long long)k.ph, (long long)k.pw, (long long)k.dh, (long long)k.dw, (long long)k.G,
                k.bias ? " bias" : "");
  const double tol = sizeof(T) == 4 ? 2e-5 * std::sqrt((double)(Cg * k.KH * k.KW + k.N * OH * OW)) : 1e-11;
  {
    std::vector<T> y(gy.size(), std::numeric_limits<T>::quiet_NaN());
    std::vector<TArg> in = {make_arg(x, xs), make_arg(w, ws)};
    if (k.bias) in.push_back(make_arg(b, {k.OC}));
    KernelRegistry::find("conv2d", Backend::cpu)(in, {make_arg(y, ys)}, at);
    const double e = rel_err(y, y_ref);
    report(e <= tol, std::string("conv2d ") + desc, e);
  }
  {
    std::vector<T> gx(x.size(), std::numeric_limits<T>::quiet_NaN());
    KernelRegistry::find("conv2d_backward_input", Backend::cpu)({make_arg(gy, ys), make_arg(w, ws)},
                                                               {make_arg(gx, xs)}, at);
    const double e = rel_err(gx, gx_ref);
    report(e <= tol, std::string("conv2d_backward_input ") + desc, e);
  }
  {
    std::vector<T> gw(w.size(), std::numeric_limits<T>::quiet_NaN());
    std::vector<T> gb(k.OC, std::numeric_limits<T>::quiet_NaN());
    std::vector<TArg> out = {make_arg(gw, ws)};
    if (k.bias) out.push_back(make_arg(gb, {k.OC}));
    KernelRegistry::find("conv2d_backward_weight", Backend::cpu)({make_arg(x, xs), make_arg(gy, ys)}, out, at);
    double e = rel_err(gw, gw_ref);
    if (k.bias) e = std::max(e, rel_err(gb, gb_ref));
    report(e <= tol, std::string("conv2d_backward_weight ") + desc, e);
  }
}

static const ConvCase kConvCases[] = {
    // N  C   H   W  OC KH KW sh sw ph pw dh dw  G  bias
    {2, 5, 7, 9, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},     // pointwise (direct GEMM)
    {1, 4, 8, 7, 3, 1, 1, 2, 2, 0, 0, 1, 1, 1, false},    // 1x1 stride 2 (im2col)
    {2, 3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
    {1, 4, 9, 10, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, false},
    {2, 3, 10, 9, 4, 3, 3, 1, 1, 2, 2, 2, 2, 1, true},
    {1, 2, 12, 15, 3, 7, 7, 1, 1, 3, 3, 1, 1, 1, false},
    {3, 2, 9, 8, 2, 1, 3, 1, 2, 0, 1, 1, 1, 1, true},     // asymmetric kernel/stride/pad
    {2, 4, 9, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},     // groups = 2
    {2, 6, 5, 7, 4, 1, 1, 1, 1, 0, 0, 1, 1, 2, false},    // groups = 2, pointwise
    {1, 64, 34, 34, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true}, // several im2col chunks
    {2, 5, 9, 70, 5, 3, 3, 1, 1, 1, 1, 1, 1, 5, true},    // depthwise 3x3
    {1, 3, 10, 75, 3, 7, 7, 1, 1, 3, 3, 1, 1, 3, false},  // depthwise 7x7
    {2, 2, 11, 67, 2, 9, 9, 1, 1, 4, 4, 1, 1, 2, true},   // depthwise 9x9
    {1, 2, 33, 40, 2, 31, 31, 1, 1, 15, 15, 1, 1, 2, false},  // depthwise 31x31
    {2, 3, 13, 37, 3, 3, 3, 2, 2, 1, 1, 1, 1, 3, true},   // depthwise strided
    {1, 4, 12, 41, 4, 3, 3, 1, 1, 2, 2, 2, 2, 4, false},  // depthwise dilated
    {1, 2, 9, 71, 2, 7, 7, 1, 1, 0, 0, 1, 1, 2, true},    // depthwise valid
    {2, 3, 9, 23, 3, 5, 5, 1, 2, 3, 1, 2, 1, 3, false},   // depthwise mixed stride/dilation
    {1, 2, 6, 19, 2, 3, 3, 1, 1, 3, 3, 1, 1, 2, true},    // depthwise padding > kernel extent
    {2, 3, 8, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3, true},     // channel multiplier 2 (grouped GEMM)
    {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},     // 1x1x1x1
};

// Inconsistent arguments must be rejected with KernelError, not read out of bounds.
void test_conv_errors() {
  std::vector<float> x(2 * 4 * 5 * 5), w(3 * 4 * 3 * 3), y(2 * 3 * 5 * 5);
  Attrs at;
  at.lists["stride"] = {1, 1};
  at.lists["padding"] = {1, 1};
  at.lists["dilation"] = {1, 1};
  at.nums["groups"] = 1;
  auto expect_throw = [&](const char* what, std::vector<int64_t> xs, std::vector<int64_t> ws,
                          std::vector<int64_t> ys, Attrs a) {
    bool threw = false;
    try {
      KernelRegistry::find("conv2d", Backend::cpu)({make_arg(x, xs), make_arg(w, ws)}, {make_arg(y, ys)}, a);
    } catch (const KernelError&) {
      threw = true;
    }
    report(threw, std::string("conv2d rejects ") + what, 0);
  };
  expect_throw("wrong weight channels", {2, 4, 5, 5}, {3, 3, 3, 3}, {2, 3, 5, 5}, at);
  expect_throw("wrong output shape", {2, 4, 5, 5}, {3, 4, 3, 3}, {2, 3, 4, 5}, at);
  Attrs g = at;
  g.nums["groups"] = 3;
  expect_throw("channels not divisible by groups", {2, 4, 5, 5}, {3, 4, 3, 3}, {2, 3, 5, 5}, g);
  Attrs s = at;
  s.lists["stride"] = {0, 1};
  expect_throw("zero stride", {2, 4, 5, 5}, {3, 4, 3, 3}, {2, 3, 5, 5}, s);
}

int main() {
  const char* isas[] = {"avx512", "avx2", "generic"};
  for (const char* isa : isas) {
    gemm_force_isa(isa);
    if (std::string(gemm_isa()) != isa) {
      std::printf("SKIP isa=%s (not supported by this CPU)\n", isa);
      continue;
    }
    test_gemm_suite<float>();
    test_gemm_suite<double>();
    for (int t = 0; t < 4; ++t) {
      test_bmm<float>(t & 1, t & 2, 3, 17, 33, 20);
      test_bmm<double>(t & 1, t & 2, 5, 9, 6, 40);
    }
    test_bmm<float>(false, false, 1, 150, 130, 140);
    for (const auto& c : kConvCases) {
      test_conv<float>(c);
      test_conv<double>(c);
    }
  }
  // Single-thread pool: the serial (non-split) code paths.
  gemm_force_isa(nullptr);
  set_num_threads(1);
  for (const auto& c : kConvCases) test_conv<float>(c);
  test_gemm_suite<float>();
  set_num_threads(0);
  test_conv_errors();
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}
