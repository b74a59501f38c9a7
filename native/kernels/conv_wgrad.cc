// Weight gradient of stride-1 float convolutions as a sum of outer products over pixels.
//
//   gw[oc, tap] = sum over images and output pixels q of gy[oc, q] * x[tap's channel, q + offset]
//
// Per chunk of pixels (a run of a 1x1 map, or whole output rows of a KxK one), the "vector
// side" (the output channels, or for a 1x1 with more input than output channels the input
// channels) is transposed into a pixel-major panel T[q][channel] (in L2; the tiles take it a
// few rows at a time from L1), and the register tile
//
//   acc[i][j] (MV vectors of L channels x NR taps) += T[q][i*L .. i*L+L) * tap_j[q]
//
// costs MV vector loads and NR broadcasts for MV*NR FMAs per pixel, the accumulators staying in
// registers for the whole chunk. The kernel it replaces reduced along pixels instead (dot
// products of gradient and input rows, lanes summed at the end): MV+NR loads for the same FMAs,
// but every one a separate row streamed from L2 and the lane sums per band on top; it ran
// CMUNeXt's and MedNeXt's small-channel gradients at 30-40 GFLOP/s per core.
//
// Chunks go, in a fixed order, to a fixed number of chunk groups, each summing into its own
// partial gradient; the groups are added in order at the end, so the result does not depend
// on the thread count.
#pragma GCC optimize("fp-contract=fast")

#include "conv_wgrad.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "../core/parallel.h"
#include "gemm.h"
#include "simd.h"

namespace sc {
namespace {

using conv::ConvP;

// ---- transposition into the pixel-major panel -------------------------------------------------

// T[q * RAp + r] = src[r * stride + q] for r < RA, q < n; zero for RA <= r < RAp.
void transpose_generic(const float* src, int64_t stride, int64_t RA, int64_t RAp, int64_t n, float* T) {
  for (int64_t q = 0; q < n; ++q) {
    float* t = T + q * RAp;
    for (int64_t r = 0; r < RA; ++r) t[r] = src[r * stride + q];
    for (int64_t r = RA; r < RAp; ++r) t[r] = 0.0f;
  }
}

#if defined(__x86_64__) || defined(__i386__)
SC_T512 void transpose_512(const float* src, int64_t stride, int64_t RA, int64_t RAp, int64_t n, float* T) {
  const int64_t full = n / 16 * 16;
  for (int64_t r0 = 0; r0 < RAp; r0 += 16) {
    const int64_t nr = std::max<int64_t>(0, std::min<int64_t>(16, RA - r0));
    for (int64_t q0 = 0; q0 < full; q0 += 16) {
      __m512 v[16];
      for (int i = 0; i < 16; ++i) v[i] = i < nr ? _mm512_loadu_ps(src + (r0 + i) * stride + q0) : _mm512_setzero_ps();
      transpose16(v);
      for (int i = 0; i < 16; ++i) _mm512_storeu_ps(T + (q0 + i) * RAp + r0, v[i]);
    }
  }
  if (full < n) transpose_generic(src + full, stride, RA, RAp, n - full, T + full * RAp);
}

// Pair mode (at most 8 channels on the vector side, 16 lanes): lane 2i + j of panel vector q holds
// channel i at pixel 2q + j, so every FMA does 16 useful products where 8 channels padded to a
// vector did 8; the broadcast side then supplies its pixel pair (2q, 2q + 1) in every lane pair.
// T[(q / 2) * 16 + 2i + (q % 2)] = src[i * stride + q] for i < RA; n even.
void transpose_pairs_generic(const float* src, int64_t stride, int64_t RA, int64_t RAp, int64_t n, float* T) {
  for (int64_t q = 0; q < n; ++q) {
    float* t = T + (q / 2) * RAp + (q % 2);
    for (int64_t i = 0; i < RAp / 2; ++i) t[2 * i] = i < RA ? src[i * stride + q] : 0.0f;
  }
}

SC_T512 void transpose_pairs_512(const float* src, int64_t stride, int64_t RA, int64_t RAp, int64_t n, float* T) {
  const int64_t full = n / 16 * 16;
  for (int64_t q0 = 0; q0 < full; q0 += 16) {
    // Eight rows of eight pixel pairs (as doubles), transposed as in transpose16.
    __m512d r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = i < RA ? _mm512_loadu_pd(reinterpret_cast<const double*>(src + i * stride + q0)) : _mm512_setzero_pd();
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    // t[2m + e], 128-bit lane k: rows 2m, 2m + 1 at pair 2k + e.
    for (int e = 0; e < 2; ++e) {
      const __m512d lo = _mm512_shuffle_f64x2(t[e], t[2 + e], 0x44), hi = _mm512_shuffle_f64x2(t[e], t[2 + e], 0xEE);
      const __m512d lo2 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0x44), hi2 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0xEE);
      float* d = T + (q0 / 2) * RAp;
      _mm512_storeu_pd(reinterpret_cast<double*>(d + (0 + e) * RAp), _mm512_shuffle_f64x2(lo, lo2, 0x88));
      _mm512_storeu_pd(reinterpret_cast<double*>(d + (2 + e) * RAp), _mm512_shuffle_f64x2(lo, lo2, 0xDD));
      _mm512_storeu_pd(reinterpret_cast<double*>(d + (4 + e) * RAp), _mm512_shuffle_f64x2(hi, hi2, 0x88));
      _mm512_storeu_pd(reinterpret_cast<double*>(d + (6 + e) * RAp), _mm512_shuffle_f64x2(hi, hi2, 0xDD));
    }
  }
  if (full < n) transpose_pairs_generic(src + full, stride, RA, RAp, n - full, T + full / 2 * RAp);
}

