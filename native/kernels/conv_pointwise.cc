// 1x1 float convolutions (stride 1, no padding) over large maps: y[oc, q] = sum_c w[oc, c] x[c, q]
// (+ bias), and the input gradient, the same product with the transposed weights.
//
// Per chunk of pixels of one image, the input's channel rows are copied into a buffer in L2 (a
// long run per channel, rows an odd number of cache lines apart), then register tiles
//
//   acc[i][j] (OCB output channels x NV vectors of L pixels) += w[oc0 + i, c] * buf[c, q_j]
//
// run over the channels and store straight into y. The packed GEMM this replaces for the
// training passes copied the input into column panels and ran at 65-100 GFLOP/s on CMUNeXt's and
// MedNeXt's 16-128 channel maps of 128 x 128 (4x the time of reading x and writing y); the
// direct kernel's in-place reads of those maps, channel planes 64 KB apart, kept evicting each
// other from L1 and L2.
#pragma GCC optimize("fp-contract=fast")

#include "conv_pointwise.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/parallel.h"
#include "gemm.h"
#include "simd.h"

namespace sc {
namespace {

using conv::ConvP;

// One work unit: output channels [0, M) of pixels [q0, q0 + len) of one image, from K input rows
// copied to buf (pitch floats apart, zero past len up to a whole number of tiles); weights packed
// [oc block][k][OCB]. y rows are ystride apart.
struct Unit {
  const float* buf;
  int64_t pitch, K, M, len;
  const float* wpk;
  const float* bias;
  float* y;
  int64_t ystride;
};

template <int L, int OCB, int NV>
SC_AI void run_unit(const Unit& u) {
  using V = typename Vec<L>::type;
  constexpr int64_t TW = NV * L;
  const int64_t nblk = (u.M + OCB - 1) / OCB;
  // Output-channel blocks outer: each block writes its OCB rows front to back (a few sequential
  // streams); tiles outer wrote every output row of the chunk at each step.
  for (int64_t b = 0; b < nblk; ++b) {
    for (int64_t q = 0; q < u.len; q += TW) {
      const int64_t valid = std::min<int64_t>(TW, u.len - q);
      V acc[OCB][NV];
      _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i)
        _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) acc[i][j] = V{};
      const float* wb = u.wpk + b * u.K * OCB;
      const float* xb = u.buf + q;
      for (int64_t k = 0; k < u.K; ++k) {
        V xv[NV];
        _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) xv[j] = *reinterpret_cast<const V*>(xb + k * u.pitch + j * L);
        const float* wk = wb + k * OCB;
        _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i) {
          const float wv = wk[i];
          _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) acc[i][j] += wv * xv[j];
        }
      }
      _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i) {
        const int64_t oc = b * OCB + i;
        if (oc >= u.M) break;
        float* yr = u.y + oc * u.ystride + q;
        const float bv = u.bias ? u.bias[oc] : 0.0f;
        if (valid == TW) {
          _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) {
            const V v = acc[i][j] + bv;
            std::memcpy(yr + j * L, &v, sizeof v);
          }
        } else {
          alignas(64) float t[TW];
          _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) std::memcpy(t + j * L, &acc[i][j], sizeof(V));
          for (int64_t e = 0; e < valid; ++e) yr[e] = t[e] + bv;
        }
      }
    }
  }
}

using UnitFn = void (*)(const Unit&);
struct Variant {
  int L, OCB, NV;
  UnitFn run;
};

#define SC_PW_VARIANT(NAME, TARGET, L, OCB, NV) \
  TARGET void NAME(const Unit& u) { run_unit<L, OCB, NV>(u); }
#if defined(__x86_64__) || defined(__i386__)
SC_PW_VARIANT(pw_512_8x3, SC_T512, 16, 8, 3)
SC_PW_VARIANT(pw_256_4x3, SC_T256, 8, 4, 3)
#endif
SC_PW_VARIANT(pw_gen_4x3, , 4, 4, 3)

