// Direct float convolution (stride 1, KxK > 1x1) with a fused bias / activation / affine
// epilogue.
//
// Why not im2col + GEMM here: at the models' shapes (few channels, large maps, batch 1) the
// im2col buffer is written and read once per call, and the GEMM's M dimension (output
// channels, often 8 or 16) wastes most of a 14-row register tile. This kernel is the GEMM
// micro-kernel with its B operand read straight from a zero-padded copy of the input:
//
//   acc[i][j] (OCB output channels x NV vectors of L output pixels) +=
//       w[oc0 + i, tap] * Xpad[c, oh + kh*dh, ow_j + kw*dw + lane]    for every tap (c, kh, kw)
//
// Each tap costs NV vector loads and OCB broadcasts for OCB*NV FMAs, the same ratio as the
// packed GEMM, and the accumulators stay in registers for the whole reduction. An output
// "slot" is L consecutive pixels of one output row; lanes past the end of a row read the
// padded plane's next row and are never stored, so the inner loop has no edge branches.
//
// Threads split the output slots of each (image, group); weights are packed once per call
// as [oc block][tap][OCB] with zero rows padding the last block.
//
// (The weight gradient is conv_wgrad.cc's.)
#pragma GCC optimize("fp-contract=fast")

#include "conv_direct.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "fast_gelu.h"
#include "gemm.h"
#include "simd.h"

namespace sc {
namespace {

using conv::ConvP;

struct Geometry {
  int64_t Hp, Wp, plane;  // padded input plane
  int64_t spr, slots;     // output slots per row and per (image, group)
};

// Grown, never shrunk; owned by the calling thread (pool workers only read them). Slots: 0 the
// padded input, 1 the packed weights, 2 the input gradient's transposed weights (alive while
// its forward uses 0 and 1).
float* scratch_f(int slot, size_t n) {
  thread_local std::vector<float> bufs[3];
  auto& v = bufs[slot];
  if (v.size() < n) v.resize(std::max(n, v.size() + v.size() / 2));
  return v.data();
}
int64_t* scratch_i(size_t n) {
  thread_local std::vector<int64_t> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Taps summed into the registers before they are added to a partial sum in memory: a single
// float accumulator over C*K*K taps (9216 for 1024 channels at 3x3) loses about ten times the
// precision of the blocked GEMM sums; blocks of kTapBlock keep it at the GEMM's level for one
// extra add per accumulator every kTapBlock FMAs.
constexpr int64_t kTapBlock = 128;

// acc[i][j] += w[tap][i] * x[slot j + tap offset] over taps [t0, t1): the register-tiled
// reduction of tile() and tile_whole().
template <int L, int OCB, int NV>
SC_AI void accumulate_taps(int64_t t0, int64_t t1, const int64_t* __restrict toff,
                           const float* const* xp, const float* __restrict wp,
                           typename Vec<L>::type (&acc)[OCB][NV]) {
  using V = typename Vec<L>::type;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t off = toff[t];
    V xv[NV];
    _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) xv[j] = *reinterpret_cast<const V*>(xp[j] + off);
    const float* wt = wp + t * OCB;
    // A scalar operand is broadcast by the vector multiply (vbroadcastss / embedded
    // broadcast); V{} + w would add an FP add per weight.
    _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i) {
      const float wv = wt[i];
      _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) acc[i][j] += wv * xv[j];
    }
  }
}

