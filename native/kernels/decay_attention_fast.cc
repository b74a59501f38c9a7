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


// ------------------------------------------------------------------------------------------
// Forward for head sizes of whole vectors (NExNet's 32-256): one task per sequence, its K
// transposed once, S = Q K^T and O = A V by register tiles (6 query rows x NV vectors) straight
// from Q, K^T and V. The packed GEMM above re-packed K and V for every 64-row block, which at
// D = 32 cost more than the products (NExNet's 224-long rows: 16 -> 9 ms per call).
// ------------------------------------------------------------------------------------------
template <int L>
struct AV {
  typedef float F __attribute__((vector_size(sizeof(float) * L), aligned(sizeof(float))));
};

#define SC_AI __attribute__((always_inline)) inline

// s[i][m0 .. m0 + NV L) = scale * q[i] . kt[:, m] for RT rows.
template <int L, int RT, int NV>
SC_AI void score_tile(const float* q, int64_t D, const float* kt, int64_t ldk, int64_t m0, float scale, float* s,
                      int64_t lds) {
  using F = typename AV<L>::F;
  F acc[RT][NV];
  _Pragma("GCC unroll 8") for (int i = 0; i < RT; ++i)
    _Pragma("GCC unroll 4") for (int j = 0; j < NV; ++j) acc[i][j] = F{};
  for (int64_t d = 0; d < D; ++d) {
    F kv[NV];
    _Pragma("GCC unroll 4") for (int j = 0; j < NV; ++j) kv[j] = *reinterpret_cast<const F*>(kt + d * ldk + m0 + j * L);
    _Pragma("GCC unroll 8") for (int i = 0; i < RT; ++i) {
      const float qv = q[i * D + d];
      _Pragma("GCC unroll 4") for (int j = 0; j < NV; ++j) acc[i][j] += qv * kv[j];
    }
  }
  _Pragma("GCC unroll 8") for (int i = 0; i < RT; ++i)
    _Pragma("GCC unroll 4") for (int j = 0; j < NV; ++j) *reinterpret_cast<F*>(s + i * lds + m0 + j * L) = acc[i][j] * scale;
}

// o[i][d0 .. d0 + NV L) = a[i] . v[:, d] over the sequence, for RT rows.
template <int L, int RT, int NV>
SC_AI void value_tile(const float* a, int64_t lda, int64_t n, const float* v, int64_t D, int64_t d0, float* o) {
  using F = typename AV<L>::F;
  F acc[RT][NV];
  _Pragma("GCC unroll 8") for (int i = 0; i < RT; ++i)
    _Pragma("GCC unroll 4") for (int j = 0; j < NV; ++j) acc[i][j] = F{};
  for (int64_t m = 0; m < n; ++m) {
    F vv[NV];
    _Pragma("GCC unroll 4") for (int j = 0; j < NV; ++j) vv[j] = *reinterpret_cast<const F*>(v + m * D + d0 + j * L);
    _Pragma("GCC unroll 8") for (int i = 0; i < RT; ++i) {
      const float av = a[i * lda + m];
      _Pragma("GCC unroll 4") for (int j = 0; j < NV; ++j) acc[i][j] += av * vv[j];
    }
  }
  _Pragma("GCC unroll 8") for (int i = 0; i < RT; ++i)
    _Pragma("GCC unroll 4") for (int j = 0; j < NV; ++j) *reinterpret_cast<F*>(o + i * D + d0 + j * L) = acc[i][j];
}

// Scores of rows [r0, r0 + RT) against every key (Lp = n rounded up to whole vectors).
template <int L, int RT>
SC_AI void score_rows(const float* q, int64_t D, const float* kt, int64_t Lp, float scale, float* s) {
  int64_t m0 = 0;
  for (; m0 + 2 * L <= Lp; m0 += 2 * L) score_tile<L, RT, 2>(q, D, kt, Lp, m0, scale, s, Lp);
  if (m0 < Lp) score_tile<L, RT, 1>(q, D, kt, Lp, m0, scale, s, Lp);
}