Variant pick_variant() {
#if defined(__x86_64__) || defined(__i386__)
  const int isa = cpu_isa_level();
  if (isa >= 2) return {16, 8, 3, &pw_512_8x3};
  if (isa == 1) return {8, 4, 3, &pw_256_4x3};
#endif
  return {4, 4, 3, &pw_gen_4x3};
}

constexpr int64_t kBufFloats = 128 << 10;  // the chunk's copy of the input, in L2

// out[n, m, q] = sum_k wt(m, k) in[n, k, q] (+ bias[m]) for each image and group: M outputs from
// K inputs per group, in/out planes of P pixels, in_c / out_c channels per image; wt(m, k) is
// w[m * wsm + k * wsk] within the group's weights (wg floats apart).
void pointwise(const float* in, int64_t in_c, const float* w, int64_t wg, int64_t wsm, int64_t wsk,
               const float* bias, float* out, int64_t out_c, int64_t N, int64_t G, int64_t K,
               int64_t M, int64_t P) {
  const Variant v = pick_variant();
  const int64_t TW = v.NV * v.L;
  const int64_t nblk = (M + v.OCB - 1) / v.OCB;
  // Weights packed per group [oc block][k][OCB], zero rows past M.
  std::vector<float> wpk((size_t)(G * nblk * K * v.OCB), 0.0f);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k)
        wpk[((g * nblk + m / v.OCB) * K + k) * v.OCB + m % v.OCB] = w[g * wg + m * wsm + k * wsk];
  // Pixels per chunk: whole tiles, the copy within kBufFloats.
  const int64_t per = std::max<int64_t>(TW, kBufFloats / std::max<int64_t>(1, K) / TW * TW);
  const int64_t clen = std::min(per, (P + TW - 1) / TW * TW);
  const int64_t nch = (P + clen - 1) / clen;
  const int64_t pitch = odd_line_pitch(clen);
  parallel_for_dynamic(0, N * G * nch, 1, [&](int64_t u0, int64_t u1) {
    float* buf = thread_scratch(0, (size_t)(K * pitch));
    for (int64_t uidx = u0; uidx < u1; ++uidx) {
      const int64_t ch = uidx % nch, ng = uidx / nch, n = ng / G, g = ng % G;
      const int64_t q0 = ch * clen, len = std::min(clen, P - q0);
      const float* src = in + (n * in_c + g * K) * P + q0;
      const int64_t padded = (len + TW - 1) / TW * TW;
      for (int64_t k = 0; k < K; ++k) {
        std::memcpy(buf + k * pitch, src + k * P, sizeof(float) * len);
        if (padded > len) std::memset(buf + k * pitch + len, 0, sizeof(float) * (padded - len));
      }
      Unit u;
      u.buf = buf;
      u.pitch = pitch;
      u.K = K;
      u.M = M;
      u.len = len;
      u.wpk = wpk.data() + g * nblk * K * v.OCB;
      u.bias = bias ? bias + g * M : nullptr;
      u.y = out + (n * out_c + g * M) * P + q0;
      u.ystride = P;
      v.run(u);
    }
  });
}

}  // namespace

bool conv_pointwise_supported(const ConvP& p) {
  return p.pointwise() && !p.depthwise();
}

void conv_pointwise_forward(const ConvP& p, const float* x, const float* w, const float* bias, float* y) {
  pointwise(x, p.C, w, p.OCg * p.Cg, p.Cg, 1, bias, y, p.OC, p.N, p.G, p.Cg, p.OCg, p.P);
}

void conv_pointwise_backward_input(const ConvP& p, const float* gy, const float* w, float* gx) {
  // gx[c] = sum_oc w[oc, c] gy[oc]: outputs are the input channels, weights read transposed.
  pointwise(gy, p.OC, w, p.OCg * p.Cg, 1, p.Cg, nullptr, gx, p.C, p.N, p.G, p.OCg, p.Cg, p.P);
}

}  // namespace sc
