// Fused Manhattan-decay attention (MaSA) and its backward.
//
//   S = q k^T / sqrt(D),  P = softmax_rows(S),  A = P * Dm,  out = A v
//   Dm[n, m] = gamma^(|y_n - y_m| + |x_n - x_m|), positions laid out row-major on height x width.
//
// Nothing of size L x L is ever stored: the forward handles one query row at a time with an
// L-long scratch row. The backward recomputes rows too, in two passes that each write disjoint
// outputs, so every pass is parallel over all B*L rows without atomics or per-thread buffers:
//   pass 1 (per query row n):  row softmax statistics (max, sum), delta_n = sum_m dP[n,m] P[n,m]
//                              and dQ_n = sum_m dS[n,m] K_m / sqrt(D);
//   pass 2 (per key row m):    dV_m = sum_n A[n,m] dO_n,  dK_m = sum_n dS[n,m] Q_n / sqrt(D),
//                              rebuilding P[n,m] from the saved statistics of row n.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"

namespace sc {

// Float fast path (decay_attention_fast.cc): packed GEMM over blocks of query rows.
void decay_attention_forward_f32(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t L,
                                 int64_t D, int64_t H, int64_t W, double gamma);
void decay_attention_backward_f32(const float* q, const float* k, const float* v, const float* go, float* dq,
                                  float* dk, float* dv, int64_t B, int64_t L, int64_t D, int64_t H, int64_t W,
                                  double gamma);

namespace {

struct Geometry {
  int64_t B, L, D, H, W;
  double scale;
  std::vector<double> pw;  // pw[d] = gamma^d for every Manhattan distance d that can occur
  // Dm[n, :] into out (symmetric, so also Dm[:, n]); nested loops avoid a division per element.
  void decay_row(int64_t n, double* out) const {
    const int64_t yn = n / W, xn = n % W;
    for (int64_t y = 0; y < H; ++y) {
      const double* p = pw.data() + std::llabs(yn - y);
      for (int64_t x = 0; x < W; ++x) out[y * W + x] = p[std::llabs(xn - x)];
    }
  }
};

Geometry geometry(const TArg& q, const TArg& k, const TArg& v, const Attrs& at) {
  if (q.ndim != 3 || k.ndim != 3 || v.ndim != 3) throw KernelError("decay_attention: q, k, v must be 3-D [B, L, D]");
  Geometry g;
  g.B = q.shape[0]; g.L = q.shape[1]; g.D = q.shape[2];
  const int64_t H = g.H = at.i("height");
  g.W = at.i("width");
  if (H < 1 || g.W < 1 || H * g.W != g.L)
    throw KernelError("decay_attention: height*width must equal the sequence length " + std::to_string(g.L));
  for (const TArg* t : {&k, &v})
    if (t->shape[0] != g.B || t->shape[1] != g.L || t->shape[2] != g.D)
      throw KernelError("decay_attention: q, k, v shapes differ");
  const double gamma = at.num("gamma");
  g.pw.resize(H + g.W - 1);
  for (size_t d = 0; d < g.pw.size(); ++d) g.pw[d] = std::pow(gamma, static_cast<double>(d));
  g.scale = 1.0 / std::sqrt(static_cast<double>(g.D));
  return g;
}

// Four independent partial sums let the compiler pipeline and vectorise without reassociating.
template <typename T>
inline double dot(const T* a, const T* b, int64_t D) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= D; i += 4) {
    s0 += static_cast<double>(a[i]) * b[i];
    s1 += static_cast<double>(a[i + 1]) * b[i + 1];
    s2 += static_cast<double>(a[i + 2]) * b[i + 2];
    s3 += static_cast<double>(a[i + 3]) * b[i + 3];
  }
  for (; i < D; ++i) s0 += static_cast<double>(a[i]) * b[i];
  return (s0 + s1) + (s2 + s3);
}

// Scores of query row n against all keys of its sequence into s; returns the row maximum.
template <typename T>
inline double scores(const Geometry& g, const T* qn, const T* kb, double* s) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t m = 0; m < g.L; ++m) {
    s[m] = dot(qn, kb + m * g.D, g.D) * g.scale;
    mx = std::max(mx, s[m]);
  }
  return mx;
}