SC_T256 SC_AI void transpose8(__m256 (&r)[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    const __m256d a = _mm256_castps_pd(t[4 * i]), b = _mm256_castps_pd(t[4 * i + 2]);
    const __m256d c = _mm256_castps_pd(t[4 * i + 1]), d = _mm256_castps_pd(t[4 * i + 3]);
    u[4 * i] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));
    u[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));
    u[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(c, d));
    u[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(c, d));
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

SC_T256 void transpose_256(const float* src, int64_t stride, int64_t RA, int64_t RAp, int64_t n, float* T) {
  const int64_t full = n / 8 * 8;
  for (int64_t r0 = 0; r0 < RAp; r0 += 8) {
    const int64_t nr = std::max<int64_t>(0, std::min<int64_t>(8, RA - r0));
    for (int64_t q0 = 0; q0 < full; q0 += 8) {
      __m256 v[8];
      for (int i = 0; i < 8; ++i) v[i] = i < nr ? _mm256_loadu_ps(src + (r0 + i) * stride + q0) : _mm256_setzero_ps();
      transpose8(v);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(T + (q0 + i) * RAp + r0, v[i]);
    }
  }
  if (full < n) transpose_generic(src + full, stride, RA, RAp, n - full, T + full * RAp);
}
#endif

// ---- the register tile ------------------------------------------------------------------------

