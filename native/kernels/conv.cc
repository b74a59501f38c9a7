// 2-D convolution kernels for the CPU backend (NCHW, contiguous): forward, backward-input and
// backward-weight, float32 and float64.
//
// Strategy per convolution shape:
//  * depthwise (groups == C == OC): direct kernels, vectorised along W on a zero-padded copy
//    of the plane (so the inner loops have no bounds checks). Dense GEMM would do one FMA per
//    packed element for these, so direct loops are much faster. CMUNeXt spends most of its
//    time here (3x3 / 7x7 / 9x9 at large maps).
//  * 1x1, stride 1, no padding: the NCHW activation is already the GEMM operand
//    (C x H*W), so forward/backward are single GEMMs per image and group, no im2col.
//  * everything else (including grouped convs): im2col per image and group, in chunks of
//    output pixels so the column buffer stays around L2 size, then GEMM.
//      forward          y[g]   = W[g] (OCg x CKK) * col (CKK x P)
//      backward input   col    = W[g]^T * gy[g];  gx += col2im(col)
//      backward weight  gw[g] += gy[g] * col^T
// Parallelism: over (image, group) slabs when there are enough of them, otherwise the slab's
// GEMM / im2col / col2im use the pool themselves (nested parallel_for runs serially, so the
// two levels never oversubscribe).
//
// ISA-specific variants of the depthwise loops are the same template instantiated inside
// functions with target attributes (GNU vector types lower to the caller's vector width), so
// no per-file compiler flags are needed. fp-contract lets those loops use FMA where the
// target has it (strict -std=c++17 would otherwise turn contraction off).
#pragma GCC optimize("fp-contract=fast")

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <string>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "conv_cpu.h"
#include "conv_direct.h"
#include "conv_params.h"
#include "conv_pointwise.h"
#include "conv_wgrad.h"
#include "conv_winograd.h"
#include "fast_gelu.h"
#include "gemm.h"

namespace sc {
namespace {

// ------------------------------------------------------------------------------------------
// Parameters and validation
// ------------------------------------------------------------------------------------------

using conv::ConvP;

// ------------------------------------------------------------------------------------------
// Scratch and small helpers
// ------------------------------------------------------------------------------------------

template <typename T>
T* scratch(int slot, size_t n) {
  thread_local std::vector<T> bufs[3];
  auto& v = bufs[slot];
  if (v.size() < n) v.resize(std::max(n, v.size() + v.size() / 2));
  return v.data();
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Runs fn(s) for s in [0, S): in parallel over slabs when that balances across the pool,
// otherwise serially so that fn's own GEMM / loops can use the pool.
template <typename F>
void for_slabs(int64_t S, F&& fn) {
  const int64_t nt = num_threads();
  if (nt > 1 && S >= nt && (S % nt == 0 || S >= 4 * nt)) {
    parallel_for(0, S, 1, [&](int64_t b, int64_t e) {
      for (int64_t s = b; s < e; ++s) fn(s);
    });
  } else {
    for (int64_t s = 0; s < S; ++s) fn(s);
  }
}

// Output-pixel columns per im2col chunk: keep CKK x chunk near 2 MB (L2-ish) but at least 256
// columns so the GEMM N dimension stays efficient.
template <typename T>
int64_t chunk_cols(const ConvP& p) {
  int64_t c = (int64_t)(2u << 20) / (int64_t)(p.CKK * sizeof(T));
  c = std::max<int64_t>(256, c / 64 * 64);
  return std::min(c, p.P);
}

// For a kernel column offset `off` (iw = ow*sw + off), the output columns [lo, hi) whose
// input column lies inside [0, W).
inline void valid_cols(int64_t off, int64_t sw, int64_t W, int64_t OW, int64_t* lo, int64_t* hi) {
  int64_t l = off >= 0 ? 0 : ceil_div(-off, sw);
  int64_t h = (W - 1 - off) < 0 ? 0 : (W - 1 - off) / sw + 1;
  l = std::min(l, OW);
  h = std::min(std::max(h, l), OW);
  *lo = l;
  *hi = h;
}

// col[r, p - p0] for rows r = (c, kh, kw) of one group and output pixels p in [p0, p1).
template <typename T>
void im2col(const ConvP& p, const T* x, int64_t p0, int64_t p1, T* col) {
  const int64_t pc = p1 - p0, KK = p.KH * p.KW;
  const int64_t rows = p.Cg * KK;
  parallel_for(0, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(pc, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / KK, kh = (r / p.KW) % p.KH, kw = r % p.KW;
      const T* xc = x + c * p.HW;
      T* dst = col + r * pc;
      const int64_t off = kw * p.dw - p.pw;
      int64_t lo, hi;
      valid_cols(off, p.sw, p.W, p.OW, &lo, &hi);
      for (int64_t q = p0; q < p1;) {
        const int64_t oh = q / p.OW, ow0 = q % p.OW, ow1 = std::min(p.OW, ow0 + (p1 - q));
        const int64_t n = ow1 - ow0;
        const int64_t ih = oh * p.sh - p.ph + kh * p.dh;
        if (ih < 0 || ih >= p.H) {
          std::memset(dst, 0, sizeof(T) * n);
        } else {
          const T* xr = xc + ih * p.W + off;
          const int64_t a = std::min(std::max(lo, ow0), ow1), b = std::min(std::max(hi, a), ow1);
          for (int64_t ow = ow0; ow < a; ++ow) dst[ow - ow0] = T(0);
          if (p.sw == 1)
            std::memcpy(dst + (a - ow0), xr + a, sizeof(T) * (b - a));
          else
            for (int64_t ow = a; ow < b; ++ow) dst[ow - ow0] = xr[ow * p.sw];
          for (int64_t ow = b; ow < ow1; ++ow) dst[ow - ow0] = T(0);
        }
        dst += n;
        q += n;
      }
    }
  });
}

// gx[c] += scatter of col rows; parallel over channels (each channel owns its rows).
template <typename T>
void col2im_add(const ConvP& p, const T* col, int64_t p0, int64_t p1, T* gx) {
  const int64_t pc = p1 - p0, KK = p.KH * p.KW;
  parallel_for(0, p.Cg, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      T* gc = gx + c * p.HW;
      for (int64_t kk = 0; kk < KK; ++kk) {
        const int64_t kh = kk / p.KW, kw = kk % p.KW;
        const T* src = col + (c * KK + kk) * pc;
        const int64_t off = kw * p.dw - p.pw;
        int64_t lo, hi;
        valid_cols(off, p.sw, p.W, p.OW, &lo, &hi);
        for (int64_t q = p0; q < p1;) {
          const int64_t oh = q / p.OW, ow0 = q % p.OW, ow1 = std::min(p.OW, ow0 + (p1 - q));
          const int64_t n = ow1 - ow0;
          const int64_t ih = oh * p.sh - p.ph + kh * p.dh;
          if (ih >= 0 && ih < p.H) {
            T* gr = gc + ih * p.W + off;
            const int64_t a = std::min(std::max(lo, ow0), ow1), b = std::min(std::max(hi, a), ow1);
            const T* s = src - ow0;
            if (p.sw == 1)
              for (int64_t ow = a; ow < b; ++ow) gr[ow] += s[ow];
            else
              for (int64_t ow = a; ow < b; ++ow) gr[ow * p.sw] += s[ow];
          }
          src += n;
          q += n;
        }
      }
    }
  });
}