// One tile: OCB output channels x NV slots over all taps, then the epilogue and the store.
// first: start from zero (else add to the partial sums already in y); last: apply the epilogue
// (else store the partial sums).
template <int L, int OCB, int NV>
SC_AI void tile(int64_t ntaps, const int64_t* __restrict toff, const float* const* xb,
                const float* __restrict wp, int ocn, int64_t oc0, float* const* yo,
                const int* nvalid, int64_t ystride, const ConvEpilogue& ep, bool first,
                bool last) {
  using V = typename Vec<L>::type;
  V acc[OCB][NV];
  V sum[OCB][NV];
  _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i)
    _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) acc[i][j] = V{}, sum[i][j] = V{};
  const float* xp[NV];
  _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) xp[j] = xb[j];
  for (int64_t t0 = 0; t0 < ntaps; t0 += kTapBlock) {
    const int64_t t1 = std::min(ntaps, t0 + kTapBlock);
    accumulate_taps<L, OCB, NV>(t0, t1, toff, xp, wp, acc);
    if (t1 < ntaps)
      _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i)
        _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) sum[i][j] += acc[i][j], acc[i][j] = V{};
  }
  _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i)
    _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) acc[i][j] += sum[i][j];
  if (!first)
    for (int i = 0; i < ocn; ++i)
      _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) {
        const float* src = yo[j] + (oc0 + i) * ystride;
        if (nvalid[j] == L) {
          acc[i][j] += *reinterpret_cast<const V*>(src);
        } else if (nvalid[j] > 0) {
          alignas(64) float tmp[L] = {};
          std::memcpy(tmp, src, sizeof(float) * nvalid[j]);
          acc[i][j] += *reinterpret_cast<const V*>(tmp);
        }
      }
  const bool affine = last && (ep.scale || ep.shift);
  for (int i = 0; i < ocn; ++i) {
    const int64_t oc = oc0 + i;
    const float b = last && ep.bias ? ep.bias[oc] : 0.0f;
    const float s = ep.scale ? ep.scale[oc] : 1.0f;
    const float h = ep.shift ? ep.shift[oc] : 0.0f;
    _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) {
      if (nvalid[j] <= 0) continue;
      V v = acc[i][j] + b;
      if (!last) {
      } else if (ep.act == ConvAct::relu) {
        v = v > V{} ? v : V{};
      } else if (ep.act == ConvAct::gelu) {
        v = fastmath::gelu_vec<V, typename Vec<L>::itype>(v);
      }
      if (affine) v = v * s + h;
      float* dst = yo[j] + oc * ystride;
      if (nvalid[j] == L) {
        *reinterpret_cast<V*>(dst) = v;
      } else {
        alignas(64) float tmp[L];
        *reinterpret_cast<V*>(tmp) = v;
        std::memcpy(dst, tmp, sizeof(float) * nvalid[j]);
      }
    }
  }
}

// The common case of tile() on its own: one pass over at most kTapBlock taps (no partial sums
// to carry), every output channel and lane of the tile stored, a ReLU or nothing known at
// compile time (GELU runs after the tiles: run_tiles_core). Few taps leave little FMA work per
// tile (a 1x1 over 8-32 channels: 8-32 taps), and tile()'s run-time epilogue branches and
// partial-sum registers were a large share of it: 1.14-1.46x on those 1x1 convolutions.
template <int L, int OCB, int NV, ConvAct ACT>
SC_AI void tile_whole(int64_t ntaps, const int64_t* __restrict toff, const float* const* xb,
                      const float* __restrict wp, int64_t oc0, float* const* yo, int64_t ystride,
                      const ConvEpilogue& ep) {
  using V = typename Vec<L>::type;
  V acc[OCB][NV];
  _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i)
    _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) acc[i][j] = V{};
  const float* xp[NV];
  _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) xp[j] = xb[j];
  accumulate_taps<L, OCB, NV>(0, ntaps, toff, xp, wp, acc);
  _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i) {
    const int64_t oc = oc0 + i;
    const float b = ep.bias ? ep.bias[oc] : 0.0f;
    const float s = ep.scale ? ep.scale[oc] : 1.0f;
    const float h = ep.shift ? ep.shift[oc] : 0.0f;
    _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) {
      V v = acc[i][j] + b;
      static_assert(ACT != ConvAct::gelu, "GELU is applied after the tiles");
      if constexpr (ACT == ConvAct::relu) v = v > V{} ? v : V{};
      *reinterpret_cast<V*>(yo[j] + oc * ystride) = v * s + h;
    }
  }
}

