// Fused scaled dot-product attention and its backward (CPU):
//
//   S = q k^T * scale,  P = softmax_rows(S),  out = P v,  lse = rowmax(S) + log(rowsum(exp(S - max)))
//   q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv] -> out [B, H, Lq, Dv], lse [B, H, Lq].
//
// Flash-style: nothing of size Lq x Lk is ever stored, only the row log-sum-exp (for backward).
// Blocks of kRows query rows go through the packed GEMM (gemm.h): S_blk = Q_blk K^T (kRows x Lk
// scratch per thread), a numerically stable row softmax, O_blk = P_blk V. Tasks are the
// (b, h, query block) triples, so even one head of one image uses every thread.
//
// Backward, in two passes with disjoint outputs (no atomics, no per-thread accumulators):
//   pass 1, per (b, h, query block): P = exp(S - lse) (recomputed), dP = dO V^T,
//     delta = rowsum(dO * O), dS = P (dP - delta), dQ_blk = dS K * scale;
//   pass 2, per (b, h, key block), over query chunks: S^T and dP^T for the chunk, then
//     dV_blk += P^T dO_chunk and dK_blk += dS^T Q_chunk * scale.
// Pass 2 recomputes two GEMMs of pass 1; in exchange it parallelises over key blocks.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "fast_gelu.h"
#include "gemm.h"

namespace sc {
namespace {

constexpr int64_t kRows = 64;   // query rows per forward / pass-1 task
constexpr int64_t kKeys = 64;   // key rows per pass-2 task
constexpr int64_t kChunk = 128; // query rows per pass-2 step

struct Dims {
  int64_t BH, Lq, Lk, D, Dv;
};

Dims dims(const TArg& q, const TArg& k, const TArg& v, const char* who) {
  if (q.ndim != 4 || k.ndim != 4 || v.ndim != 4) throw KernelError(std::string(who) + ": q, k, v must be 4-D [B, H, L, D]");
  for (int d = 0; d < 2; ++d)
    if (k.shape[d] != q.shape[d] || v.shape[d] != q.shape[d]) throw KernelError(std::string(who) + ": batch / head sizes of q, k, v differ");
  if (k.shape[3] != q.shape[3] || v.shape[2] != k.shape[2]) throw KernelError(std::string(who) + ": k must be [B, H, Lk, D] and v [B, H, Lk, Dv]");
  if (k.shape[2] < 1) throw KernelError(std::string(who) + ": no keys (Lk = 0)");
  return {q.shape[0] * q.shape[1], q.shape[2], k.shape[2], q.shape[3], v.shape[3]};
}

// s[m] = exp(s[m] - shift[m or 0]) over a row: float through the ISA-dispatched vector loops
// of fast_gelu.cc (the scalar polynomial's range clamps stay branches, ~15 cycles a value),
// double through libm. Returns the sum (double) when the shift is one value.
inline double exp_row(float* s, int64_t L, float shift) { return exp_shift_sum_f32_array(s, L, shift); }
inline double exp_row(double* s, int64_t L, double shift) {
  double sum = 0;
  for (int64_t m = 0; m < L; ++m) sum += s[m] = std::exp(s[m] - shift);
  return sum;
}
inline void exp_row_shifts(float* s, int64_t L, const float* shift) {
  for (int64_t m = 0; m < L; ++m) s[m] -= shift[m];
  exp_f32_array(s, L);
}
inline void exp_row_shifts(double* s, int64_t L, const double* shift) {
  for (int64_t m = 0; m < L; ++m) s[m] = std::exp(s[m] - shift[m]);
}
// Row softmax of s (length L) in place; returns the row's log-sum-exp. The maximum is
// subtracted first so no exponential overflows; the sum runs in double.
inline float softmax_row(float* s, int64_t L) { return static_cast<float>(softmax_f32_array(s, L)); }
inline double softmax_row(double* s, int64_t L) {
  double mx = s[0];
  for (int64_t m = 1; m < L; ++m) mx = std::max(mx, s[m]);
  const double sum = exp_row(s, L, mx);
  const double inv = 1.0 / sum;
  for (int64_t m = 0; m < L; ++m) s[m] *= inv;
  return mx + std::log(sum);
}

template <typename T>
void forward_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const Dims g = dims(in[0], in[1], in[2], "scaled_dot_product_attention");
  const T scale = static_cast<T>(at.num("scale"));
  const T *q = in[0].ptr<T>(), *k = in[1].ptr<T>(), *v = in[2].ptr<T>();
  T *o = out[0].ptr<T>(), *lse = out[1].ptr<T>();
  const int64_t nblk = (g.Lq + kRows - 1) / kRows;
  parallel_for(0, g.BH * nblk, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> s(kRows * g.Lk);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t bh = t / nblk, n0 = (t % nblk) * kRows, R = std::min(kRows, g.Lq - n0);
      const int64_t r0 = bh * g.Lq + n0;
      const T* kb = k + bh * g.Lk * g.D;
      const T* vb = v + bh * g.Lk * g.Dv;
      gemm<T>(false, true, R, g.Lk, g.D, scale, q + r0 * g.D, g.D, kb, g.D, T(0), s.data(), g.Lk);
      for (int64_t i = 0; i < R; ++i) lse[r0 + i] = softmax_row(s.data() + i * g.Lk, g.Lk);
      gemm<T>(false, false, R, g.Dv, g.Lk, T(1), s.data(), g.Lk, vb, g.Dv, T(0), o + r0 * g.Dv, g.Dv);
    }
  });
}