// ------------------------------------------------------------------------------------------
// Depthwise cores (templated on vector width; instantiated per ISA below)
// ------------------------------------------------------------------------------------------

// GNU vector of L elements with element alignment, so *(const V*)p is an unaligned vector load
// (vector types may alias their element type).
template <typename T, int L>
struct VecOf {
  typedef T type __attribute__((vector_size(sizeof(T) * L), aligned(sizeof(T))));
};

#define SC_AI __attribute__((always_inline)) inline
#define VLOAD(p) (*reinterpret_cast<const V*>(p))
#define VSTORE(p, v) (*reinterpret_cast<V*>(p) = (v))

// Correlation of a zero-padded plane P (row pitch Wp) with a KH x KW kernel:
//   out[oh, ow] = bias + sum_{kh,kw} wk[kh, kw] * P[oh*sh + kh*dh, ow*sw + kw*dw].
// Stride-1 rows are done in blocks of NV vectors held in registers across the whole kernel
// window (one load + one FMA per tap and vector, no stores), then single vectors, then scalars.
template <typename T, int L, int NV>
SC_AI void dw_corr_core(const T* P, int64_t Wp, T* out, int64_t OH, int64_t OW, const T* wk,
                        int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                        T bias) {
  using V = typename VecOf<T, L>::type;
  for (int64_t oh = 0; oh < OH; ++oh) {
    const T* base = P + oh * sh * Wp;
    T* o = out + oh * OW;
    int64_t ow = 0;
    if (sw == 1) {
      for (; ow + NV * L <= OW; ow += NV * L) {
        V acc[NV];
        _Pragma("GCC unroll 8") for (int u = 0; u < NV; ++u) acc[u] = V{} + bias;
        for (int64_t kh = 0; kh < KH; ++kh) {
          const T* r = base + kh * dh * Wp + ow;
          const T* wr = wk + kh * KW;
          for (int64_t kw = 0; kw < KW; ++kw) {
            const T wv = wr[kw];
            const T* rr = r + kw * dw;
            _Pragma("GCC unroll 8") for (int u = 0; u < NV; ++u) acc[u] += wv * VLOAD(rr + u * L);
          }
        }
        _Pragma("GCC unroll 8") for (int u = 0; u < NV; ++u) VSTORE(o + ow + u * L, acc[u]);
      }
      for (; ow + L <= OW; ow += L) {
        V acc = V{} + bias;
        for (int64_t kh = 0; kh < KH; ++kh) {
          const T* r = base + kh * dh * Wp + ow;
          const T* wr = wk + kh * KW;
          for (int64_t kw = 0; kw < KW; ++kw) acc += wr[kw] * VLOAD(r + kw * dw);
        }
        VSTORE(o + ow, acc);
      }
      for (; ow < OW; ++ow) {
        T acc = bias;
        for (int64_t kh = 0; kh < KH; ++kh)
          for (int64_t kw = 0; kw < KW; ++kw) acc += wk[kh * KW + kw] * base[kh * dh * Wp + ow + kw * dw];
        o[ow] = acc;
      }
    } else {
      // Strided: accumulate the output row in place, tap by tap (strided loads).
      for (int64_t j = 0; j < OW; ++j) o[j] = bias;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const T* r = base + kh * dh * Wp;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const T wv = wk[kh * KW + kw];
          const T* rr = r + kw * dw;
          for (int64_t j = 0; j < OW; ++j) o[j] += wv * rr[j * sw];
        }
      }
    }
  }
}