// Tiles [t0, t1) of one (image, group). xpad: the group's padded input; y: its output channel 0
// (channel stride P); wpk: the group's packed weights; ep: pointers offset to the group.
template <int L, int OCB, int NV>
SC_AI void run_tiles_core(const ConvP& p, const Geometry& g, int64_t t0, int64_t t1,
                          const float* xpad, const float* wpk, int64_t ldw, const int64_t* toff,
                          int64_t ntaps, int64_t OCg, float* y, const ConvEpilogue& ep,
                          bool first, bool last) {
  const int64_t nblk = (OCg + OCB - 1) / OCB;
  // A few tiles share each packed weight block while it is in L1/L2.
  constexpr int kGroup = 4;
  for (int64_t tg = t0; tg < t1; tg += kGroup) {
    const int nt = (int)std::min<int64_t>(kGroup, t1 - tg);
    const float* xb[kGroup][NV];
    float* yo[kGroup][NV];
    int nv[kGroup][NV];
    // Slot s is output row s / spr, vector s % spr: stepped from the group's first slot instead
    // of a division per slot.
    const int64_t s0 = tg * NV;
    int64_t oh = s0 / g.spr, sv = s0 - oh * g.spr;
    for (int k = 0; k < nt; ++k)
      for (int j = 0; j < NV; ++j, ++sv) {
        if (sv == g.spr) sv = 0, ++oh;
        const int64_t s = (tg + k) * NV + j;
        if (s >= g.slots) {
          xb[k][j] = xpad;
          yo[k][j] = y;
          nv[k][j] = 0;
          continue;
        }
        const int64_t ow = sv * L;
        xb[k][j] = xpad + oh * g.Wp + ow;
        yo[k][j] = y + oh * p.OW + ow;
        nv[k][j] = (int)std::min<int64_t>(L, p.OW - ow);
      }
    // Whole tiles (see tile_whole) of full channel blocks take the fast path. With GELU they
    // store acc + bias, and the activation and affine run afterwards over the group's outputs
    // (in L1): GELU is an ~80-cycle dependency chain per vector, and one chain after another is
    // work the core overlaps, where applied to the accumulators in the epilogue each chain
    // waited on the last (1x1 convolutions with GELU 1.1-1.4x faster).
    const bool fast = first && last && ntaps <= kTapBlock;
    const bool gelu_after = ep.act == ConvAct::gelu;
    bool whole[kGroup];
    for (int k = 0; k < nt; ++k) {
      whole[k] = fast;
      _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) whole[k] = whole[k] && nv[k][j] == L;
    }
    ConvEpilogue biased;
    biased.bias = ep.bias;
    const int64_t nfull = OCg / OCB;
    for (int64_t b = 0; b < nblk; ++b) {
      const int ocn = (int)std::min<int64_t>(OCB, OCg - b * OCB);
      const float* wb = wpk + b * ldw;
      for (int k = 0; k < nt; ++k) {
        if (!whole[k] || b >= nfull)
          tile<L, OCB, NV>(ntaps, toff, xb[k], wb, ocn, b * OCB, yo[k], nv[k], p.P, ep, first, last);
        else if (ep.act == ConvAct::relu)
          tile_whole<L, OCB, NV, ConvAct::relu>(ntaps, toff, xb[k], wb, b * OCB, yo[k], p.P, ep);
        else
          tile_whole<L, OCB, NV, ConvAct::none>(ntaps, toff, xb[k], wb, b * OCB, yo[k], p.P, gelu_after ? biased : ep);
      }
    }
    if (gelu_after && fast) {
      using V = typename Vec<L>::type;
      for (int64_t oc = 0; oc < nfull * OCB; ++oc) {
        const float sc = ep.scale ? ep.scale[oc] : 1.0f;
        const float sh = ep.shift ? ep.shift[oc] : 0.0f;
        for (int k = 0; k < nt; ++k) {
          if (!whole[k]) continue;
          _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) {
            V* q = reinterpret_cast<V*>(yo[k][j] + oc * p.P);
            *q = fastmath::gelu_vec<V, typename Vec<L>::itype>(*q) * sc + sh;
          }
        }
      }
    }
  }
}

using RunFn = void (*)(const ConvP&, const Geometry&, int64_t, int64_t, const float*,
                       const float*, int64_t, const int64_t*, int64_t, int64_t, float*,
                       const ConvEpilogue&, bool, bool);

struct Variant {
  int L, OCB, NV;
  RunFn run;
};

