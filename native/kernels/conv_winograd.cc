// Winograd F(4x4, 3x3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016) for stride-1 3x3 kernels over many channels.
//
// Why: a 3x3 over 64-512 channels is almost all of UNet's, CMUNeXt's decoder's and TransUNet's
// FLOPs, and the direct kernel (conv_direct.cc) runs it at 70-77 % of the FMA peak, so nothing
// but fewer multiplications could make it much faster. F(4x4, 3x3) computes a 4 x 4 output tile
// from a 6 x 6 input tile with 36 multiplications per (input, output) channel pair where the
// direct form needs 144:
//
//   V = B^T d B        (input tile d, 6 x 6, per input channel)
//   U = G g G^T        (kernel g, 3 x 3 -> 6 x 6, per channel pair)
//   M[pos] = sum over input channels of U[pos] * V[pos]   (36 independent matrix products)
//   Y = A^T M A        (4 x 4 output tile, per output channel), then the epilogue.
//
// The 36 products are the work: per block of Tb tiles they are GEMMs of (output channels) x
// (input channels) x (Tb tiles), run with the direct kernel's register tiling (OCB output
// channels x NV vectors of L tiles, accumulated over input channels in registers), position by
// position so that V's slice stays in cache across output-channel blocks. The transforms are
// vectorised across L tiles: where a vector of tiles lies in one tile row, or is two or four
// whole tile rows (row mode), B^T runs down the input's columns as contiguous vectors and then
// along rows with shuffles, and output rows are stored as vectors; elsewhere (other narrow maps)
// tiles are staged one by one.
//
// The weight gradient is the same algorithm transposed (backward_weight_run): the input's
// V = B^T x B as above, the output gradient's tiles expanded by Z = A gy A^T, the 36 sums of
// Z ⊙ V over all tiles (GEMMs reducing over tiles) and dW = G^T M G once per channel pair.
//
// Measured against the direct kernel (AVX-512, 2 threads, bench/results/README.md): 1.7-2.8x
// at 32-256 channels on 32-128 px maps at batch 8, 1.2-2x at batch 1; the weights' transform
// (36 values per channel pair, every call) keeps it off shapes with fewer than 32 tiles.
//
// Precision: the transforms' constants (up to 8 in A, 1/24 in G) cost a few bits against the
// direct sum: 2e-6 - 9e-6 of the output's magnitude at 16-128 channels
// (test/conv-winograd.test.ts), against 2e-7 - 5e-7 for the direct kernel. sc.setWinograd(false)
// or SCALPEL_WINOGRAD=0 turns it off.
#pragma GCC optimize("fp-contract=fast")

#include "conv_winograd.h"

#include <algorithm>
#include <cstdlib>
#include <atomic>
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

constexpr int kPos = 36;  // 6 x 6 transformed positions
// Channels per group on either side below which the transforms' fixed cost per tile outweighs
// the products saved: 16 -> 16 still measured 1.08x the direct kernel at batch 1 on 256 x 256
// and 1.37x at batch 8 on 128 x 128. With 8-15 channels it pays from 256 tiles (the direct
// kernel's 8-channel register tile runs at ~40 % of the FMA peak): batch 8 at 128 x 128, 16 -> 8
// 1.83 -> 1.33 ms forward, 1.53 -> 1.24 input gradient; 8 -> 8 0.96 -> 0.79; 8 -> 16 1.54 ->
// 1.20; 16 -> 16 in 2 groups 1.80 -> 1.56; batch 1 at 256 x 256, 16 -> 8 0.89 -> 0.70; at 64
// tiles (8 -> 16 at 32 x 32, batch 1) it measured 1.0-1.4x slower.
constexpr int64_t kMinChannels = 16;
constexpr int64_t kMinTiles = 32;
constexpr int64_t kMinChannelsFew = 8;
constexpr int64_t kMinTilesFewChannels = 256;

// 4 x 4 output tiles of the whole batch.
int64_t output_tiles(const ConvP& p) { return p.N * ((p.OH + 3) / 4) * ((p.OW + 3) / 4); }

// Grown, never shrunk; per thread. Slots: 0 a block's V, 1 its M (per worker), 2 the shared V
// of run()'s few-blocks path, 3 the transformed weights (calling thread).
float* scratch_w(int slot, size_t n) {
  thread_local std::vector<float> bufs[4];
  auto& v = bufs[slot];
  if (v.size() < n) v.resize(std::max(n, v.size() + v.size() / 2));
  return v.data();
}

// On unless SCALPEL_WINOGRAD=0 or conv_winograd_set_enabled(false) (sc.setWinograd): -1 until the
// environment is read.
std::atomic<int> g_enabled{-1};

// The convolution as the kernel sees it: Cin -> Cout channels per group, on planes H x W with
// padding (ph, pw), output OH x OW in th x tw tiles, blocks of Tb = L * NV tiles (one register
// tile's width), output channels in blocks of OCB (its height).
//
// Tiles are numbered as slots, S per tile row. Row mode: every vector of L slots is R whole
// segments of L / R consecutive tiles in one tile row each, whose input and output rows are
// contiguous (loaded and stored as vectors with shuffles, below). R = 1 where tile rows are at
// least a vector long: S is tw rounded up to whole vectors (the slots past tw are padding
// lanes). R = 2 or 4 where a tile row is half or a quarter of a vector (tw = 8 or 4 on AVX-512:
// 32 and 16 px maps, where U-Nets' widest layers are): S = tw and a vector is R tile rows, of
// one image or of consecutive ones. Elsewhere S = tw and a vector's tiles are gathered and
// scattered one by one.
struct Plan {
  int64_t N, G, Cin, Cout, H, W, ph, pw, OH, OW;
  int64_t cstride_in, cstride_out;  // channels of one image, input and output
  int64_t th, tw, S, slots, Tb, blocks, nob;
  int64_t vpos;  // floats between V's positions: Cin x Tb and a cache line, so that the 36
                 // stores of a tile's transform do not alias 4 KB apart
  int64_t ld;    // floats between V's channels (Tb; the weight gradient's tile chunk)
  bool rowmode;
  int R;         // row mode's segments per vector (1, 2 or 4; 1 outside row mode)
};

struct Slot {
  int64_t n, ty, tx;
  bool valid;
};