// acc[i][j] += T[q][i*L..] * b_j[q] over `rows` rows of `cols` pixels (T row-major over them,
// b_j's rows brow apart); then out[j][i*L..] += acc for the first nb taps. PIX = 2: pair mode
// (transpose_pairs_512), T holds a pixel pair per vector and b_j's pairs are broadcast as doubles.
template <int L, int MV, int NR, int PIX>
SC_AI void tile(const float* __restrict T, int64_t RAp, const float* const* bp, int64_t rows,
                int64_t cols, int64_t brow, int nb, float* __restrict out) {
  using V = typename Vec<L>::type;
  static_assert(PIX == 1 || L == 16, "pair mode is AVX-512 only");
  typedef double VD __attribute__((vector_size(sizeof(float) * L)));
  V acc[MV][NR];
  _Pragma("GCC unroll 4") for (int i = 0; i < MV; ++i)
    _Pragma("GCC unroll 16") for (int j = 0; j < NR; ++j) acc[i][j] = V{};
  const float* b[NR];
  _Pragma("GCC unroll 16") for (int j = 0; j < NR; ++j) b[j] = bp[j];
  for (int64_t r = 0; r < rows; ++r) {
    const float* t = T + r * cols / PIX * RAp;
    for (int64_t c = 0; c < cols; c += PIX) {
      V a[MV];
      _Pragma("GCC unroll 4") for (int i = 0; i < MV; ++i) a[i] = *reinterpret_cast<const V*>(t + c / PIX * RAp + i * L);
      _Pragma("GCC unroll 16") for (int j = 0; j < NR; ++j) {
        if constexpr (PIX == 1) {
          const float bv = b[j][c];
          _Pragma("GCC unroll 4") for (int i = 0; i < MV; ++i) acc[i][j] += a[i] * bv;
        } else {
          // The two floats' bits broadcast as one double (vbroadcastsd from memory, a load uop;
          // no arithmetic on them: "VD{} + d" made GCC add 0.0 first).
          double d;
          std::memcpy(&d, b[j] + c, sizeof d);
          const VD dv = {d, d, d, d, d, d, d, d};
          V bv;
          std::memcpy(&bv, &dv, sizeof bv);
          _Pragma("GCC unroll 4") for (int i = 0; i < MV; ++i) acc[i][j] += a[i] * bv;
        }
      }
    }
    _Pragma("GCC unroll 16") for (int j = 0; j < NR; ++j) b[j] += brow;
  }
  _Pragma("GCC unroll 16") for (int j = 0; j < NR; ++j) {
    if (j >= nb) break;
    _Pragma("GCC unroll 4") for (int i = 0; i < MV; ++i) {
      V* o = reinterpret_cast<V*>(out + j * RAp + i * L);
      *o += acc[i][j];
    }
  }
}

// Every (tap block, vector block) tile of one chunk of `rows` rows of `cols` pixels, taps [0, NB)
// at bbase + toff[t] with rows brow apart, a few rows at a time: sub rows of T (about 16 KB)
// stay in L1 while every tap block reads them.
template <int L, int MV, int NR, int PIX>
SC_AI void chunk_tiles(const float* T, int64_t RAp, const float* bbase, const int64_t* toff, int64_t NB,
                       int64_t rows, int64_t cols, int64_t brow, int64_t sub, float* part) {
  const float* bp[NR];
  for (int64_t r0 = 0; r0 < rows; r0 += sub) {
    const int64_t nr = std::min(sub, rows - r0);
    for (int64_t t0 = 0; t0 < NB; t0 += NR) {
      const int nb = (int)std::min<int64_t>(NR, NB - t0);
      // Taps past the last repeat it; their sums are not stored.
      for (int j = 0; j < NR; ++j) bp[j] = bbase + toff[t0 + std::min(j, nb - 1)] + r0 * brow;
      for (int64_t v0 = 0; v0 < RAp; v0 += MV * L)
        tile<L, MV, NR, PIX>(T + r0 * cols / PIX * RAp + v0, RAp, bp, nr, cols, brow, nb, part + t0 * RAp + v0);
    }
  }
}

using ChunkFn = void (*)(const float*, int64_t, const float*, const int64_t*, int64_t, int64_t, int64_t,
                         int64_t, int64_t, float*);
using TransposeFn = void (*)(const float*, int64_t, int64_t, int64_t, int64_t, float*);

#define SC_WGRAD_CHUNK(NAME, TARGET, L, MV, NR, PIX)                                                 \
  TARGET void NAME(const float* T, int64_t RAp, const float* bbase, const int64_t* toff, int64_t NB, \
                   int64_t rows, int64_t cols, int64_t brow, int64_t sub, float* part) {            \
    chunk_tiles<L, MV, NR, PIX>(T, RAp, bbase, toff, NB, rows, cols, brow, sub, part);              \
  }