template <int L, int RT>
SC_AI void value_rows(const float* a, int64_t Lp, int64_t n, const float* v, int64_t D, float* o) {
  int64_t d0 = 0;
  for (; d0 + 2 * L <= D; d0 += 2 * L) value_tile<L, RT, 2>(a, Lp, n, v, D, d0, o);
  if (d0 < D) value_tile<L, RT, 1>(a, Lp, n, v, D, d0, o);
}

template <int L>
SC_AI void sequence_forward(const float* qb, const float* kb, const float* vb, float* ob, int64_t n, int64_t D,
                            int64_t H, int64_t W, const std::vector<float>& pw, float scale, float* kt, float* s,
                            float* dm) {
  constexpr int RT = 6;
  const int64_t Lp = (n + L - 1) / L * L;
  for (int64_t d = 0; d < D; ++d) {
    float* row = kt + d * Lp;
    for (int64_t m = 0; m < n; ++m) row[m] = kb[m * D + d];
    for (int64_t m = n; m < Lp; ++m) row[m] = 0.0f;
  }
  for (int64_t r0 = 0; r0 < n; r0 += RT) {
    const int64_t rows = std::min<int64_t>(RT, n - r0);
    if (rows == RT) {
      score_rows<L, RT>(qb + r0 * D, D, kt, Lp, scale, s);
    } else {
      for (int64_t i = 0; i < rows; ++i) score_rows<L, 1>(qb + (r0 + i) * D, D, kt, Lp, scale, s + i * Lp);
    }
    for (int64_t i = 0; i < rows; ++i) {
      float* row = s + i * Lp;
      softmax_f32_array(row, n);
      decay_row_f(r0 + i, H, W, pw, dm);
      for (int64_t m = 0; m < n; ++m) row[m] *= dm[m];
    }
    if (rows == RT) {
      value_rows<L, RT>(s, Lp, n, vb, D, ob + r0 * D);
    } else {
      for (int64_t i = 0; i < rows; ++i) value_rows<L, 1>(s + i * Lp, Lp, n, vb, D, ob + (r0 + i) * D);
    }
  }
}

using SequenceFn = void (*)(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t,
                            const std::vector<float>&, float, float*, float*, float*);

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx512f,avx512dq,avx2,fma"))) void sequence_forward_512(
    const float* qb, const float* kb, const float* vb, float* ob, int64_t n, int64_t D, int64_t H, int64_t W,
    const std::vector<float>& pw, float scale, float* kt, float* s, float* dm) {
  sequence_forward<16>(qb, kb, vb, ob, n, D, H, W, pw, scale, kt, s, dm);
}
__attribute__((target("avx2,fma"))) void sequence_forward_256(
    const float* qb, const float* kb, const float* vb, float* ob, int64_t n, int64_t D, int64_t H, int64_t W,
    const std::vector<float>& pw, float scale, float* kt, float* s, float* dm) {
  sequence_forward<8>(qb, kb, vb, ob, n, D, H, W, pw, scale, kt, s, dm);
}
#endif

// The tiled forward for this CPU and head size, or null (then the packed-GEMM path).
SequenceFn tiled_forward(int64_t D, int& lanes) {
#if defined(__x86_64__) || defined(__i386__)
  const int isa = cpu_isa_level();
  lanes = isa >= 2 ? 16 : 8;
  if (isa >= 1 && D % lanes == 0) return isa >= 2 ? &sequence_forward_512 : &sequence_forward_256;
#endif
  (void)D;
  lanes = 0;
  return nullptr;
}

}  // namespace

void decay_attention_forward_f32(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t L,
                                 int64_t D, int64_t H, int64_t W, double gamma) {
  const std::vector<float> pw = powers(gamma, H, W);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  int lanes = 0;
  if (const SequenceFn seq = tiled_forward(D, lanes); seq && B >= 2) {
    const int64_t Lp = (L + lanes - 1) / lanes * lanes;
    parallel_for_dynamic(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<float> kt(D * Lp), s(6 * Lp), dm(L);
      for (int64_t b = b0; b < b1; ++b)
        seq(q + b * L * D, k + b * L * D, v + b * L * D, out + b * L * D, L, D, H, W, pw, scale, kt.data(), s.data(), dm.data());
    });
    return;
  }
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