// Weight gradient of one plane: gw[kh, kw] += sum_{oh,ow} gy[oh, ow] * P[oh*sh+kh*dh, ow*sw+kw*dw].
// Unit column stride: for each kh and a block of NB taps along kw (NB a compile-time constant, so the
// NB vector accumulators live in registers), gy and the padded rows stream through once;
// lanes are summed at the end.
template <typename T, int L, int NB>
SC_AI void dw_wgrad_block(const T* P, int64_t pitch, const T* gy, int64_t OH, int64_t OW, T* gwk,
                          int64_t rowoff, int64_t dw) {
  using V = typename VecOf<T, L>::type;
  V acc[NB];
  T sacc[NB];
  _Pragma("GCC unroll 8") for (int b = 0; b < NB; ++b) {
    acc[b] = V{};
    sacc[b] = 0;
  }
  for (int64_t oh = 0; oh < OH; ++oh) {
    const T* g = gy + oh * OW;
    const T* r = P + oh * pitch + rowoff;
    int64_t j = 0;
    for (; j + L <= OW; j += L) {
      const V gv = VLOAD(g + j);
      _Pragma("GCC unroll 8") for (int b = 0; b < NB; ++b) acc[b] += gv * VLOAD(r + j + b * dw);
    }
    for (; j < OW; ++j)
      _Pragma("GCC unroll 8") for (int b = 0; b < NB; ++b) sacc[b] += g[j] * r[j + b * dw];
  }
  for (int b = 0; b < NB; ++b) {
    T s = sacc[b];
    for (int l = 0; l < L; ++l) s += acc[b][l];
    gwk[b] += s;
  }
}

template <typename T, int L>
SC_AI void dw_wgrad_core(const T* P, int64_t Wp, const T* gy, int64_t OH, int64_t OW, T* gw,
                         int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t dh, int64_t dw) {
  if (sw != 1) {
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        T s = 0;
        for (int64_t oh = 0; oh < OH; ++oh) {
          const T* r = P + (oh * sh + kh * dh) * Wp + kw * dw;
          const T* g = gy + oh * OW;
          for (int64_t j = 0; j < OW; ++j) s += g[j] * r[j * sw];
        }
        gw[kh * KW + kw] += s;
      }
    return;
  }
  const int64_t pitch = Wp * sh;  // padded rows between consecutive output rows
  constexpr int KB = 8;  // 8 accumulators + gy + a load fit in 16 registers
  for (int64_t kh = 0; kh < KH; ++kh) {
    for (int64_t kw0 = 0; kw0 < KW; kw0 += KB) {
      const int nb = (int)std::min<int64_t>(KB, KW - kw0);
      const int64_t ro = kh * dh * Wp + kw0 * dw;
      T* g = gw + kh * KW + kw0;
      switch (nb) {
        case 1: dw_wgrad_block<T, L, 1>(P, pitch, gy, OH, OW, g, ro, dw); break;
        case 2: dw_wgrad_block<T, L, 2>(P, pitch, gy, OH, OW, g, ro, dw); break;
        case 3: dw_wgrad_block<T, L, 3>(P, pitch, gy, OH, OW, g, ro, dw); break;
        case 4: dw_wgrad_block<T, L, 4>(P, pitch, gy, OH, OW, g, ro, dw); break;
        case 5: dw_wgrad_block<T, L, 5>(P, pitch, gy, OH, OW, g, ro, dw); break;
        case 6: dw_wgrad_block<T, L, 6>(P, pitch, gy, OH, OW, g, ro, dw); break;
        case 7: dw_wgrad_block<T, L, 7>(P, pitch, gy, OH, OW, g, ro, dw); break;
        default: dw_wgrad_block<T, L, 8>(P, pitch, gy, OH, OW, g, ro, dw); break;
      }
    }
  }
}

template <typename T>
using CorrFn = void (*)(const T*, int64_t, T*, int64_t, int64_t, const T*, int64_t, int64_t,
                        int64_t, int64_t, int64_t, int64_t, T);
template <typename T>
using WgradFn = void (*)(const T*, int64_t, const T*, int64_t, int64_t, T*, int64_t, int64_t,
                         int64_t, int64_t, int64_t, int64_t);