// in: q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv] contiguous; out: out [B, H, Lq, Dv],
// lse [B, H, Lq]; attrs: scale.
void sdpa_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, forward_typed<T>(in, out, at));
}
SC_KERNEL("scaled_dot_product_attention", cpu, sdpa_kernel);

template <typename T>
void backward_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const Dims g = dims(in[0], in[1], in[2], "scaled_dot_product_attention_backward");
  const T scale = static_cast<T>(at.num("scale"));
  const T *q = in[0].ptr<T>(), *k = in[1].ptr<T>(), *v = in[2].ptr<T>(), *o = in[3].ptr<T>();
  const T *lse = in[4].ptr<T>(), *go = in[5].ptr<T>();
  T *dq = out[0].ptr<T>(), *dk = out[1].ptr<T>(), *dv = out[2].ptr<T>();
  const int64_t Lq = g.Lq, Lk = g.Lk, D = g.D, Dv = g.Dv;
  std::vector<T> delta(g.BH * Lq);

  // Pass 1: delta and dQ, per (b, h, query block).
  const int64_t nq = (Lq + kRows - 1) / kRows;
  parallel_for(0, g.BH * nq, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> p(kRows * Lk), dp(kRows * Lk);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t bh = t / nq, n0 = (t % nq) * kRows, R = std::min(kRows, Lq - n0);
      const int64_t r0 = bh * Lq + n0;
      const T* kb = k + bh * Lk * D;
      const T* vb = v + bh * Lk * Dv;
      gemm<T>(false, true, R, Lk, D, scale, q + r0 * D, D, kb, D, T(0), p.data(), Lk);       // S
      gemm<T>(false, true, R, Lk, Dv, T(1), go + r0 * Dv, Dv, vb, Dv, T(0), dp.data(), Lk);  // dO V^T
      for (int64_t i = 0; i < R; ++i) {
        const int64_t r = r0 + i;
        double dl = 0;
        for (int64_t j = 0; j < Dv; ++j) dl += static_cast<double>(go[r * Dv + j]) * o[r * Dv + j];
        const T d = delta[r] = static_cast<T>(dl);
        T* pr = p.data() + i * Lk;
        T* dr = dp.data() + i * Lk;
        exp_row(pr, Lk, lse[r]);                                          // P
        for (int64_t m = 0; m < Lk; ++m) dr[m] = pr[m] * (dr[m] - d);    // dS
      }
      gemm<T>(false, false, R, D, Lk, scale, dp.data(), Lk, kb, D, T(0), dq + r0 * D, D);  // dQ = dS K
    }
  });

  // Pass 2: dK and dV, per (b, h, key block), accumulating over query chunks.
  const int64_t nk = (Lk + kKeys - 1) / kKeys;
  parallel_for(0, g.BH * nk, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> pt(kKeys * kChunk), dpt(kKeys * kChunk);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t bh = t / nk, m0 = (t % nk) * kKeys, Rk = std::min(kKeys, Lk - m0);
      const T* kblk = k + (bh * Lk + m0) * D;
      const T* vblk = v + (bh * Lk + m0) * Dv;
      T* dkb = dk + (bh * Lk + m0) * D;
      T* dvb = dv + (bh * Lk + m0) * Dv;
      if (Lq == 0) {
        std::fill(dkb, dkb + Rk * D, T(0));
        std::fill(dvb, dvb + Rk * Dv, T(0));
        continue;
      }
      for (int64_t c0 = 0; c0 < Lq; c0 += kChunk) {
        const int64_t C = std::min(kChunk, Lq - c0), r0 = bh * Lq + c0;
        const T* qc = q + r0 * D;
        const T* gc = go + r0 * Dv;
        gemm<T>(false, true, Rk, C, D, scale, kblk, D, qc, D, T(0), pt.data(), C);    // S^T
        gemm<T>(false, true, Rk, C, Dv, T(1), vblk, Dv, gc, Dv, T(0), dpt.data(), C);  // dP^T
        for (int64_t i = 0; i < Rk; ++i) {
          T* pr = pt.data() + i * C;
          T* dr = dpt.data() + i * C;
          exp_row_shifts(pr, C, lse + r0);
          for (int64_t n = 0; n < C; ++n) dr[n] = pr[n] * (dr[n] - delta[r0 + n]);
        }
        const T beta = c0 == 0 ? T(0) : T(1);
        gemm<T>(false, false, Rk, Dv, C, T(1), pt.data(), C, gc, Dv, beta, dvb, Dv);   // dV += P^T dO
        gemm<T>(false, false, Rk, D, C, scale, dpt.data(), C, qc, D, beta, dkb, D);    // dK += dS^T Q
      }
    }
  });
}

// in: q, k, v, out, lse (the forward's outputs), dOut; out: dq, dk, dv; attrs: scale.
void sdpa_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, backward_typed<T>(in, out, at));
}
SC_KERNEL("scaled_dot_product_attention_backward", cpu, sdpa_backward_kernel);

}  // namespace
}  // namespace sc