inline Slot slot_at(const Plan& q, int64_t t) {
  if (t >= q.slots) return Slot{0, 0, 0, false};
  const int64_t per = q.th * q.S, n = t / per, r = t - n * per, ty = r / q.S, tx = r - ty * q.S;
  return Slot{n, ty, tx, tx < q.tw};
}

// Where the 3 x 3 kernels come from: w [Cout, Cin, 3, 3] per group as given, or (flip) the
// weights of the forward convolution whose input gradient this is, [Cin, Cout, 3, 3] per
// group, each kernel turned by 180 degrees.
struct WeightSource {
  const float* w;
  bool flip;
};

template <int L>
struct VT {
  // Unaligned: the scratch buffers and output planes are only float-aligned.
  typedef float F __attribute__((vector_size(sizeof(float) * L), aligned(sizeof(float))));
  typedef int32_t I __attribute__((vector_size(sizeof(float) * L)));
};

// G g (rows) or (G g) G^T (columns): three values to six.
template <typename F>
SC_AI void g6(F g0, F g1, F g2, F (&r)[6]) {
  r[0] = g0 * 0.25f;
  r[1] = (g0 + g1 + g2) * (-1.0f / 6);
  r[2] = (g0 - g1 + g2) * (-1.0f / 6);
  r[3] = g0 * (1.0f / 24) + g1 * (1.0f / 12) + g2 * (1.0f / 6);
  r[4] = g0 * (1.0f / 24) - g1 * (1.0f / 12) + g2 * (1.0f / 6);
  r[5] = g2;
}