// One wrapper per ISA and dtype; the target attribute decides the vector registers used.
#define SC_DW_VARIANT(SUFFIX, TARGET, T, L, NV)                                                  \
  TARGET void dw_corr_##SUFFIX(const T* P, int64_t Wp, T* out, int64_t OH, int64_t OW,          \
                               const T* wk, int64_t KH, int64_t KW, int64_t sh, int64_t sw,     \
                               int64_t dh, int64_t dw, T bias) {                                \
    dw_corr_core<T, L, NV>(P, Wp, out, OH, OW, wk, KH, KW, sh, sw, dh, dw, bias);               \
  }                                                                                              \
  TARGET void dw_wgrad_##SUFFIX(const T* P, int64_t Wp, const T* gy, int64_t OH, int64_t OW,    \
                                T* gw, int64_t KH, int64_t KW, int64_t sh, int64_t sw,          \
                                int64_t dh, int64_t dw) {                                       \
    dw_wgrad_core<T, L>(P, Wp, gy, OH, OW, gw, KH, KW, sh, sw, dh, dw);                          \
  }

#define SC_NO_TARGET
// Generic: 16-byte vectors (SSE2 on x86-64, NEON elsewhere).
SC_DW_VARIANT(gen_f, SC_NO_TARGET, float, 4, 4)
SC_DW_VARIANT(gen_d, SC_NO_TARGET, double, 2, 4)
#if defined(__x86_64__) || defined(__i386__)
// NV vectors per row block: 4 zmm / 4 ymm accumulators -> 4 independent FMA chains per tap
// loop, enough to overlap FMA latency with the loads of the next taps.
SC_DW_VARIANT(avx2_f, __attribute__((target("avx2,fma"))), float, 8, 4)
SC_DW_VARIANT(avx2_d, __attribute__((target("avx2,fma"))), double, 4, 4)
SC_DW_VARIANT(avx512_f, __attribute__((target("avx512f"))), float, 16, 4)
SC_DW_VARIANT(avx512_d, __attribute__((target("avx512f"))), double, 8, 4)
#endif

template <typename T>
struct DwFns {
  CorrFn<T> corr;
  WgradFn<T> wgrad;
};

template <typename T>
DwFns<T> dw_fns();
template <>
DwFns<float> dw_fns<float>() {
#if defined(__x86_64__) || defined(__i386__)
  switch (cpu_isa_level()) {
    case 2: return {&dw_corr_avx512_f, &dw_wgrad_avx512_f};
    case 1: return {&dw_corr_avx2_f, &dw_wgrad_avx2_f};
    default: break;
  }
#endif
  return {&dw_corr_gen_f, &dw_wgrad_gen_f};
}
template <>
DwFns<double> dw_fns<double>() {
#if defined(__x86_64__) || defined(__i386__)
  switch (cpu_isa_level()) {
    case 2: return {&dw_corr_avx512_d, &dw_wgrad_avx512_d};
    case 1: return {&dw_corr_avx2_d, &dw_wgrad_avx2_d};
    default: break;
  }
#endif
  return {&dw_corr_gen_d, &dw_wgrad_gen_d};
}

// Copies an H x W plane into the middle of a zeroed (H + top + bottom) x (W + left + right)
// buffer; `top`/`left` may be negative (the source is then cropped).
template <typename T>
void pad_plane(const T* src, int64_t H, int64_t W, T* dst, int64_t Hp, int64_t Wp, int64_t top,
               int64_t left) {
  for (int64_t r = 0; r < Hp; ++r) {
    T* d = dst + r * Wp;
    const int64_t sr = r - top;
    if (sr < 0 || sr >= H) {
      std::memset(d, 0, sizeof(T) * Wp);
      continue;
    }
    const int64_t c0 = std::max<int64_t>(0, left), c1 = std::min<int64_t>(Wp, W + left);
    if (c0 > 0) std::memset(d, 0, sizeof(T) * std::min(c0, Wp));
    if (c1 > c0) std::memcpy(d + c0, src + sr * W + (c0 - left), sizeof(T) * (c1 - c0));
    if (c1 < Wp) std::memset(d + std::max(c1, c0), 0, sizeof(T) * (Wp - std::max(c1, c0)));
  }
}

template <typename T>
void dw_forward(const ConvP& p, const T* x, const T* w, const T* bias, T* y) {
  const DwFns<T> f = dw_fns<T>();
  const int64_t KK = p.KH * p.KW, Hp = p.H + 2 * p.ph, Wp = p.W + 2 * p.pw;
  parallel_for(0, p.N * p.C, 1, [&](int64_t b, int64_t e) {
    T* buf = scratch<T>(0, (size_t)(Hp * Wp));
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % p.C;
      pad_plane(x + nc * p.HW, p.H, p.W, buf, Hp, Wp, p.ph, p.pw);
      f.corr(buf, Wp, y + nc * p.P, p.OH, p.OW, w + c * KK, p.KH, p.KW, p.sh, p.sw, p.dh, p.dw,
             bias ? bias[c] : T(0));
    }
  });
}