template <typename T>
void forward_typed(const TArg& q, const TArg& k, const TArg& v, const TArg& out, const Attrs& at) {
  const Geometry g = geometry(q, k, v, at);
  if constexpr (std::is_same_v<T, float>) {
    return decay_attention_forward_f32(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), out.ptr<float>(), g.B, g.L, g.D,
                                       g.H, g.W, at.num("gamma"));
  }
  const T *qp = q.ptr<T>(), *kp = k.ptr<T>(), *vp = v.ptr<T>();
  T* op = out.ptr<T>();
  const int64_t L = g.L, D = g.D;
  parallel_for(0, g.B * L, std::max<int64_t>(1, 8192 / (L * D + 1)), [&](int64_t r0, int64_t r1) {
    std::vector<double> s(L), dm(L), acc(D);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / L, n = r % L;
      const T* kb = kp + b * L * D;
      const T* vb = vp + b * L * D;
      const double mx = scores(g, qp + r * D, kb, s.data());
      double sum = 0;
      for (int64_t m = 0; m < L; ++m) sum += (s[m] = std::exp(s[m] - mx));
      const double inv = 1.0 / sum;
      g.decay_row(n, dm.data());
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t m = 0; m < L; ++m) {
        const double a = s[m] * inv * dm[m];
        const T* vm = vb + m * D;
        for (int64_t i = 0; i < D; ++i) acc[i] += a * vm[i];
      }
      for (int64_t i = 0; i < D; ++i) op[r * D + i] = static_cast<T>(acc[i]);
    }
  });
}

// in: q, k, v [B, L, D] contiguous; out: [B, L, D]; attrs: gamma, height, width.
void decay_attention_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, forward_typed<T>(in[0], in[1], in[2], out[0], at));
}
SC_KERNEL("decay_attention", cpu, decay_attention_kernel);

template <typename T>
void backward_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg &q = in[0], &k = in[1], &v = in[2], &go = in[3];
  const Geometry g = geometry(q, k, v, at);
  const T *qp = q.ptr<T>(), *kp = k.ptr<T>(), *vp = v.ptr<T>(), *gp = go.ptr<T>();
  T *dq = out[0].ptr<T>(), *dk = out[1].ptr<T>(), *dv = out[2].ptr<T>();
  // Float fast path, one task per sequence: used when there are enough sequences to keep every
  // thread busy (the row-parallel reference path below otherwise).
  if constexpr (std::is_same_v<T, float>) {
    if (g.B >= 2 * num_threads()) {
      return decay_attention_backward_f32(qp, kp, vp, gp, dq, dk, dv, g.B, g.L, g.D, g.H, g.W, at.num("gamma"));
    }
  }
  const int64_t L = g.L, D = g.D, rows = g.B * L;
  const int64_t grain = std::max<int64_t>(1, 8192 / (L * D + 1));
  // Per query row: softmax max and 1/sum, and delta = sum_m dP P.
  std::vector<double> rmax(rows), rinv(rows), delta(rows);

  parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    std::vector<double> p(L), dp(L), dm(L), acc(D);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / L, n = r % L;
      g.decay_row(n, dm.data());
      const T* kb = kp + b * L * D;
      const T* vb = vp + b * L * D;
      const T* gn = gp + r * D;
      const double mx = scores(g, qp + r * D, kb, p.data());
      double sum = 0;
      for (int64_t m = 0; m < L; ++m) sum += (p[m] = std::exp(p[m] - mx));
      const double inv = 1.0 / sum;
      double dl = 0;
      for (int64_t m = 0; m < L; ++m) {
        p[m] *= inv;
        dp[m] = dot(gn, vb + m * D, D) * dm[m];  // dP = (dO V^T) * Dm
        dl += dp[m] * p[m];
      }
      rmax[r] = mx; rinv[r] = inv; delta[r] = dl;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t m = 0; m < L; ++m) {
        const double ds = p[m] * (dp[m] - dl);
        const T* km = kb + m * D;
        for (int64_t i = 0; i < D; ++i) acc[i] += ds * km[i];
      }
      for (int64_t i = 0; i < D; ++i) dq[r * D + i] = static_cast<T>(acc[i] * g.scale);
    }
  });

  parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    std::vector<double> ak(D), av(D), dm(L);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / L, m = r % L;
      g.decay_row(m, dm.data());  // Dm is symmetric: this is column m
      const T* km = kp + r * D;
      const T* vm = vp + r * D;
      std::fill(ak.begin(), ak.end(), 0.0);
      std::fill(av.begin(), av.end(), 0.0);
      for (int64_t n = 0; n < L; ++n) {
        const int64_t rn = b * L + n;
        const T* qn = qp + rn * D;
        const T* gn = gp + rn * D;
        const double p = std::exp(dot(qn, km, D) * g.scale - rmax[rn]) * rinv[rn];
        const double ds = p * (dot(gn, vm, D) * dm[n] - delta[rn]);
        const double a = p * dm[n];
        for (int64_t i = 0; i < D; ++i) { av[i] += a * gn[i]; ak[i] += ds * qn[i]; }
      }
      for (int64_t i = 0; i < D; ++i) {
        dk[r * D + i] = static_cast<T>(ak[i] * g.scale);
        dv[r * D + i] = static_cast<T>(av[i]);
      }
    }
  });
}

// in: q, k, v, dOut [B, L, D] contiguous; out: dq, dk, dv; attrs as the forward.
void decay_attention_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, backward_typed<T>(in, out, at));
}
SC_KERNEL("decay_attention_backward", cpu, decay_attention_backward_kernel);

}  // namespace
}  // namespace sc