// B^T applied to six values (a column or a row of a 6 x 6 input tile).
template <typename F>
SC_AI void bt6(const F (&d)[6], F (&r)[6]) {
  r[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
  r[1] = (d[3] + d[4]) - 4.0f * (d[1] + d[2]);
  r[2] = (d[4] - d[3]) + 4.0f * (d[1] - d[2]);
  r[3] = (d[4] - d[2]) + 2.0f * (d[3] - d[1]);
  r[4] = (d[4] - d[2]) - 2.0f * (d[3] - d[1]);
  r[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

// A^T applied to six values: four outputs.
template <typename F>
SC_AI void at6(const F (&m)[6], F (&o)[4]) {
  const F s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  o[0] = m[0] + s12 + s34;
  o[1] = d12 + 2.0f * d34;
  o[2] = s12 + 4.0f * s34;
  o[3] = d12 + 8.0f * d34 + m[5];
}

// A applied to four values (a column or row of a 4 x 4 output-gradient tile): six values. The
// weight gradient's dual of the output transform: <gy, A^T X A> = <A gy A^T, X>.
template <typename F>
SC_AI void a4(const F (&g)[4], F (&z)[6]) {
  const F s02 = g[0] + g[2], s13 = g[1] + g[3];
  const F t02 = g[0] + 4.0f * g[2], t13 = 2.0f * g[1] + 8.0f * g[3];
  z[0] = g[0];
  z[1] = s02 + s13;
  z[2] = s02 - s13;
  z[3] = t02 + t13;
  z[4] = t02 - t13;
  z[5] = g[3];
}

// The transforms' first pass, as tags: B^T on six input rows, A on four gradient rows.
struct BT6 {
  template <typename V>
  SC_AI static void apply(const V (&d)[6], V (&r)[6]) { bt6(d, r); }
};
struct A4 {
  template <typename V>
  SC_AI static void apply(const V (&d)[4], V (&r)[6]) { a4(d, r); }
};

// Row mode's column pass: Tr down columns [xa, xb) of N rows of src (stride floats apart, zero
// where !row_in), the six results of column x into out + i * ostride + (x - base). Whole
// vectors, the last one ending at xb (overlapping its predecessor: the same values again)
// rather than a scalar tail; scalar where the run is shorter than a vector.
template <int L, int N, typename Tr>
SC_AI void column_pass(const float* src, int64_t stride, const bool (&row_in)[N], int64_t xa, int64_t xb,
                       int64_t base, float* out, int64_t ostride) {
  using F = typename VT<L>::F;
  int64_t xx = xa;
  if (xb - xa >= L) {
    for (;; xx += L) {
      if (xx + L > xb) xx = xb - L;
      F d[N], o[6];
      _Pragma("GCC unroll 6") for (int k = 0; k < N; ++k) d[k] = row_in[k] ? *reinterpret_cast<const F*>(src + k * stride + xx) : F{};
      Tr::apply(d, o);
      _Pragma("GCC unroll 6") for (int i = 0; i < 6; ++i) *reinterpret_cast<F*>(out + i * ostride + (xx - base)) = o[i];
      if (xx + L == xb) break;
    }
    xx = xb;
  }
  for (; xx < xb; ++xx) {
    float d[N], o[6];
    for (int k = 0; k < N; ++k) d[k] = row_in[k] ? src[k * stride + xx] : 0.0f;
    Tr::apply(d, o);
    for (int i = 0; i < 6; ++i) out[i * ostride + (xx - base)] = o[i];
  }
}

// U[group][pos][oc block][input channel][OCB] = G k G^T, zero past the last output channel, for
// (group, oc block) in [gb0, gb1). A vector holds L / OCB input channels x OCB output channels,
// so each position's result is one contiguous store.
template <int L, int OCB>
SC_AI void weights_core(const Plan& q, const WeightSource& src, float* u, int64_t gb0, int64_t gb1) {
  using F = typename VT<L>::F;
  constexpr int ICL = L / OCB;
  static_assert(ICL * OCB == L, "a vector is whole oc blocks");
  for (int64_t gb = gb0; gb < gb1; ++gb) {
    const int64_t gi = gb / q.nob, b = gb % q.nob;
    for (int64_t ic0 = 0; ic0 < q.Cin; ic0 += ICL) {
      alignas(64) float st[9][L];
      for (int c = 0; c < ICL; ++c)
        for (int i = 0; i < OCB; ++i) {
          const int64_t ic = ic0 + c, oc = b * OCB + i;
          const int lane = c * OCB + i;
          if (ic >= q.Cin || oc >= q.Cout) {
            for (int k = 0; k < 9; ++k) st[k][lane] = 0.0f;
          } else if (!src.flip) {
            const float* g = src.w + ((gi * q.Cout + oc) * q.Cin + ic) * 9;
            for (int k = 0; k < 9; ++k) st[k][lane] = g[k];
          } else {
            const float* g = src.w + ((gi * q.Cin + ic) * q.Cout + oc) * 9;
            for (int k = 0; k < 9; ++k) st[k][lane] = g[8 - k];
          }
        }
      F r[6][3];  // G g: six rows of three
      for (int c = 0; c < 3; ++c) {
        F col[6];
        g6(*reinterpret_cast<const F*>(st[c]), *reinterpret_cast<const F*>(st[3 + c]),
           *reinterpret_cast<const F*>(st[6 + c]), col);
        for (int a = 0; a < 6; ++a) r[a][c] = col[a];
      }
      const int nic = (int)std::min<int64_t>(ICL, q.Cin - ic0);
      for (int a = 0; a < 6; ++a) {
        F t[6];
        g6(r[a][0], r[a][1], r[a][2], t);
        for (int e = 0; e < 6; ++e) {
          float* dst = u + (((gi * kPos + a * 6 + e) * q.nob + b) * q.Cin + ic0) * OCB;
          if (nic == ICL) {
            *reinterpret_cast<F*>(dst) = t[e];
          } else {
            alignas(64) float tmp[L];
            *reinterpret_cast<F*>(tmp) = t[e];
            std::memcpy(dst, tmp, sizeof(float) * nic * OCB);
          }
        }
      }
    }
  }
}

// Lane l of e = shuffle(a0, a1, a2, a3) is element 4 l + j of the 4 L floats a0..a3 (row
// mode's input taps), or the reverse interleave (its output rows). Two-source shuffles and a
// blend; GCC makes them vpermt2ps on AVX-512.
template <int L>
struct Shuffles {
  using I = typename VT<L>::I;
  I lo[4], hi[4];        // taps j: lanes < L/2 from (a0, a1), lanes >= L/2 from (a2, a3)
  I olo[4], ohi[4];      // output vector q: columns 0-1 from (o0, o1), 2-3 from (o2, o3)
  I half, pairs;         // blends: lower half / upper half; columns 0-1 / 2-3
  Shuffles() {
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < L; ++l) {
        lo[j][l] = l < L / 2 ? 4 * l + j : 0;
        hi[j][l] = l >= L / 2 ? 4 * (l - L / 2) + j : 0;
        const int c = l % 4, tile = j * L / 4 + l / 4;
        olo[j][l] = c == 0 ? tile : c == 1 ? L + tile : 0;
        ohi[j][l] = c == 2 ? tile : c == 3 ? L + tile : 0;
      }
    for (int l = 0; l < L; ++l) {
      half[l] = l < L / 2 ? l : L + l;
      pairs[l] = l % 4 < 2 ? l : L + l;
    }
  }
};

// Element 4 l + j of the 4 L floats a[0..3], in lane l: tap j of every lane's tile in a row of
// row mode's transformed rows.
template <int L>
SC_AI typename VT<L>::F tap(const Shuffles<L>& sh, const typename VT<L>::F (&a)[4], int j) {
  return __builtin_shuffle(__builtin_shuffle(a[0], a[1], sh.lo[j]), __builtin_shuffle(a[2], a[3], sh.hi[j]), sh.half);
}

// V[pos][ic][tile] (positions q.vpos floats apart, channels q.ld) for input channels [c0, c1)
// of group gi, slots [t0, t0 + L * NV).
template <int L, int NV>
SC_AI void input_core(const Plan& q, const float* x, int64_t gi, int64_t t0, int64_t c0,
                      int64_t c1, float* v) {
  using F = typename VT<L>::F;
  static const Shuffles<L> sh;
  const int64_t HW = q.H * q.W;
  for (int lg = 0; lg < NV; ++lg) {
    float* vg = v + lg * L;
    const Slot first = slot_at(q, t0 + lg * L);
    if (q.rowmode && first.valid) {
      // Each segment (a run of tiles in one tile row): B^T down the columns of its six input
      // rows first (contiguous vectors, over the image's columns only), into rows of tv that
      // are zero where the window leaves the image; then B^T along each row, tap j of every
      // lane picked out by shuffles from the segments' rows.
      const int R = q.R;
      const int64_t sw = L / R;  // tiles per segment
      const int hp = 4 / R;      // vectors per segment row
      constexpr int kRow = 4 * L + 8;
      alignas(64) float tv[4][6][kRow];
      std::memset(tv, 0, sizeof tv[0] * R);
      struct Seg {
        int64_t base, ix0, xa, xb;  // plane offset of the window's first row; its columns
        bool row_in[6];
      } seg[4];
      for (int r = 0; r < R; ++r) {
        const Slot sl = slot_at(q, t0 + lg * L + r * sw);
        const int64_t iy0 = sl.ty * 4 - q.ph, ix0 = sl.tx * 4 - q.pw;
        seg[r].base = sl.n * q.cstride_in * HW + iy0 * q.W;
        seg[r].ix0 = ix0;
        seg[r].xa = std::max<int64_t>(0, ix0);
        seg[r].xb = sl.valid ? std::min<int64_t>(q.W, ix0 + 4 * sw + 4) : seg[r].xa;
        for (int k = 0; k < 6; ++k) seg[r].row_in[k] = iy0 + k >= 0 && iy0 + k < q.H;
      }
      for (int64_t c = c0; c < c1; ++c) {
        for (int r = 0; r < R; ++r) {
          const Seg& sg = seg[r];
          column_pass<L, 6, BT6>(x + (gi * q.Cin + c) * HW + sg.base, q.W, sg.row_in, sg.xa, sg.xb, sg.ix0, tv[r][0], kRow);
        }
        // Vector h of the 4 L floats in a row: segment h / hp, at (h % hp) L in it.
        for (int i = 0; i < 6; ++i) {
          F a[4], b[4], e[6], o[6];
          for (int h = 0; h < 4; ++h) {
            const float* src = tv[h / hp][i] + (h % hp) * L;
            a[h] = *reinterpret_cast<const F*>(src);
            b[h] = *reinterpret_cast<const F*>(src + 4);
          }
          for (int j = 0; j < 4; ++j) e[j] = tap<L>(sh, a, j);
          for (int j = 0; j < 2; ++j) e[4 + j] = tap<L>(sh, b, j);
          bt6(e, o);
          for (int j = 0; j < 6; ++j) *reinterpret_cast<F*>(vg + (i * 6 + j) * q.vpos + c * q.ld) = o[j];
        }
      }
      continue;
    }
    int64_t off[L];
    int iy[L], ix[L];
    bool valid[L], inside[L], any = false;
    for (int l = 0; l < L; ++l) {
      const Slot sl = slot_at(q, t0 + lg * L + l);
      valid[l] = sl.valid;
      any = any || valid[l];
      iy[l] = (int)(sl.ty * 4 - q.ph);
      ix[l] = (int)(sl.tx * 4 - q.pw);
      off[l] = sl.n * q.cstride_in * HW + iy[l] * q.W + ix[l];
      inside[l] = iy[l] >= 0 && iy[l] + 6 <= q.H && ix[l] >= 0 && ix[l] + 6 <= q.W;
    }
    if (!any) {
      for (int pos = 0; pos < kPos; ++pos)
        for (int64_t c = c0; c < c1; ++c) *reinterpret_cast<F*>(vg + pos * q.vpos + c * q.ld) = F{};
      continue;
    }
    for (int64_t c = c0; c < c1; ++c) {
      const float* xc = x + (gi * q.Cin + c) * HW;
      alignas(64) float st[6][6][L];
      for (int l = 0; l < L; ++l) {
        if (!valid[l]) {
          for (int k = 0; k < 6; ++k)
            for (int j = 0; j < 6; ++j) st[k][j][l] = 0.0f;
          continue;
        }
        const float* src = xc + off[l];
        if (inside[l]) {
          for (int k = 0; k < 6; ++k)
            for (int j = 0; j < 6; ++j) st[k][j][l] = src[k * q.W + j];
        } else {
          for (int k = 0; k < 6; ++k) {
            const bool in_row = iy[l] + k >= 0 && iy[l] + k < q.H;
            for (int j = 0; j < 6; ++j)
              st[k][j][l] = in_row && ix[l] + j >= 0 && ix[l] + j < q.W ? src[k * q.W + j] : 0.0f;
          }
        }
      }
      F t[6][6];  // t[i][j] = (B^T d)[i][j]
      for (int j = 0; j < 6; ++j) {
        F d[6], r[6];
        for (int k = 0; k < 6; ++k) d[k] = *reinterpret_cast<const F*>(st[k][j]);
        bt6(d, r);
        for (int i = 0; i < 6; ++i) t[i][j] = r[i];
      }
      for (int i = 0; i < 6; ++i) {
        F r[6];
        bt6(t[i], r);
        for (int j = 0; j < 6; ++j) *reinterpret_cast<F*>(vg + (i * 6 + j) * q.vpos + c * q.ld) = r[j];
      }
    }
  }
}

// Z[pos][oc][tile] = A gy A^T (positions q.vpos floats apart, channels q.ld) for output
// channels [o0, o1) of group gi and the L slots from t0: the output gradient's 4 x 4 tiles
// (zero past the output's edge) expanded to 6 x 6, as input_core does for the input.
template <int L>
SC_AI void grad_core(const Plan& q, const float* gy, int64_t gi, int64_t t0, int64_t o0, int64_t o1,
                     float* z) {
  using F = typename VT<L>::F;
  static const Shuffles<L> sh;
  const int64_t P = q.OH * q.OW;
  const Slot first = slot_at(q, t0);
  if (q.rowmode && first.valid) {
    // Each segment: A down the columns of its four gradient rows (contiguous vectors), then
    // along each row, column c of every lane's tile picked out by shuffles.
    const int R = q.R;
    const int64_t sw = L / R;
    alignas(64) float tz[4][6][4 * L];
    std::memset(tz, 0, sizeof tz[0] * R);
    struct Seg {
      int64_t base, xa, xb;
      bool row_in[4];
    } seg[4];
    for (int r = 0; r < R; ++r) {
      const Slot sl = slot_at(q, t0 + r * sw);
      const int64_t oy0 = sl.ty * 4;
      seg[r].base = sl.n * q.cstride_out * P + oy0 * q.OW;
      seg[r].xa = sl.tx * 4;
      seg[r].xb = sl.valid ? std::min<int64_t>(q.OW, seg[r].xa + 4 * sw) : seg[r].xa;
      for (int k = 0; k < 4; ++k) seg[r].row_in[k] = oy0 + k < q.OH;
    }
    const int hp = 4 / R;
    for (int64_t o = o0; o < o1; ++o) {
      for (int r = 0; r < R; ++r) {
        const Seg& sg = seg[r];
        column_pass<L, 4, A4>(gy + (gi * q.Cout + o) * P + sg.base, q.OW, sg.row_in, sg.xa, sg.xb, sg.xa, tz[r][0], 4 * L);
      }
      for (int i = 0; i < 6; ++i) {
        F a[4], e[4], res[6];
        for (int h = 0; h < 4; ++h) a[h] = *reinterpret_cast<const F*>(tz[h / hp][i] + (h % hp) * L);
        for (int c = 0; c < 4; ++c) e[c] = tap<L>(sh, a, c);
        a4(e, res);
        for (int j = 0; j < 6; ++j) *reinterpret_cast<F*>(z + (i * 6 + j) * q.vpos + o * q.ld) = res[j];
      }
    }
    return;
  }
  int64_t off[L];
  int rows[L], cols[L];
  for (int l = 0; l < L; ++l) {
    const Slot sl = slot_at(q, t0 + l);
    const int64_t oy = sl.ty * 4, ox = sl.tx * 4;
    off[l] = (sl.n * q.cstride_out + gi * q.Cout) * P + oy * q.OW + ox;
    rows[l] = sl.valid ? (int)std::min<int64_t>(4, q.OH - oy) : 0;
    cols[l] = sl.valid ? (int)std::min<int64_t>(4, q.OW - ox) : 0;
  }
  for (int64_t o = o0; o < o1; ++o) {
    alignas(64) float st[4][4][L];
    for (int l = 0; l < L; ++l) {
      const float* g = gy + off[l] + o * P;
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) st[r][c][l] = r < rows[l] && c < cols[l] ? g[r * q.OW + c] : 0.0f;
    }
    F t[6][4];  // A down the columns
    for (int c = 0; c < 4; ++c) {
      F d[4], r[6];
      for (int k = 0; k < 4; ++k) d[k] = *reinterpret_cast<const F*>(st[k][c]);
      a4(d, r);
      for (int i = 0; i < 6; ++i) t[i][c] = r[i];
    }
    for (int i = 0; i < 6; ++i) {
      F r[6];
      a4(t[i], r);
      for (int j = 0; j < 6; ++j) *reinterpret_cast<F*>(z + (i * 6 + j) * q.vpos + o * q.ld) = r[j];
    }
  }
}

// A^T M A, the epilogue and the stores for output-channel block b: m is its [OCB][Tb] slice of
// position 0, mstride floats between positions.
template <int L, int OCB, int NV>
SC_AI void output_core(const Plan& q, const float* m, int64_t mstride, int64_t gi, int64_t b,
                       int64_t t0, const ConvEpilogue& ep, float* y) {
  using F = typename VT<L>::F;
  using I = typename VT<L>::I;
  constexpr int Tb = L * NV;
  static const Shuffles<L> sh;
  const int64_t P = q.OH * q.OW;
  const int ocn = (int)std::min<int64_t>(OCB, q.Cout - b * OCB);
  for (int lg = 0; lg < NV; ++lg) {
    if (t0 + lg * L >= q.slots) break;
    // Row mode, all lanes real tiles wholly inside the output: rows stored as vectors, each
    // segment's from its first tile's output row on.
    bool rows_whole = q.rowmode;
    int64_t seg_out[4];  // offset of each segment's first output in a plane
    const int64_t sw = L / q.R;
    for (int r = 0; rows_whole && r < q.R; ++r) {
      const Slot sl = slot_at(q, t0 + lg * L + r * sw);
      rows_whole = sl.valid && sl.tx + sw <= q.tw && sl.ty * 4 + 4 <= q.OH && (sl.tx + sw) * 4 <= q.OW;
      seg_out[r] = sl.n * q.cstride_out * P + sl.ty * 4 * q.OW + sl.tx * 4;
    }
    const int hp = 4 / q.R;
    for (int i = 0; i < ocn; ++i) {
      const int64_t oc = gi * q.Cout + b * OCB + i;
      F s[6][4];  // rows of M with A applied on the right
      for (int r = 0; r < 6; ++r) {
        F mr[6];
        for (int c = 0; c < 6; ++c) mr[c] = *reinterpret_cast<const F*>(m + (r * 6 + c) * mstride + i * Tb + lg * L);
        at6(mr, s[r]);
      }
      const float bias = ep.bias ? ep.bias[oc] : 0.0f;
      const float sc = ep.scale ? ep.scale[oc] : 1.0f, shift = ep.shift ? ep.shift[oc] : 0.0f;
      F out[4][4];  // [row][column] of every lane's tile
      for (int c = 0; c < 4; ++c) {
        F col[6], o[4];
        for (int r = 0; r < 6; ++r) col[r] = s[r][c];
        at6(col, o);
        for (int r = 0; r < 4; ++r) {
          F val = o[r] + bias;
          if (ep.act == ConvAct::relu) val = val > F{} ? val : F{};
          else if (ep.act == ConvAct::gelu) val = fastmath::gelu_vec<F, I>(val);
          if (ep.scale || ep.shift) val = val * sc + shift;
          out[r][c] = val;
        }
      }
      if (rows_whole) {
        // Vector e of an output row's 4 L floats: segment e / hp, at (e % hp) L in its row.
        for (int r = 0; r < 4; ++r)
          for (int e = 0; e < 4; ++e)
            *reinterpret_cast<F*>(y + oc * P + seg_out[e / hp] + r * q.OW + (e % hp) * L) =
                __builtin_shuffle(__builtin_shuffle(out[r][0], out[r][1], sh.olo[e]),
                                  __builtin_shuffle(out[r][2], out[r][3], sh.ohi[e]), sh.pairs);
        continue;
      }
      alignas(64) float st[4][4][L];
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) *reinterpret_cast<F*>(st[r][c]) = out[r][c];
      for (int l = 0; l < L; ++l) {
        const Slot sl = slot_at(q, t0 + lg * L + l);
        if (!sl.valid) continue;
        const int64_t oy = sl.ty * 4, ox = sl.tx * 4;
        float* dst = y + (sl.n * q.cstride_out + oc) * P + oy * q.OW + ox;
        const int rows = (int)std::min<int64_t>(4, q.OH - oy), cols = (int)std::min<int64_t>(4, q.OW - ox);
        for (int r = 0; r < rows; ++r)
          for (int c = 0; c < cols; ++c) dst[r * q.OW + c] = st[r][c][l];
      }
    }
  }
}