template <typename T>
void dw_backward_input(const ConvP& p, const T* gy, const T* w, T* gx) {
  const DwFns<T> f = dw_fns<T>();
  const int64_t KK = p.KH * p.KW;
  if (p.sh == 1 && p.sw == 1) {
    // gx = correlation of gy (padded by the kernel extent minus the forward padding) with the
    // flipped kernel: the same register-blocked loop as the forward pass.
    const int64_t top = (p.KH - 1) * p.dh - p.ph, left = (p.KW - 1) * p.dw - p.pw;
    const int64_t Hq = p.H + (p.KH - 1) * p.dh, Wq = p.W + (p.KW - 1) * p.dw;
    parallel_for(0, p.N * p.C, 1, [&](int64_t b, int64_t e) {
      T* buf = scratch<T>(0, (size_t)(Hq * Wq));
      T* wf = scratch<T>(1, (size_t)KK);
      for (int64_t nc = b; nc < e; ++nc) {
        const T* wc = w + (nc % p.C) * KK;
        for (int64_t i = 0; i < KK; ++i) wf[i] = wc[KK - 1 - i];
        pad_plane(gy + nc * p.P, p.OH, p.OW, buf, Hq, Wq, top, left);
        f.corr(buf, Wq, gx + nc * p.HW, p.H, p.W, wf, p.KH, p.KW, 1, 1, p.dh, p.dw, T(0));
      }
    });
    return;
  }
  // Strided: scatter into a zero-padded accumulation plane, then crop.
  const int64_t Hp = p.H + 2 * p.ph, Wp = p.W + 2 * p.pw;
  parallel_for(0, p.N * p.C, 1, [&](int64_t b, int64_t e) {
    T* buf = scratch<T>(0, (size_t)(Hp * Wp));
    for (int64_t nc = b; nc < e; ++nc) {
      const T* wc = w + (nc % p.C) * KK;
      const T* g = gy + nc * p.P;
      std::memset(buf, 0, sizeof(T) * Hp * Wp);
      for (int64_t oh = 0; oh < p.OH; ++oh) {
        const T* gr = g + oh * p.OW;
        for (int64_t kh = 0; kh < p.KH; ++kh) {
          T* row = buf + (oh * p.sh + kh * p.dh) * Wp;
          for (int64_t kw = 0; kw < p.KW; ++kw) {
            const T wv = wc[kh * p.KW + kw];
            T* rr = row + kw * p.dw;
            for (int64_t ow = 0; ow < p.OW; ++ow) rr[ow * p.sw] += wv * gr[ow];
          }
        }
      }
      T* o = gx + nc * p.HW;
      for (int64_t h = 0; h < p.H; ++h)
        std::memcpy(o + h * p.W, buf + (h + p.ph) * Wp + p.pw, sizeof(T) * p.W);
    }
  });
}

template <typename T>
void dw_backward_weight(const ConvP& p, const T* x, const T* gy, T* gw) {
  const DwFns<T> f = dw_fns<T>();
  const int64_t KK = p.KH * p.KW, Hp = p.H + 2 * p.ph, Wp = p.W + 2 * p.pw;
  // Parallel over channels: each channel's taps are summed over all images by one thread.
  parallel_for(0, p.C, 1, [&](int64_t b, int64_t e) {
    T* buf = scratch<T>(0, (size_t)(Hp * Wp));
    for (int64_t c = b; c < e; ++c) {
      T* g = gw + c * KK;
      for (int64_t i = 0; i < KK; ++i) g[i] = T(0);
      for (int64_t n = 0; n < p.N; ++n) {
        const int64_t nc = n * p.C + c;
        pad_plane(x + nc * p.HW, p.H, p.W, buf, Hp, Wp, p.ph, p.pw);
        f.wgrad(buf, Wp, gy + nc * p.P, p.OH, p.OW, g, p.KH, p.KW, p.sh, p.sw, p.dh, p.dw);
      }
    }
  });
}

// ------------------------------------------------------------------------------------------
// GEMM-based paths
// ------------------------------------------------------------------------------------------