// Accumulators: 24 or 16 of 32 zmm, 12 or 8 of 16 ymm; at most 12 tap pointers (general
// registers). Four zmm vectors by six taps ran at two thirds of two by twelve: GCC spilled two
// of the four panel vectors to the stack.
#if defined(__x86_64__) || defined(__i386__)
SC_WGRAD_CHUNK(chunk_512_2x12, SC_T512, 16, 2, 12, 1)
SC_WGRAD_CHUNK(chunk_512_2x8, SC_T512, 16, 2, 8, 1)
SC_WGRAD_CHUNK(chunk_512_1x12, SC_T512, 16, 1, 12, 1)
SC_WGRAD_CHUNK(chunk_512_1x8, SC_T512, 16, 1, 8, 1)
SC_WGRAD_CHUNK(chunk_512p_1x12, SC_T512, 16, 1, 12, 2)
SC_WGRAD_CHUNK(chunk_512p_1x8, SC_T512, 16, 1, 8, 2)
SC_WGRAD_CHUNK(chunk_256_2x6, SC_T256, 8, 2, 6, 1)
SC_WGRAD_CHUNK(chunk_256_2x4, SC_T256, 8, 2, 4, 1)
SC_WGRAD_CHUNK(chunk_256_1x12, SC_T256, 8, 1, 12, 1)
SC_WGRAD_CHUNK(chunk_256_1x8, SC_T256, 8, 1, 8, 1)
#endif
SC_WGRAD_CHUNK(chunk_gen_1x8, , 4, 1, 8, 1)

struct Kernel {
  int L, pix;  // vector width; pixels per panel vector (2: pair mode)
  ChunkFn chunk;
  TransposeFn transpose;
};

// Two panel vectors per tile where the padded channels come in pairs of vectors; of the two tap
// counts, the one that wastes fewer taps on the last block (repeated taps are computed, not
// stored: 16 taps in blocks of 12 ran at two thirds of the speed of 36).
// even: every run of pixels the chunks hand the tile has even length (pair mode's condition).
Kernel pick_kernel(int64_t RA, int64_t NB, bool even) {
  auto waste = [&](int nr) { return (NB + nr - 1) / nr * nr - NB; };
#if defined(__x86_64__) || defined(__i386__)
  const int isa = cpu_isa_level();
  if (isa >= 2) {
    const bool two = (RA + 15) / 16 % 2 == 0, wide = waste(12) <= waste(8);
    if (RA <= 8 && even) return {16, 2, wide ? &chunk_512p_1x12 : &chunk_512p_1x8, &transpose_pairs_512};
    if (two) return {16, 1, wide ? &chunk_512_2x12 : &chunk_512_2x8, &transpose_512};
    return {16, 1, wide ? &chunk_512_1x12 : &chunk_512_1x8, &transpose_512};
  }
  if (isa == 1) {
    const bool two = (RA + 7) / 8 % 2 == 0;
    if (two) return {8, 1, waste(6) <= waste(4) ? &chunk_256_2x6 : &chunk_256_2x4, &transpose_256};
    return {8, 1, waste(12) <= waste(8) ? &chunk_256_1x12 : &chunk_256_1x8, &transpose_256};
  }
#endif
  (void)RA;
  (void)even;
  (void)waste;
  return {4, 1, &chunk_gen_1x8, &transpose_generic};
}

// A chunk's panel T and its copy of the broadcast side fill about a quarter of L2, read from
// memory in long runs per channel (one thread, 32 -> 64 channels 1x1 at 128 x 128, whose channel
// planes are 64 KB apart: 14.8 ms with 64-pixel chunks read in place, 10.6 ms so); the tiles
// then take sub-chunks of T of about 16 KB, in L1.
constexpr int64_t kChunkFloats = 128 << 10;
constexpr int64_t kSubFloats = 4096;
constexpr int64_t kPointwiseCols = 64;  // a 1x1 chunk as rows of this many pixels
constexpr int64_t kGroups = 8;

// Sum of a run (16 float lanes, then double).
double run_sum(const float* p, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
  double s = 0;
  for (; i < n; ++i) s += p[i];
  for (int j = 0; j < 16; ++j) s += acc[j];
  return s;
}

}  // namespace