// For output-channel blocks [b0, b1) of group gi: the 36 products into m (thread-local,
// [pos][block][OCB][Tb]), position by position so that V's slice for a position stays in cache
// across the blocks; then A^T M A, the epilogue and the stores of slots [t0, t0 + Tb).
template <int L, int OCB, int NV>
SC_AI void products_core(const Plan& q, const float* v, const float* u, int64_t gi, int64_t b0,
                         int64_t b1, int64_t t0, const ConvEpilogue& ep, float* y, float* m) {
  using F = typename VT<L>::F;
  constexpr int Tb = L * NV;
  const int64_t nb = b1 - b0;
  for (int pos = 0; pos < kPos; ++pos) {
    const float* vp = v + pos * q.vpos;
    for (int64_t b = b0; b < b1; ++b) {
      const float* up = u + ((gi * kPos + pos) * q.nob + b) * q.Cin * OCB;
      F acc[OCB][NV];
      _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i)
        _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) acc[i][j] = F{};
      for (int64_t k = 0; k < q.Cin; ++k) {
        F xv[NV];
        _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) xv[j] = *reinterpret_cast<const F*>(vp + k * Tb + j * L);
        const float* w = up + k * OCB;
        _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i) {
          const float wv = w[i];
          _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) acc[i][j] += wv * xv[j];
        }
      }
      float* mb = m + ((pos * nb + (b - b0)) * OCB) * Tb;
      _Pragma("GCC unroll 16") for (int i = 0; i < OCB; ++i)
        _Pragma("GCC unroll 8") for (int j = 0; j < NV; ++j) *reinterpret_cast<F*>(mb + i * Tb + j * L) = acc[i][j];
    }
  }
  for (int64_t b = b0; b < b1; ++b) output_core<L, OCB, NV>(q, m + (b - b0) * OCB * Tb, nb * OCB * Tb, gi, b, t0, ep, y);
}