// SCALPEL_CONV_DIRECT=0: the im2col + GEMM paths instead of the direct, pointwise and
// outer-product kernels (same-run A/B benchmarks; Winograd has its own switch, sc.setWinograd).
bool handwritten_kernels() {
  static const bool enabled = [] {
    const char* e = std::getenv("SCALPEL_CONV_DIRECT");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return enabled;
}

// Whether a 1x1 convolution's plain forward and input gradient take the pointwise kernel
// (conv_pointwise.cc). Against the packed GEMM (batch 8, AVX-512, inputs not in cache):
// 1.1-2.3x on 16-128 channel maps of 32 x 32 and larger (32 -> 128 at 128 x 128: 6.7 against
// 15.4 ms); even at 16 x 16 with 160-512 channels (0.93-1.0x), so from 1024 pixels, or with at
// most 64 channels on one side.
bool pointwise_kernel(const ConvP& p) {
  return handwritten_kernels() && conv_pointwise_supported(p) && (p.P >= 1024 || std::min(p.Cg, p.OCg) <= 64);
}

// The float32 kernel each pass takes (double always takes the depthwise or GEMM paths). One
// place for the choice: the dispatch below and conv_cpu_algorithms (what users and tests see).
enum class Algo { depthwise, winograd, direct, pointwise, outer, gemm };

// epilogue: conv2d_fused (a fused activation / affine), which keeps the direct kernel for
// every shape it takes.
Algo forward_algo(const ConvP& p, bool epilogue) {
  if (p.depthwise()) return Algo::depthwise;
  if (conv_winograd_supported(p)) return Algo::winograd;
  if (!epilogue && pointwise_kernel(p)) return Algo::pointwise;
  if (handwritten_kernels() && conv_direct_supported(p) && (epilogue || !p.pointwise())) return Algo::direct;
  return Algo::gemm;
}

// A 1x1 input gradient is a 1x1 convolution with the input's channel count as its outputs.
Algo backward_input_algo(const ConvP& p) {
  if (p.depthwise()) return Algo::depthwise;
  if (conv_winograd_backward_input_supported(p)) return Algo::winograd;
  if (pointwise_kernel(p)) return Algo::pointwise;
  if (handwritten_kernels() && conv_direct_backward_input_supported(p) && !p.pointwise()) return Algo::direct;
  return Algo::gemm;
}

// The outer-product kernel (conv_wgrad.cc) where one side has at most 64 channels per group:
// against Winograd's transformed sums (batch 8, AVX-512) 1.1-2.1x up to 128 output channels
// (64 -> 64 at 128 x 128: 34 against 45 ms; 128 -> 64: 69 against 84), 0.8x at 128 -> 128;
// against the GEMM for 1x1s 1.3-1.6x where one side has 64 channels or fewer, 0.8-0.9x where
// both have 128+ (the packed panels' products run nearer the peak).
Algo backward_weight_algo(const ConvP& p) {
  if (p.depthwise()) return Algo::depthwise;
  const int64_t few = std::min(p.OCg, p.Cg), many = std::max(p.OCg, p.Cg);
  if (few <= 64) {
    // Winograd keeps few input channels into many outputs (64 -> 256 at 32 x 32: 7.7 against
    // 11.7 ms), and 64 channels against 128+ since its sums' GEMM packs by AVX-512 transposes
    // (64 -> 128 at 64 x 64: 14.7 against 19.5 ms; at 32 x 32 4.3 against 6.5; 128 -> 64 at
    // 16 x 16 1.3 against 2.1); 64 -> 64 and 32 -> 64 stay with the outer product (32 x 32: 2.9
    // against 3.4 ms, 1.6 against 2.4).
    if ((p.OCg > 128 || (few == 64 && many >= 128)) && conv_winograd_backward_weight_supported(p)) return Algo::winograd;
    return handwritten_kernels() && conv_wgrad_outer_supported(p) ? Algo::outer : Algo::gemm;
  }
  if (conv_winograd_backward_weight_supported(p)) return Algo::winograd;
  return Algo::gemm;
}

const char* algo_name(Algo a) {
  switch (a) {
    case Algo::depthwise: return "depthwise";
    case Algo::winograd: return "winograd";
    case Algo::direct: return "direct";
    case Algo::pointwise: return "pointwise";
    case Algo::outer: return "outer";
    default: return "gemm";
  }
}

template <typename T>
void conv_forward(const ConvP& p, const T* x, const T* w, const T* bias, T* y) {
  if (p.depthwise()) return dw_forward(p, x, w, bias, y);
  if constexpr (std::is_same_v<T, float>) {
    ConvEpilogue ep;
    ep.bias = bias;
    const Algo algo = forward_algo(p, false);
    if (algo == Algo::winograd) return conv_winograd_forward(p, x, w, ep, y);
    if (algo == Algo::direct) return conv_direct_forward(p, x, w, ep, y);
    if (algo == Algo::pointwise) return conv_pointwise_forward(p, x, w, bias, y);
  }
  const bool pw1 = p.pointwise();
  const int64_t pcmax = chunk_cols<T>(p);
  for_slabs(p.N * p.G, [&](int64_t s) {
    const int64_t n = s / p.G, g = s % p.G;
    const T* xg = x + (n * p.C + g * p.Cg) * p.HW;
    const T* wg = w + g * p.OCg * p.CKK;
    T* yg = y + (n * p.OC + g * p.OCg) * p.P;
    if (pw1) {
      gemm<T>(false, false, p.OCg, p.P, p.Cg, T(1), wg, p.Cg, xg, p.HW, T(0), yg, p.P);
    } else {
      T* col = scratch<T>(0, (size_t)(p.CKK * pcmax));
      for (int64_t p0 = 0; p0 < p.P; p0 += pcmax) {
        const int64_t p1 = std::min(p.P, p0 + pcmax);
        im2col(p, xg, p0, p1, col);
        gemm<T>(false, false, p.OCg, p1 - p0, p.CKK, T(1), wg, p.CKK, col, p1 - p0, T(0),
                yg + p0, p.P);
      }
    }
    if (bias)
      for (int64_t oc = 0; oc < p.OCg; ++oc) {
        const T bv = bias[g * p.OCg + oc];
        T* r = yg + oc * p.P;
        for (int64_t i = 0; i < p.P; ++i) r[i] += bv;
      }
  });
}

template <typename T>
void conv_backward_input(const ConvP& p, const T* gy, const T* w, T* gx) {
  if (p.depthwise()) return dw_backward_input(p, gy, w, gx);
  if constexpr (std::is_same_v<T, float>) {
    const Algo algo = backward_input_algo(p);
    if (algo == Algo::winograd) return conv_winograd_backward_input(p, gy, w, gx);
    if (algo == Algo::direct) return conv_direct_backward_input(p, gy, w, gx);
    if (algo == Algo::pointwise) return conv_pointwise_backward_input(p, gy, w, gx);
  }
  const bool pw1 = p.pointwise();
  const int64_t pcmax = chunk_cols<T>(p);
  for_slabs(p.N * p.G, [&](int64_t s) {
    const int64_t n = s / p.G, g = s % p.G;
    T* gxg = gx + (n * p.C + g * p.Cg) * p.HW;
    const T* wg = w + g * p.OCg * p.CKK;
    const T* gyg = gy + (n * p.OC + g * p.OCg) * p.P;
    if (pw1) {
      gemm<T>(true, false, p.Cg, p.P, p.OCg, T(1), wg, p.Cg, gyg, p.P, T(0), gxg, p.HW);
      return;
    }
    std::memset(gxg, 0, sizeof(T) * p.Cg * p.HW);
    T* col = scratch<T>(0, (size_t)(p.CKK * pcmax));
    for (int64_t p0 = 0; p0 < p.P; p0 += pcmax) {
      const int64_t p1 = std::min(p.P, p0 + pcmax);
      gemm<T>(true, false, p.CKK, p1 - p0, p.OCg, T(1), wg, p.CKK, gyg + p0, p.P, T(0), col,
              p1 - p0);
      col2im_add(p, col, p0, p1, gxg);
    }
  });
}

template <typename T>
void conv_backward_weight(const ConvP& p, const T* x, const T* gy, T* gw, T* gb) {
  Algo algo = Algo::gemm;  // double: the depthwise or GEMM paths
  if constexpr (std::is_same_v<T, float>) {
    algo = backward_weight_algo(p);
    // The outer-product kernel sums the bias gradient in its chunks.
    if (algo == Algo::outer) return conv_wgrad_outer(p, x, gy, gw, gb);
  }
  if (gb) {
    parallel_for(0, p.OC, 1, [&](int64_t b, int64_t e) {
      for (int64_t oc = b; oc < e; ++oc) {
        double s = 0;
        for (int64_t n = 0; n < p.N; ++n) {
          const T* r = gy + (n * p.OC + oc) * p.P;
          // Eight interleaved partial sums: one serial chain is latency-bound (an add per ~3
          // cycles), and the compiler may not reassociate a float sum on its own.
          T part[8] = {};
          int64_t i = 0;
          for (; i + 8 <= p.P; i += 8)
            for (int k = 0; k < 8; ++k) part[k] += r[i + k];
          for (; i < p.P; ++i) part[0] += r[i];
          for (int k = 0; k < 8; ++k) s += part[k];
        }
        gb[oc] = (T)s;
      }
    });
  }
  if (p.depthwise()) return dw_backward_weight(p, x, gy, gw);
  if constexpr (std::is_same_v<T, float>) {
    if (algo == Algo::winograd) return conv_winograd_backward_weight(p, x, gy, gw);
  }
  const bool pw1 = p.pointwise();
  const int64_t pcmax = chunk_cols<T>(p);
  const int64_t wsize = p.OC * p.CKK;
  // Accumulates the contribution of images [n0, n1) into acc (which the caller zeroed).
  auto accumulate = [&](int64_t n0, int64_t n1, T* acc) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t g = 0; g < p.G; ++g) {
        const T* xg = x + (n * p.C + g * p.Cg) * p.HW;
        const T* gyg = gy + (n * p.OC + g * p.OCg) * p.P;
        T* ag = acc + g * p.OCg * p.CKK;
        if (pw1) {
          gemm<T>(false, true, p.OCg, p.Cg, p.P, T(1), gyg, p.P, xg, p.HW, T(1), ag, p.Cg);
          continue;
        }
        T* col = scratch<T>(0, (size_t)(p.CKK * pcmax));
        for (int64_t p0 = 0; p0 < p.P; p0 += pcmax) {
          const int64_t p1 = std::min(p.P, p0 + pcmax);
          im2col(p, xg, p0, p1, col);
          gemm<T>(false, true, p.OCg, p.CKK, p1 - p0, T(1), gyg + p0, p.P, col, p1 - p0, T(1),
                  ag, p.CKK);
        }
      }
  };
  std::fill(gw, gw + wsize, T(0));
  const int64_t nt = num_threads();
  if (nt > 1 && p.N >= nt) {
    // Images in parallel, each thread into its own partial sum, then reduce. The partial sums
    // live in the caller's scratch slot 2 (the workers use slot 0): a fresh buffer per call
    // was up to 19 MB of newly mapped, page-faulting memory per UNet layer.
    T* partial = scratch<T>(2, (size_t)(nt * wsize));
    std::atomic<int> slots{0};
    parallel_for(0, p.N, 1, [&](int64_t b, int64_t e) {
      T* acc = partial + (size_t)slots.fetch_add(1) * wsize;
      std::fill(acc, acc + wsize, T(0));
      accumulate(b, e, acc);
    });
    const int used = slots.load();
    for (int s = 0; s < used; ++s) {
      const T* a = partial + (size_t)s * wsize;
      for (int64_t i = 0; i < wsize; ++i) gw[i] += a[i];
    }
  } else {
    accumulate(0, p.N, gw);
  }
}

