// Float fast path of the fused Manhattan-decay attention (see decay_attention.cc for the maths).
// Blocks of R query rows go through the packed GEMM instead of per-element double dot products:
//   S = Q_blk K^T * scale (R x L scratch), row softmax, A = P * Dm, O_blk = A V.
// Backward, one task per sequence b (dK_b and dV_b accumulate over its row blocks):
//   dP = (dO_blk V^T) * Dm, delta = rowsum(dP P), dS = P (dP - delta),
//   dQ_blk = dS K * scale, dK += dS^T Q_blk * scale, dV += A^T dO_blk.
// Only an R x L block per thread is stored (never L x L for all rows). Softmax statistics are
// kept in double as in the reference path; products accumulate in float in the GEMM.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "../core/parallel.h"
#include "fast_gelu.h"
#include "gemm.h"

namespace sc {

namespace {
constexpr int64_t kRows = 64;

// Decay row of query n: out[y * W + x] = gamma^(|yn - y| + |xn - x|), as two runs per image row
// (powers read backwards left of xn, forwards from it) that the compiler vectorises.
void decay_row_f(int64_t n, int64_t H, int64_t W, const std::vector<float>& pw, float* out) {
  const int64_t yn = n / W, xn = n % W;
  for (int64_t y = 0; y < H; ++y) {
    const float* p = pw.data() + std::llabs(yn - y);
    float* o = out + y * W;
    for (int64_t x = 0; x < xn; ++x) o[x] = p[xn - x];
    for (int64_t x = xn; x < W; ++x) o[x] = p[x - xn];
  }
}

std::vector<float> powers(double gamma, int64_t H, int64_t W) {
  std::vector<float> pw(H + W - 1);
  for (size_t d = 0; d < pw.size(); ++d) pw[d] = static_cast<float>(std::pow(gamma, static_cast<double>(d)));
  return pw;
}

}  // namespace

void decay_attention_forward_f32(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t L,
                                 int64_t D, int64_t H, int64_t W, double gamma) {
  const std::vector<float> pw = powers(gamma, H, W);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  const int64_t nblk = (L + kRows - 1) / kRows;
  parallel_for(0, B * nblk, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> s(kRows * L), dm(L);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / nblk, n0 = (t % nblk) * kRows, R = std::min(kRows, L - n0);
      const float* kb = k + b * L * D;
      const float* vb = v + b * L * D;
      const float* qb = q + (b * L + n0) * D;
      gemm<float>(false, true, R, L, D, scale, qb, D, kb, D, 0.f, s.data(), L);
      for (int64_t i = 0; i < R; ++i) {
        float* row = s.data() + i * L;
        softmax_f32_array(row, L);
        decay_row_f(n0 + i, H, W, pw, dm.data());
        for (int64_t m = 0; m < L; ++m) row[m] *= dm[m];
      }
      gemm<float>(false, false, R, D, L, 1.f, s.data(), L, vb, D, 0.f, out + (b * L + n0) * D, D);
    }
  });
}

void decay_attention_backward_f32(const float* q, const float* k, const float* v, const float* go, float* dq,
                                  float* dk, float* dv, int64_t B, int64_t L, int64_t D, int64_t H, int64_t W,
                                  double gamma) {
  const std::vector<float> pw = powers(gamma, H, W);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> p(kRows * L), dp(kRows * L), dm(L);
    for (int64_t b = b0; b < b1; ++b) {
      const float* kb = k + b * L * D;
      const float* vb = v + b * L * D;
      float* dkb = dk + b * L * D;
      float* dvb = dv + b * L * D;
      for (int64_t n0 = 0; n0 < L; n0 += kRows) {
        const int64_t R = std::min(kRows, L - n0);
        const float* qblk = q + (b * L + n0) * D;
        const float* gblk = go + (b * L + n0) * D;
        gemm<float>(false, true, R, L, D, scale, qblk, D, kb, D, 0.f, p.data(), L);   // S
        gemm<float>(false, true, R, L, D, 1.f, gblk, D, vb, D, 0.f, dp.data(), L);    // dO V^T
        for (int64_t i = 0; i < R; ++i) {
          float* pr = p.data() + i * L;
          float* dr = dp.data() + i * L;
          softmax_f32_array(pr, L);
          decay_row_f(n0 + i, H, W, pw, dm.data());
          double delta = 0;
          for (int64_t m = 0; m < L; ++m) {
            dr[m] *= dm[m];
            delta += static_cast<double>(dr[m]) * pr[m];
          }
          const float dl = static_cast<float>(delta);
          for (int64_t m = 0; m < L; ++m) {
            dr[m] = pr[m] * (dr[m] - dl);  // dS
            pr[m] *= dm[m];                // A
          }
        }
        const float beta = n0 == 0 ? 0.f : 1.f;
        gemm<float>(true, false, L, D, R, 1.f, p.data(), L, gblk, D, beta, dvb, D);          // dV += A^T dO
        gemm<float>(true, false, L, D, R, scale, dp.data(), L, qblk, D, beta, dkb, D);      // dK += dS^T Q
        gemm<float>(false, false, R, D, L, scale, dp.data(), L, kb, D, 0.f, dq + (b * L + n0) * D, D);  // dQ
      }
    }
  });
}

}  // namespace sc