using WeightsFn = void (*)(const Plan&, const WeightSource&, float*, int64_t, int64_t);
using InputFn = void (*)(const Plan&, const float*, int64_t, int64_t, int64_t, int64_t, float*);
using ProductsFn = void (*)(const Plan&, const float*, const float*, int64_t, int64_t, int64_t,
                            int64_t, const ConvEpilogue&, float*, float*);
using GradFn = void (*)(const Plan&, const float*, int64_t, int64_t, int64_t, int64_t, float*);

struct Variant {
  int L, OCB, NV;
  WeightsFn weights;
  InputFn input;
  ProductsFn products;
  GradFn grad;  // one vector of L slots
};

#define SC_WINO_VARIANT(NAME, TARGET, L, OCB, NV)                                                     \
  TARGET void NAME##_w(const Plan& q, const WeightSource& s, float* u, int64_t a, int64_t b) {        \
    weights_core<L, OCB>(q, s, u, a, b);                                                             \
  }                                                                                                   \
  TARGET void NAME##_i(const Plan& q, const float* x, int64_t gi, int64_t t0, int64_t c0, int64_t c1, \
                       float* v) {                                                                    \
    input_core<L, NV>(q, x, gi, t0, c0, c1, v);                                                      \
  }                                                                                                   \
  TARGET void NAME##_p(const Plan& q, const float* v, const float* u, int64_t gi, int64_t b0,         \
                       int64_t b1, int64_t t0, const ConvEpilogue& ep, float* y, float* m) {          \
    products_core<L, OCB, NV>(q, v, u, gi, b0, b1, t0, ep, y, m);                                    \
  }                                                                                                   \
  TARGET void NAME##_g(const Plan& q, const float* gy, int64_t gi, int64_t t0, int64_t o0, int64_t o1, \
                       float* z) {                                                                    \
    grad_core<L>(q, gy, gi, t0, o0, o1, z);                                                          \
  }                                                                                                   \
  constexpr Variant NAME = {L, OCB, NV, &NAME##_w, &NAME##_i, &NAME##_p, &NAME##_g};

// Register tiles as in conv_direct.cc: 24 of 32 zmm (AVX-512), 12 of 16 ymm (AVX2); the
// narrower ones for few tiles (batch 1 on 8-16 px maps), where a wide block would be mostly
// padding lanes.
#if defined(__x86_64__) || defined(__i386__)
SC_WINO_VARIANT(wino_512_8x3, SC_T512, 16, 8, 3)
SC_WINO_VARIANT(wino_512_8x1, SC_T512, 16, 8, 1)
SC_WINO_VARIANT(wino_256_4x3, SC_T256, 8, 4, 3)
SC_WINO_VARIANT(wino_256_8x1, SC_T256, 8, 8, 1)
#endif

Variant pick_variant(int64_t tiles) {
#if defined(__x86_64__) || defined(__i386__)
  // Below ~128 tiles (batch 1 at 32 x 32 and less) the narrow tile: no padding lanes and four
  // times the blocks to share between threads; measured 1.2-1.3x there, 0.85x at 1024 tiles.
  if (cpu_isa_level() >= 2) return tiles < 128 ? wino_512_8x1 : wino_512_8x3;
  return tiles < 64 ? wino_256_8x1 : wino_256_4x3;
#else
  (void)tiles;
  throw KernelError("conv2d: the Winograd kernel needs an x86-64 CPU");
#endif
}

// The one-vector variant of this CPU (the weight gradient's transforms go a vector at a time).
Variant narrow_variant() {
#if defined(__x86_64__) || defined(__i386__)
  return cpu_isa_level() >= 2 ? wino_512_8x1 : wino_256_8x1;
#else
  throw KernelError("conv2d: the Winograd kernel needs an x86-64 CPU");
#endif
}

Plan make_plan(const ConvP& p, const Variant& v) {
  Plan q;
  q.N = p.N; q.G = p.G; q.Cin = p.Cg; q.Cout = p.OCg;
  q.H = p.H; q.W = p.W; q.ph = p.ph; q.pw = p.pw; q.OH = p.OH; q.OW = p.OW;
  q.cstride_in = p.C; q.cstride_out = p.OC;
  q.th = (p.OH + 3) / 4;
  q.tw = (p.OW + 3) / 4;
  // Row mode where rounding tile rows up to whole vectors pads at most an eighth of them, or
  // where two or four tile rows make a vector. Measured against tile by tile (2 threads, batch
  // 8, 256 -> 256 channels in 2 groups at 32 x 32): see bench/results/README.md.
  const int64_t S = (q.tw + v.L - 1) / v.L * v.L;
  q.R = 1;
  q.rowmode = q.tw >= v.L && 8 * (S - q.tw) <= S;
  if (!q.rowmode && (q.tw * 2 == v.L || q.tw * 4 == v.L)) {
    q.rowmode = true;
    q.R = (int)(v.L / q.tw);
  }
  q.S = q.rowmode && q.R == 1 ? S : q.tw;
  q.slots = p.N * q.th * q.S;
  q.Tb = v.L * v.NV;
  q.blocks = (q.slots + q.Tb - 1) / q.Tb;
  q.nob = (q.Cout + v.OCB - 1) / v.OCB;
  q.vpos = q.Cin * q.Tb + 16;
  q.ld = q.Tb;
  return q;
}

// y = epilogue(conv(x, kernels of src)).
void run(const ConvP& p, const float* x, const WeightSource& src, const ConvEpilogue& ep, float* y) {
  const Variant var = pick_variant(output_tiles(p));
  const Plan q = make_plan(p, var);
  float* u = scratch_w(3, (size_t)q.G * kPos * q.nob * var.OCB * q.Cin);
  parallel_for(0, q.G * q.nob, 1, [&](int64_t b0, int64_t b1) { var.weights(q, src, u, b0, b1); });
  const int64_t items = q.G * q.blocks;
  // Output-channel blocks per pass over V: products of ~256 KB (in L2) before their output
  // transform.
  const int64_t per_block = (int64_t)kPos * var.OCB * q.Tb;
  const int64_t chunk = std::max<int64_t>(1, (int64_t)(64 << 10) / per_block);
  const size_t vsize = (size_t)kPos * q.vpos, msize = (size_t)(chunk * per_block);
  const int nt = std::max(1, num_threads());
  if (items >= 4 * nt) {
    // Many blocks: each thread runs whole blocks, its V and M in its own cache.
    parallel_for_dynamic(0, items, 1, [&](int64_t i0, int64_t i1) {
      float* v = scratch_w(0, vsize);
      float* m = scratch_w(1, msize);
      for (int64_t it = i0; it < i1; ++it) {
        const int64_t gi = it / q.blocks, t0 = (it % q.blocks) * q.Tb;
        var.input(q, x, gi, t0, 0, q.Cin, v);
        for (int64_t b = 0; b < q.nob; b += chunk)
          var.products(q, v, u, gi, b, std::min(q.nob, b + chunk), t0, ep, y, m);
      }
    });
    return;
  }
  // Few blocks (batch 1, small maps): every block's V first, threads splitting the channels,
  // then (block, output-channel chunk) pairs; two parallel regions in all.
  float* vall = scratch_w(2, vsize * items);
  parallel_for(0, items * q.Cin, 8, [&](int64_t r0, int64_t r1) {
    while (r0 < r1) {
      const int64_t it = r0 / q.Cin, c0 = r0 % q.Cin, c1 = std::min(q.Cin, c0 + (r1 - r0));
      var.input(q, x, it / q.blocks, (it % q.blocks) * q.Tb, c0, c1, vall + it * vsize);
      r0 += c1 - c0;
    }
  });
  const int64_t nchunks = (q.nob + chunk - 1) / chunk;
  parallel_for_dynamic(0, items * nchunks, 1, [&](int64_t r0, int64_t r1) {
    float* m = scratch_w(1, msize);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t it = r / nchunks, b = (r % nchunks) * chunk;
      var.products(q, vall + it * vsize, u, it / q.blocks, b, std::min(q.nob, b + chunk),
                   (it % q.blocks) * q.Tb, ep, y, m);
    }
  });
}