#define SC_DIRECT_VARIANT(NAME, TARGET, L, OCB, NV)                                             \
  TARGET void NAME(const ConvP& p, const Geometry& g, int64_t t0, int64_t t1,                  \
                   const float* xpad, const float* wpk, int64_t ldw, const int64_t* toff,      \
                   int64_t ntaps, int64_t OCg, float* y, const ConvEpilogue& ep, bool first,   \
                   bool last) {                                                                \
    run_tiles_core<L, OCB, NV>(p, g, t0, t1, xpad, wpk, ldw, toff, ntaps, OCg, y, ep, first,   \
                               last);                                                          \
  }

// Accumulator budgets: 24-28 of 32 zmm (AVX-512), 12 of 16 ymm (AVX2), 12 xmm (baseline).
#if defined(__x86_64__) || defined(__i386__)
SC_DIRECT_VARIANT(run_512_8x3, SC_T512, 16, 8, 3)
SC_DIRECT_VARIANT(run_512_14x2, SC_T512, 16, 14, 2)
SC_DIRECT_VARIANT(run_512_4x6, SC_T512, 16, 4, 6)
SC_DIRECT_VARIANT(run_256_4x3, SC_T256, 8, 4, 3)
SC_DIRECT_VARIANT(run_256_6x2, SC_T256, 8, 6, 2)
SC_DIRECT_VARIANT(run_256_2x6, SC_T256, 8, 2, 6)
#endif
SC_DIRECT_VARIANT(run_gen_4x3, , 4, 4, 3)
SC_DIRECT_VARIANT(run_gen_6x2, , 4, 6, 2)
SC_DIRECT_VARIANT(run_gen_2x6, , 4, 2, 6)

// The variant that wastes the fewest padded rows for OCg output channels per group: the first
// whose block divides OCg, else the widest block not larger than OCg, else the narrowest.
Variant pick_variant(int64_t OCg) {
  Variant v[3];
#if defined(__x86_64__) || defined(__i386__)
  const int isa = cpu_isa_level();
  if (isa >= 2) {
    v[0] = {16, 8, 3, &run_512_8x3};
    v[1] = {16, 14, 2, &run_512_14x2};
    v[2] = {16, 4, 6, &run_512_4x6};
  } else if (isa == 1) {
    v[0] = {8, 4, 3, &run_256_4x3};
    v[1] = {8, 6, 2, &run_256_6x2};
    v[2] = {8, 2, 6, &run_256_2x6};
  } else
#endif
  {
    v[0] = {4, 4, 3, &run_gen_4x3};
    v[1] = {4, 6, 2, &run_gen_6x2};
    v[2] = {4, 2, 6, &run_gen_2x6};
  }
  if (OCg % v[0].OCB == 0) return v[0];
  if (OCg >= v[1].OCB) return v[1];
  if (OCg >= v[0].OCB) return v[0];
  return v[2];
}

// Copies the Cg channel planes of one (image, group) into the middle of zeroed padded planes.
void pad_group(const ConvP& p, const Geometry& g, const float* x, float* xpad) {
  parallel_for(0, p.Cg, 4, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float* src = x + c * p.HW;
      float* dst = xpad + c * g.plane;
      for (int64_t r = 0; r < g.Hp; ++r) {
        float* d = dst + r * g.Wp;
        const int64_t ih = r - p.ph;
        if (ih < 0 || ih >= p.H) {
          std::memset(d, 0, sizeof(float) * g.Wp);
          continue;
        }
        std::memset(d, 0, sizeof(float) * p.pw);
        std::memcpy(d + p.pw, src + ih * p.W, sizeof(float) * p.W);
        std::memset(d + p.pw + p.W, 0, sizeof(float) * (g.Wp - p.pw - p.W));
      }
    }
  });
}

}  // namespace

bool conv_direct_supported(const ConvP& p) {
  if (p.sh != 1 || p.sw != 1 || p.depthwise()) return false;
  // 1x1: for the fused epilogue (conv2d_fused) up to 64 output channels per group, or any number
  // over at most 64 input channels, where the packed GEMM's copy of the input costs as much as
  // its products (CMUNeXt-L's 64 -> 128 and 32 -> 128 channels at 256 x 256 with GELU: 1.2-1.5x
  // faster here; 128 -> 256 and wider stay on the GEMM, 1.3x faster there). Plain 1x1
  // convolutions take the GEMM above 8 channels (direct_without_epilogue in conv.cc).
  return p.KH * p.KW > 1 || p.OCg <= 64 || p.Cg <= 64;
}