bool conv_wgrad_outer_supported(const ConvP& p) {
  return p.sh == 1 && p.sw == 1 && !p.depthwise();
}

void conv_wgrad_outer(const ConvP& p, const float* x, const float* gy, float* gw, float* gb) {
  const bool pw = p.pointwise();
  // A: the vector side, RA channels padded to RAp; B: the broadcast side, NB taps.
  const bool swap = pw && p.Cg > p.OCg;  // A = input channels, B = output channels
  const int64_t RA = swap ? p.Cg : p.OCg;
  const int64_t NB = swap ? p.OCg : p.CKK;
  // Pixel runs: a 1x1's chunks are whole multiples of kPointwiseCols but for the last (even
  // with an even map); a KxK's are its output rows.
  const Kernel k = pick_kernel(RA, NB, pw ? p.P % 2 == 0 : p.OW % 2 == 0);
  const int64_t RAp = (RA + k.L - 1) / k.L * k.L;
  // A chunk is `rows` rows of `cols` pixels of one image: output rows of a KxK map (the input
  // copy then holds xrows padded rows of Wp per channel), or a run of a 1x1 map cut into rows
  // of kPointwiseCols (its copy of B holds each tap's run).
  int64_t cols, rows, nchunks_img, Wp = 0, bpitch;
  if (pw) {
    cols = std::min(p.P, kPointwiseCols);
    const int64_t run = std::max(cols, kChunkFloats / (RAp + NB) / cols * cols);
    rows = (std::min(run, p.P) + cols - 1) / cols;
    nchunks_img = (p.P + rows * cols - 1) / (rows * cols);
    bpitch = odd_line_pitch(rows * cols);
  } else {
    cols = p.OW;
    Wp = p.W + 2 * p.pw;
    const int64_t per_row = p.OW * RAp + p.Cg * Wp;
    rows = std::max<int64_t>(1, std::min(p.OH, kChunkFloats / per_row));
    nchunks_img = (p.OH + rows - 1) / rows;
    bpitch = odd_line_pitch((rows + (p.KH - 1) * p.dh) * Wp);
  }
  const int64_t sub = std::max<int64_t>(1, kSubFloats * k.pix / (cols * RAp));
  const int64_t nchunks = p.N * nchunks_img, ngroups = std::min(kGroups, nchunks);
  const int64_t part_size = NB * RAp;
  // Tap offsets into the copy of B.
  std::vector<int64_t> toff((size_t)NB);
  if (pw) {
    for (int64_t t = 0; t < NB; ++t) toff[t] = t * bpitch;
  } else {
    for (int64_t c = 0; c < p.Cg; ++c)
      for (int64_t kh = 0; kh < p.KH; ++kh)
        for (int64_t kw = 0; kw < p.KW; ++kw)
          toff[(c * p.KH + kh) * p.KW + kw] = c * bpitch + kh * p.dh * Wp + kw * p.dw;
  }

  thread_local std::vector<float> partials;
  if ((int64_t)partials.size() < ngroups * part_size) partials.resize(ngroups * part_size);
  float* parts = partials.data();
  // The bias gradient's per-group sums: each chunk's gradient rows summed while in cache (a
  // separate pass read the whole gradient from memory again, 0.5-0.8 ms per 128 x 128 layer).
  std::vector<double> bparts(gb ? (size_t)(ngroups * p.OCg) : 0);
  for (int64_t gi = 0; gi < p.G; ++gi) {
    parallel_for_dynamic(0, ngroups, 1, [&](int64_t g0, int64_t g1) {
      float* T = thread_scratch(0, (size_t)(rows * cols / k.pix * RAp + RAp));
      float* B = thread_scratch(1, (size_t)((pw ? NB : p.Cg) * bpitch));
      for (int64_t grp = g0; grp < g1; ++grp) {
        float* part = parts + grp * part_size;
        std::memset(part, 0, sizeof(float) * part_size);
        double* bpart = gb ? bparts.data() + grp * p.OCg : nullptr;
        if (bpart) std::fill(bpart, bpart + p.OCg, 0.0);
        const int64_t c0 = grp * nchunks / ngroups, c1 = (grp + 1) * nchunks / ngroups;
        for (int64_t ch = c0; ch < c1; ++ch) {
          const int64_t n = ch / nchunks_img, j = ch % nchunks_img;
          const float* xn = x + (n * p.C + gi * p.Cg) * p.HW;
          const float* gyn = gy + (n * p.OC + gi * p.OCg) * p.P;
          if (pw) {
            const int64_t q0 = j * rows * cols, len = std::min(rows * cols, p.P - q0);
            k.transpose((swap ? xn : gyn) + q0, p.P, RA, RAp, len, T);
            const float* src = (swap ? gyn : xn) + q0;
            for (int64_t t = 0; t < NB; ++t) std::memcpy(B + t * bpitch, src + t * p.P, sizeof(float) * len);
            if (bpart)
              for (int64_t oc = 0; oc < p.OCg; ++oc)
                bpart[oc] += swap ? run_sum(B + oc * bpitch, len) : run_sum(gyn + q0 + oc * p.P, len);
            // Whole rows of cols, then the run's tail as one short row.
            const int64_t full = len / cols;
            if (full > 0) k.chunk(T, RAp, B, toff.data(), NB, full, cols, cols, sub, part);
            if (full * cols < len)
              k.chunk(T + full * cols / k.pix * RAp, RAp, B + full * cols, toff.data(), NB, 1, len - full * cols, 0, 1, part);
          } else {
            const int64_t oh0 = j * rows, nr = std::min(rows, p.OH - oh0);
            k.transpose(gyn + oh0 * p.OW, p.P, RA, RAp, nr * p.OW, T);
            if (bpart)
              for (int64_t oc = 0; oc < p.OCg; ++oc) bpart[oc] += run_sum(gyn + oh0 * p.OW + oc * p.P, nr * p.OW);
            // The input rows the chunk's taps read, zero-padded: row i is input row oh0 + i - ph.
            for (int64_t c = 0; c < p.Cg; ++c)
              for (int64_t i = 0; i < nr + (p.KH - 1) * p.dh; ++i) {
                float* d = B + c * bpitch + i * Wp;
                const int64_t ih = oh0 + i - p.ph;
                if (ih < 0 || ih >= p.H) {
                  std::memset(d, 0, sizeof(float) * Wp);
                  continue;
                }
                std::memset(d, 0, sizeof(float) * p.pw);
                std::memcpy(d + p.pw, xn + c * p.HW + ih * p.W, sizeof(float) * p.W);
                std::memset(d + p.pw + p.W, 0, sizeof(float) * (Wp - p.pw - p.W));
              }
            k.chunk(T, RAp, B, toff.data(), NB, nr, cols, Wp, sub, part);
          }
        }
      }
    });
    // Groups in order; part[b][a] is gw[oc][tap] = part[tap][oc], or gw[oc][c] = part[oc][c]
    // when swapped.
    // In pair mode channel a is lanes 2a and 2a + 1.
    float* gwg = gw + gi * p.OCg * p.CKK;
    for (int64_t b = 0; b < NB; ++b)
      for (int64_t a = 0; a < RA; ++a) {
        float s = 0.0f;
        for (int64_t grp = 0; grp < ngroups; ++grp)
          for (int l = 0; l < k.pix; ++l) s += parts[grp * part_size + b * RAp + a * k.pix + l];
        if (swap) gwg[b * p.Cg + a] = s;
        else gwg[a * p.CKK + b] = s;
      }
    if (gb)
      for (int64_t oc = 0; oc < p.OCg; ++oc) {
        double s = 0;
        for (int64_t grp = 0; grp < ngroups; ++grp) s += bparts[grp * p.OCg + oc];
        gb[gi * p.OCg + oc] = static_cast<float>(s);
      }
  }
}

}  // namespace sc