// Bytes of the weight gradient's sums in the transformed domain (36 per channel pair), which
// live for the whole call when the tiles go in several chunks: above this the GEMM path keeps
// the layer, unless every tile's transforms fit kWgradOneChunk at once.
constexpr int64_t kMaxWgradSums = 40ll << 20;
// V and Z of all tiles in one chunk (the wide, small-map layers: UNet's 1024 channels at 8 x 8 are
// 32 tiles, 9 MB): the sums then go a block of output channels at a time.
constexpr int64_t kWgradOneChunk = 32ll << 20;
// Tiles per chunk: V and Z of ~2 MB (L2: the GEMMs read them where the transforms left them)
// while the 36 sums are small enough to be read and written once per chunk from cache; 8 MB
// chunks (fewer passes over the sums) above kSmallWgradSums. Measured, 2 threads, batch 8:
// 160 -> 128 at 32 x 32 10.6-11.3 -> 9.2-9.4 ms, 256 -> 256 (2 groups) 18.3-20.4 -> 15.3-15.4,
// 256 -> 160 at 16 x 16 4.6-5.1 -> 4.3; 512 -> 512 at 16 x 16 (37 MB of sums) 21.7-24.2 ->
// 25.2-25.8 with 2 MB chunks, so it keeps 8 MB.
constexpr int64_t kWgradChunkSmall = 2ll << 20;
constexpr int64_t kWgradChunk = 8ll << 20;
constexpr int64_t kSmallWgradSums = 8ll << 20;