void conv_direct_forward(const ConvP& p, const float* x, const float* w, const ConvEpilogue& ep,
                         float* y) {
  const Variant v = pick_variant(p.OCg);
  Geometry g;
  g.Hp = p.H + 2 * p.ph;
  g.Wp = p.W + 2 * p.pw;
  g.plane = g.Hp * g.Wp;
  g.spr = (p.OW + v.L - 1) / v.L;
  g.slots = p.OH * g.spr;
  const int64_t KK = p.KH * p.KW, ntaps = p.Cg * KK;
  const int64_t nblk = (p.OCg + v.OCB - 1) / v.OCB;
  const int64_t ntiles = (g.slots + v.NV - 1) / v.NV;
  const bool in_place = p.KH == 1 && p.KW == 1 && p.ph == 0 && p.pw == 0 && p.OW % v.L == 0;
  // Images per block: on small maps (a training batch at 8-16 px) one image has a few dozen
  // tiles, so a parallel region per image gave each thread one or two tiles per claim (no
  // weight block shared across tiles, kGroup in run_tiles_core) and left a thread idle at every
  // image's end. A block's tiles are claimed as one range: about 256 tiles (or all images).
  // Batch 8, alternated: 1.29-1.31x at 8 x 8 (UNet's 512-1024 channels), 1.04-1.10x at 16 x 16.
  const int64_t nb = std::max<int64_t>(1, std::min<int64_t>(p.N, 256 / std::max<int64_t>(1, ntiles)));
  const int64_t ximg = in_place ? p.C * p.HW : p.Cg * g.plane;
  // Slack past the last plane: the widest over-read is one vector beyond the padded data.
  float* xpad = in_place ? nullptr : scratch_f(0, (size_t)(nb * ximg + 2 * v.L + 64));
  if (xpad) std::memset(xpad + nb * ximg, 0, sizeof(float) * (2 * v.L + 64));
  float* wpk = scratch_f(1, (size_t)(p.G * nblk * ntaps * v.OCB));
  int64_t* toff = scratch_i((size_t)ntaps);
  for (int64_t c = 0; c < p.Cg; ++c)
    for (int64_t kh = 0; kh < p.KH; ++kh)
      for (int64_t kw = 0; kw < p.KW; ++kw)
        toff[(c * p.KH + kh) * p.KW + kw] = c * g.plane + kh * p.dh * g.Wp + kw * p.dw;
  // [group][oc block][tap][OCB]: each weight row is read contiguously and scattered with
  // stride OCB; blocks in parallel (UNet's 1024 x 1024 x 3 x 3 is 38 MB per call).
  parallel_for(0, p.G * nblk, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t gb = b0; gb < b1; ++gb) {
      const int64_t gi = gb / nblk, b = gb % nblk;
      float* dst = wpk + gb * ntaps * v.OCB;
      for (int i = 0; i < v.OCB; ++i) {
        const int64_t oc = b * v.OCB + i;
        if (oc >= p.OCg) {
          for (int64_t t = 0; t < ntaps; ++t) dst[t * v.OCB + i] = 0.0f;
          continue;
        }
        const float* src = w + (gi * p.OCg + oc) * ntaps;
        for (int64_t t = 0; t < ntaps; ++t) dst[t * v.OCB + i] = src[t];
      }
    }
  });
  for (int64_t n0 = 0; n0 < p.N; n0 += nb) {
    const int64_t nk = std::min(nb, p.N - n0);
    // Tiles claimed 1/8 of a thread's share at a time (parallel_for_dynamic): enough per claim
    // to amortise it, small enough that a late or disturbed thread does not hold the region.
    const int64_t grain = std::max<int64_t>(1, nk * ntiles / (8 * std::max(1, num_threads())));
    for (int64_t gi = 0; gi < p.G; ++gi) {
      // Unpadded 1x1 convs read the input in place when every output row is whole vectors
      // (then no slot reads past the input's last element).
      const float* xg = x + (n0 * p.C + gi * p.Cg) * p.HW;
      if (!in_place)
        for (int64_t k = 0; k < nk; ++k) pad_group(p, g, xg + k * p.C * p.HW, xpad + k * ximg);
      const float* src = in_place ? xg : xpad;
      ConvEpilogue eg = ep;
      const int64_t cb = gi * p.OCg;
      if (eg.bias) eg.bias += cb;
      if (eg.scale) eg.scale += cb;
      if (eg.shift) eg.shift += cb;
      float* yg = y + (n0 * p.OC + cb) * p.P;
      const float* wg = wpk + gi * nblk * ntaps * v.OCB;
      // Input channels in chunks whose padded planes fit in L2 (~384 KB), but at least 32: the
      // taps of one tile jump between channel planes, and with hundreds of small planes (UNet's
      // 1024 x 16 x 16) a working set beyond L2 makes every load an L3 miss; on large planes
      // only the few rows under the current tiles are live, and short chunks would cost more
      // in partial-sum round trips through y (first chunk stores, the last applies the
      // epilogue) than they save.
      const int64_t cchunk = std::max<int64_t>(32, (int64_t)(384 << 10) / (int64_t)(sizeof(float) * g.plane));
      for (int64_t c0 = 0; c0 < p.Cg; c0 += cchunk) {
        const int64_t c1 = std::min(p.Cg, c0 + cchunk);
        const bool first = c0 == 0, last = c1 == p.Cg;
        // Tile T of the block is tile T % ntiles of image T / ntiles.
        parallel_for_dynamic(0, nk * ntiles, grain, [&](int64_t T0, int64_t T1) {
          for (int64_t T = T0; T < T1;) {
            const int64_t k = T / ntiles, t0 = T - k * ntiles, t1 = std::min(ntiles, t0 + (T1 - T));
            v.run(p, g, t0, t1, src + k * ximg, wg + c0 * KK * v.OCB, ntaps * v.OCB, toff + c0 * KK,
                  (c1 - c0) * KK, p.OCg, yg + k * p.OC * p.P, eg, first, last);
            T += t1 - t0;
          }
        });
      }
    }
  }
}