// ------------------------------------------------------------------------------------------
// Fused inference convolution
// ------------------------------------------------------------------------------------------

inline float act_value(conv::FusedAct a, float v) {
  if (a == conv::FusedAct::relu) return v > 0.0f ? v : 0.0f;
  if (a == conv::FusedAct::gelu) return fastmath::gelu(v);
  return v;
}
inline double act_value(conv::FusedAct a, double v) {
  if (a == conv::FusedAct::relu) return v > 0.0 ? v : 0.0;
  if (a == conv::FusedAct::gelu) return 0.5 * v * (1.0 + std::erf(v * 0.70710678118654752440));
  return v;
}

// y = act(y) * scale + shift on every output plane (the bias was added by the convolution).
template <typename T>
void conv_epilogue(const ConvP& p, conv::FusedAct act, const T* scale, const T* shift, T* y) {
  if (act == conv::FusedAct::none && !scale) return;
  parallel_for(0, p.N * p.OC, 1, [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t oc = nc % p.OC;
      T* r = y + nc * p.P;
      const T s = scale ? scale[oc] : T(1), h = shift ? shift[oc] : T(0);
      if (act == conv::FusedAct::gelu && std::is_same_v<T, float>) {
        gelu_f32_array(reinterpret_cast<const float*>(r), reinterpret_cast<float*>(r), p.P);
        if (scale)
          for (int64_t i = 0; i < p.P; ++i) r[i] = r[i] * s + h;
      } else {
        for (int64_t i = 0; i < p.P; ++i) r[i] = act_value(act, r[i]) * s + h;
      }
    }
  });
}