// How the weight gradient goes (backward_weight_run): its tile numbering (the one-vector
// variant's plan), the slots rounded up to whole vectors, whether all of them form one chunk
// (output-channel blocks, when the 36 sums would pass kMaxWgradSums) and the chunk length; fits:
// whether either way stays within its memory bound.
struct WgradPlan {
  Variant var;
  Plan q;
  int64_t all, Tc;
  bool one_chunk, fits;
};

WgradPlan wgrad_plan(const ConvP& p) {
  WgradPlan w{narrow_variant(), {}, 0, 0, false, false};
  w.q = make_plan(p, w.var);
  const int64_t L = w.var.L, IC = w.q.Cin, OC = w.q.Cout;
  w.all = (w.q.slots + L - 1) / L * L;
  const int64_t per_tile = kPos * (IC + OC) * 4;
  // (At 512 channels on 16 x 16 maps, where both apply, the chunked sums measured 1.2x faster.)
  const bool sums_fit = kPos * OC * IC * 4 <= kMaxWgradSums;
  w.one_chunk = !sums_fit && w.all * per_tile <= kWgradOneChunk;
  w.fits = sums_fit || w.one_chunk;
  const int64_t chunk = kPos * OC * IC * 4 <= kSmallWgradSums ? kWgradChunkSmall : kWgradChunk;
  w.Tc = w.one_chunk ? w.all : std::min(w.all, std::max(L, chunk / per_tile / L * L));
  return w;
}

// dw[r][ic] (3 x 3) = G^T M G for rows [0, rows) of the sums m ([pos][rows][IC]), in parallel
// over rows where called outside a parallel region.
void fold_sums(const float* m, int64_t rows, int64_t IC, float* dw) {
  parallel_for(0, rows, 1, [&](int64_t o0, int64_t o1) {
    for (int64_t oc = o0; oc < o1; ++oc)
      for (int64_t ic = 0; ic < IC; ++ic) {
        float r[6][3];  // M G
        for (int a = 0; a < 6; ++a) {
          float e[6];
          for (int b = 0; b < 6; ++b) e[b] = m[((a * 6 + b) * rows + oc) * IC + ic];
          r[a][0] = e[0] * 0.25f - (e[1] + e[2]) * (1.0f / 6) + (e[3] + e[4]) * (1.0f / 24);
          r[a][1] = (e[2] - e[1]) * (1.0f / 6) + (e[3] - e[4]) * (1.0f / 12);
          r[a][2] = (e[3] + e[4] - e[1] - e[2]) * (1.0f / 6) + e[5];
        }
        float* dst = dw + (oc * IC + ic) * 9;
        for (int c = 0; c < 3; ++c) {  // G^T (M G)
          const float e[6] = {r[0][c], r[1][c], r[2][c], r[3][c], r[4][c], r[5][c]};
          dst[0 * 3 + c] = e[0] * 0.25f - (e[1] + e[2]) * (1.0f / 6) + (e[3] + e[4]) * (1.0f / 24);
          dst[1 * 3 + c] = (e[2] - e[1]) * (1.0f / 6) + (e[3] - e[4]) * (1.0f / 12);
          dst[2 * 3 + c] = (e[3] + e[4] - e[1] - e[2]) * (1.0f / 6) + e[5];
        }
      }
  });
}