bool conv_direct_backward_input_supported(const ConvP& p) {
  return conv_direct_supported(p) && p.ph <= (p.KH - 1) * p.dh && p.pw <= (p.KW - 1) * p.dw;
}

void conv_direct_backward_input(const ConvP& p, const float* gy, const float* w, float* gx) {
  // gx = correlation of gy, padded by (K-1)*d - pad, with the kernel transposed per group
  // ([C, OC/G, KH, KW]) and flipped in both spatial dimensions.
  ConvP q = p;
  q.C = p.OC;
  q.H = p.OH;
  q.W = p.OW;
  q.OC = p.C;
  q.ph = (p.KH - 1) * p.dh - p.ph;
  q.pw = (p.KW - 1) * p.dw - p.pw;
  q.Cg = p.OCg;
  q.OCg = p.Cg;
  q.CKK = q.Cg * p.KH * p.KW;
  q.OH = p.H;
  q.OW = p.W;
  q.P = p.H * p.W;
  q.HW = p.OH * p.OW;
  const int64_t KK = p.KH * p.KW;
  // Slot 2: conv_direct_forward below uses 0 and 1. (A fresh vector per call was up to 9 MB of
  // newly mapped, page-faulting memory per UNet layer.)
  float* wt = scratch_f(2, (size_t)(p.C * p.OCg * KK));
  for (int64_t gi = 0; gi < p.G; ++gi)
    for (int64_t c = 0; c < p.Cg; ++c)
      for (int64_t oc = 0; oc < p.OCg; ++oc) {
        const float* src = w + ((gi * p.OCg + oc) * p.Cg + c) * KK;
        float* dst = wt + ((gi * p.Cg + c) * p.OCg + oc) * KK;
        for (int64_t k = 0; k < KK; ++k) dst[k] = src[KK - 1 - k];
      }
  conv_direct_forward(q, gy, wt, ConvEpilogue{}, gx);
}

}  // namespace sc