void conv2d_fused_cpu(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  const conv::FusedArgs f = conv::check_fused(in, out, a);
  const TArg &x = in[0], &w = in[1], &y = out[0];
  if (y.numel() == 0) return;
  if (x.numel() == 0 || w.numel() == 0) throw KernelError("conv2d_fused: empty input or weight");
  SC_FLOAT_DISPATCH(x.dtype, T, {
    const T* bias = f.bias ? f.bias->ptr<T>() : nullptr;
    const T* scale = f.scale ? f.scale->ptr<T>() : nullptr;
    const T* shift = f.shift ? f.shift->ptr<T>() : nullptr;
    bool done = false;
    if constexpr (std::is_same_v<T, float>) {
      const Algo algo = forward_algo(f.p, true);
      if (algo == Algo::winograd || algo == Algo::direct) {
        ConvEpilogue ep;
        // (T is float here; the casts only satisfy the double instantiation of this branch.)
        ep.bias = reinterpret_cast<const float*>(bias);
        ep.scale = reinterpret_cast<const float*>(scale);
        ep.shift = reinterpret_cast<const float*>(shift);
        ep.act = static_cast<ConvAct>(static_cast<int>(f.act));
        (algo == Algo::winograd ? conv_winograd_forward : conv_direct_forward)(
            f.p, reinterpret_cast<const float*>(x.ptr<T>()), reinterpret_cast<const float*>(w.ptr<T>()), ep,
            reinterpret_cast<float*>(y.ptr<T>()));
        done = true;
      }
    }
    if (!done) {
      conv_forward(f.p, x.ptr<T>(), w.ptr<T>(), bias, y.ptr<T>());
      conv_epilogue(f.p, f.act, scale, shift, y.ptr<T>());
    }
  });
}

// ------------------------------------------------------------------------------------------
// Kernel entry points
// ------------------------------------------------------------------------------------------

void conv2d_cpu(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  conv::run_forward(in, out, a, [](auto&&... args) { conv_forward(args...); });
}
void conv2d_backward_input_cpu(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  conv::run_backward_input(in, out, a, [](auto&&... args) { conv_backward_input(args...); });
}
void conv2d_backward_weight_cpu(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  conv::run_backward_weight(in, out, a, [](auto&&... args) { conv_backward_weight(args...); });
}

}  // namespace

ConvAlgorithms conv_cpu_algorithms(const ConvP& p) {
  return ConvAlgorithms{algo_name(forward_algo(p, false)), algo_name(forward_algo(p, true)),
                        algo_name(backward_input_algo(p)), algo_name(backward_weight_algo(p))};
}

SC_KERNEL("conv2d", cpu, conv2d_cpu);
SC_KERNEL("conv2d_backward_input", cpu, conv2d_backward_input_cpu);
SC_KERNEL("conv2d_backward_weight", cpu, conv2d_backward_weight_cpu);
SC_KERNEL("conv2d_fused", cpu, conv2d_fused_cpu);

}  // namespace sc