// dW = G^T [sum over tiles of Z ⊙ V] G with Z = A gy A^T and V = B^T x B (the transposition of
// F(4x4, 3x3): <gy, A^T (U ⊙ V) A> = <G^T ((A gy A^T) ⊙ V) G, w>). The 36 sums are GEMMs
// (output x input channels, reduced over tiles). Tiles go in chunks whose Z and V fit ~8 MB,
// with the sums of all 36 positions kept across chunks (one position per thread at a time); where
// those sums would pass 40 MB (1024 x 512 channels and up) but every tile's V and Z fit 32 MB,
// blocks of output channels go in parallel instead, each block's 36 sums (~4 MB) folded into dW
// as it completes.
void backward_weight_run(const ConvP& p, const float* x, const float* gy, float* gw) {
  const WgradPlan w = wgrad_plan(p);
  const Variant& var = w.var;
  Plan q = w.q;
  const int64_t L = var.L, IC = q.Cin, OC = q.Cout, all = w.all, Tc = w.Tc;
  const bool one_chunk = w.one_chunk;
  q.ld = Tc;
  q.vpos = IC * Tc + 16;
  Plan qz = q;
  qz.vpos = OC * Tc + 16;
  float* v = scratch_w(2, (size_t)(kPos * q.vpos));
  float* z = scratch_w(1, (size_t)(kPos * qz.vpos));
  float* msum = one_chunk ? nullptr : scratch_w(3, (size_t)(kPos * OC * IC));
  for (int64_t gi = 0; gi < q.G; ++gi) {
    float* dw = gw + gi * OC * IC * 9;
    for (int64_t c0 = 0; c0 < all; c0 += Tc) {
      const int64_t K = std::min(Tc, all - c0), nvec = K / L;
      parallel_for_dynamic(0, 2 * nvec, 1, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
          const int64_t t0 = c0 + (k / 2) * L, at = (k / 2) * L;
          if (k % 2 == 0) var.input(q, x, gi, t0, 0, IC, v + at);
          else var.grad(qz, gy, gi, t0, 0, OC, z + at);
        }
      });
      if (one_chunk) {
        // Blocks of output channels in parallel, each with all 36 sums of its rows (~4 MB).
        const int64_t ob = std::min(OC, std::max<int64_t>(8, (int64_t)(4 << 20) / (kPos * IC * 4)));
        parallel_for_dynamic(0, (OC + ob - 1) / ob, 1, [&](int64_t b0, int64_t b1) {
          float* mloc = scratch_w(0, (size_t)(kPos * ob * IC));
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t o0 = b * ob, rows = std::min(ob, OC - o0);
            for (int pos = 0; pos < kPos; ++pos)
              gemm<float>(false, true, rows, IC, K, 1.0f, z + pos * qz.vpos + o0 * Tc, Tc, v + pos * q.vpos, Tc, 0.0f,
                          mloc + pos * rows * IC, IC);
            fold_sums(mloc, rows, IC, dw + o0 * IC * 9);
          }
        });
        continue;
      }
      parallel_for_dynamic(0, kPos, 1, [&](int64_t a0, int64_t a1) {
        for (int64_t pos = a0; pos < a1; ++pos)
          gemm<float>(false, true, OC, IC, K, 1.0f, z + pos * qz.vpos, Tc, v + pos * q.vpos, Tc,
                      c0 == 0 ? 0.0f : 1.0f, msum + pos * OC * IC, IC);
      });
    }
    if (!one_chunk) fold_sums(msum, OC, IC, dw);
  }
}

// The transposed convolution of the input gradient (as in conv_direct_backward_input): gy,
// padded by 2 - pad, -> gx.
ConvP transposed(const ConvP& p) {
  ConvP q = p;
  q.C = p.OC; q.H = p.OH; q.W = p.OW; q.OC = p.C;
  q.ph = 2 - p.ph; q.pw = 2 - p.pw;
  q.Cg = p.OCg; q.OCg = p.Cg; q.CKK = q.Cg * 9;
  q.OH = p.H; q.OW = p.W; q.P = p.H * p.W; q.HW = p.OH * p.OW;
  return q;
}

}  // namespace

bool conv_winograd_enabled() {
  int v = g_enabled.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* e = std::getenv("SCALPEL_WINOGRAD");
    v = e && std::strcmp(e, "0") == 0 ? 0 : 1;
    g_enabled.store(v, std::memory_order_relaxed);
  }
  return v == 1;
}

void conv_winograd_set_enabled(bool on) { g_enabled.store(on ? 1 : 0, std::memory_order_relaxed); }

bool conv_winograd_supported(const ConvP& p) {
  if (!conv_winograd_enabled() || cpu_isa_level() < 1) return false;
  if (p.KH != 3 || p.KW != 3 || p.sh != 1 || p.sw != 1 || p.dh != 1 || p.dw != 1) return false;
  if (p.ph > 2 || p.pw > 2 || p.depthwise()) return false;
  // With few tiles the weights' transform (36 values per channel pair, every call) costs about
  // what the products save: 512 channels on a 16 x 16 map at batch 1 measured 0.85-0.9x the
  // direct kernel, at batch 8 1.7-1.85x.
  const int64_t channels = std::min(p.Cg, p.OCg);
  if (channels < kMinChannelsFew) return false;
  return output_tiles(p) >= (channels < kMinChannels ? kMinTilesFewChannels : kMinTiles);
}

void conv_winograd_forward(const ConvP& p, const float* x, const float* w, const ConvEpilogue& ep,
                           float* y) {
  run(p, x, WeightSource{w, false}, ep, y);
}

bool conv_winograd_backward_input_supported(const ConvP& p) {
  return p.ph <= 2 && p.pw <= 2 && conv_winograd_supported(transposed(p));
}

void conv_winograd_backward_input(const ConvP& p, const float* gy, const float* w, float* gx) {
  run(transposed(p), gy, WeightSource{w, true}, ConvEpilogue{}, gx);
}

bool conv_winograd_backward_weight_supported(const ConvP& p) {
  // Its 36 GEMMs are (output x input channels) per position, its transforms a cost per tile and
  // channel: conv.cc takes it where both sides have more than 64 channels per group (the
  // outer-product kernel won below that); there the alternative is the im2col GEMM, 2-3x slower.
  return conv_winograd_supported(p) && wgrad_plan(p).fits;
}

void conv_winograd_backward_weight(const ConvP& p, const float* x, const float* gy, float* gw) {
  backward_weight_run(p, x, gy, gw);
}

}  // namespace sc
