// Packed, cache-blocked GEMM (BLIS-style loop nest) with run-time ISA selection.
//
// Loop nest (per thread, on its own slice of C):
//   for jc in N step NC          B block NC wide
//     for pc in K step KC        pack B[pc:pc+KC, jc:jc+NC] into NR-wide column panels (L2/L3)
//       for ic in M step MC      pack A[ic:ic+MC, pc:pc+KC] into MR-high row panels (L2)
//         for jr in NC step NR   one B micro-panel (KC x NR), stays in L1 across the ir loop
//           for ir in MC step MR micro-kernel: MR x NR tile of C in registers, k loop over KC
//
// Packed layouts (both zero-padded to full panels, so the micro-kernel never branches on
// edges inside its k loop):
//   A panel: Ap[k * MR + i]   -> one broadcast per row i and k
//   B panel: Bp[k * NR + j]   -> NR/lanes aligned vector loads per k
// The micro-kernel accumulates op(A)op(B) for one KC block and applies
//   C = alpha * acc + beta_eff * C, with beta_eff = beta for the first KC block and 1 after.
// Partial tiles (M or N edges) go through a small stack tile.
//
// Threads: C is split into contiguous column (or row) ranges, one per pool thread; each range
// is an independent serial GEMM with its own thread_local packing buffers (grown once, reused;
// nothing is allocated in the hot loop). Re-packing the shared operand per thread costs
// O(K*M) against O(K*M*N/threads) flops, which is negligible for the sizes that get split.
#include "gemm.h"
#include "bmm_params.h"
#include "simd.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#define SC_X86 1
#include <immintrin.h>
#else
#define SC_X86 0
#endif

namespace sc {
namespace {

// ------------------------------------------------------------------------------------------
// ISA selection
// ------------------------------------------------------------------------------------------

int detect_best_isa() {
#if SC_X86
  __builtin_cpu_init();
  // libgcc also checks (via XGETBV) that the OS saves the wider register state.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma"))
    return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
  return 0;
}

int parse_isa(const char* s) {
  if (!s || !*s) return -1;
  std::string v(s);
  if (v == "avx512" || v == "avx512f") return 2;
  if (v == "avx2") return 1;
  if (v == "generic" || v == "scalar" || v == "none") return 0;
  return -1;
}

int resolve_isa(int want) {
  const int best = detect_best_isa();
  return want < 0 ? best : std::min(want, best);
}

std::atomic<int> g_isa{-1};

int isa_level() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = resolve_isa(parse_isa(std::getenv("SCALPEL_ISA")));
    g_isa.store(v, std::memory_order_relaxed);
  }
  return v;
}

// ------------------------------------------------------------------------------------------
// Per-thread, 64-byte aligned scratch (grown geometrically, never shrunk).
// ------------------------------------------------------------------------------------------

struct AlignedBuf {
  void* p = nullptr;
  size_t cap = 0;
  ~AlignedBuf() { std::free(p); }
  void* get(size_t bytes) {
    if (bytes > cap) {
      size_t want = std::max(bytes, cap + cap / 2);
      want = (want + 63) / 64 * 64;
      void* q = std::aligned_alloc(64, want);
      if (!q) throw std::bad_alloc();
      std::free(p);
      p = q;
      cap = want;
    }
    return p;
  }
};
thread_local AlignedBuf tl_apack, tl_bpack;

// ------------------------------------------------------------------------------------------
// Micro-kernels
// ------------------------------------------------------------------------------------------

template <typename T>
using UkrFn = void (*)(int64_t kc, const T* A, const T* B, T* C, int64_t ldc, T alpha, T beta,
                       int mr, int nr);

// Writes the top-left mr x nr corner of an MR x NR accumulator tile into C.
template <typename T>
inline void store_partial(const T* tile, int NR, T* C, int64_t ldc, T alpha, T beta, int mr,
                          int nr) {
  for (int i = 0; i < mr; ++i) {
    T* c = C + i * ldc;
    const T* t = tile + i * NR;
    if (beta == T(0))
      for (int j = 0; j < nr; ++j) c[j] = alpha * t[j];
    else
      for (int j = 0; j < nr; ++j) c[j] = alpha * t[j] + beta * c[j];
  }
}

// Portable micro-kernel; the j loop is written so the compiler can vectorise it for the
// baseline ISA (SSE2 on x86-64).
template <typename T, int MR, int NR>
void ukr_generic(int64_t kc, const T* __restrict A, const T* __restrict B, T* __restrict C,
                 int64_t ldc, T alpha, T beta, int mr, int nr) {
  T acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = T(0);
  for (int64_t k = 0; k < kc; ++k) {
    const T* a = A + k * MR;
    const T* b = B + k * NR;
    for (int i = 0; i < MR; ++i) {
      const T ai = a[i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
  }
  store_partial(&acc[0][0], NR, C, ldc, alpha, beta, mr, nr);
}

#if SC_X86
// AVX-512: MR x 32 tile = 2*MR zmm accumulators. MR = 14 uses 28 accumulators + 2 B vectors;
// the A element is a broadcast memory operand of the FMA, so 30 of 32 registers are live.
// 14*32 FMAs per 2 B loads + 14 broadcasts keeps both FMA pipes busy on Zen4/SKX.
template <int MR>
__attribute__((target("avx512f"))) void ukr_avx512(int64_t kc, const float* __restrict A,
                                                   const float* __restrict B,
                                                   float* __restrict C, int64_t ldc,
                                                   float alpha, float beta, int mr, int nr) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    c0[i] = _mm512_setzero_ps();
    c1[i] = _mm512_setzero_ps();
  }
  // Touch the C tile early so its lines arrive while we compute.
  for (int i = 0; i < mr; ++i) _mm_prefetch((const char*)(C + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(B);
    const __m512 b1 = _mm512_load_ps(B + 16);
    _mm_prefetch((const char*)(B + 8 * 32), _MM_HINT_T0);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(A[i]);
      c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
    }
    A += MR;
    B += 32;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (mr == MR && nr == 32) {
    if (beta == 0.0f) {
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i) {
        _mm512_storeu_ps(C + i * ldc, _mm512_mul_ps(va, c0[i]));
        _mm512_storeu_ps(C + i * ldc + 16, _mm512_mul_ps(va, c1[i]));
      }
    } else {
      const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i) {
        float* c = C + i * ldc;
        _mm512_storeu_ps(c, _mm512_fmadd_ps(vb, _mm512_loadu_ps(c), _mm512_mul_ps(va, c0[i])));
        _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + 16),
                                                 _mm512_mul_ps(va, c1[i])));
      }
    }
  } else {
    alignas(64) float tile[MR * 32];
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      _mm512_store_ps(tile + i * 32, c0[i]);
      _mm512_store_ps(tile + i * 32 + 16, c1[i]);
    }
    store_partial(tile, 32, C, ldc, alpha, beta, mr, nr);
  }
}

// AVX2+FMA: 6 x 16 tile = 12 ymm accumulators + 2 B vectors + 1 broadcast = 15 of 16
// registers; 12 independent FMA chains cover 2 pipes x 4-5 cycles latency.
__attribute__((target("avx2,fma"))) void ukr_avx2(int64_t kc, const float* __restrict A,
                                                  const float* __restrict B,
                                                  float* __restrict C, int64_t ldc, float alpha,
                                                  float beta, int mr, int nr) {
  constexpr int MR = 6;
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    c0[i] = _mm256_setzero_ps();
    c1[i] = _mm256_setzero_ps();
  }
  for (int i = 0; i < mr; ++i) _mm_prefetch((const char*)(C + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(B);
    const __m256 b1 = _mm256_load_ps(B + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(A + i);
      c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
    }
    A += MR;
    B += 16;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (mr == MR && nr == 16) {
    if (beta == 0.0f) {
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        _mm256_storeu_ps(C + i * ldc, _mm256_mul_ps(va, c0[i]));
        _mm256_storeu_ps(C + i * ldc + 8, _mm256_mul_ps(va, c1[i]));
      }
    } else {
      const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        float* c = C + i * ldc;
        _mm256_storeu_ps(c, _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), _mm256_mul_ps(va, c0[i])));
        _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8),
                                                _mm256_mul_ps(va, c1[i])));
      }
    }
  } else {
    alignas(32) float tile[MR * 16];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      _mm256_store_ps(tile + i * 16, c0[i]);
      _mm256_store_ps(tile + i * 16 + 8, c1[i]);
    }
    store_partial(tile, 16, C, ldc, alpha, beta, mr, nr);
  }
}

// Double micro-kernels for the vector paths: 8 x 16 (AVX-512, 16 accumulators) and
// 4 x 8 (AVX2, 8 accumulators). Same structure as the float ones.
__attribute__((target("avx512f"))) void ukr_avx512_d(int64_t kc, const double* __restrict A,
                                                     const double* __restrict B,
                                                     double* __restrict C, int64_t ldc,
                                                     double alpha, double beta, int mr,
                                                     int nr) {
  constexpr int MR = 8;
  __m512d c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    c0[i] = _mm512_setzero_pd();
    c1[i] = _mm512_setzero_pd();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512d b0 = _mm512_load_pd(B);
    const __m512d b1 = _mm512_load_pd(B + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512d a = _mm512_set1_pd(A[i]);
      c0[i] = _mm512_fmadd_pd(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_pd(a, b1, c1[i]);
    }
    A += MR;
    B += 16;
  }
  alignas(64) double tile[MR * 16];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    _mm512_store_pd(tile + i * 16, c0[i]);
    _mm512_store_pd(tile + i * 16 + 8, c1[i]);
  }
  store_partial(tile, 16, C, ldc, alpha, beta, mr, nr);
}

__attribute__((target("avx2,fma"))) void ukr_avx2_d(int64_t kc, const double* __restrict A,
                                                    const double* __restrict B,
                                                    double* __restrict C, int64_t ldc,
                                                    double alpha, double beta, int mr, int nr) {
  constexpr int MR = 4;
  __m256d c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    c0[i] = _mm256_setzero_pd();
    c1[i] = _mm256_setzero_pd();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256d b0 = _mm256_load_pd(B);
    const __m256d b1 = _mm256_load_pd(B + 4);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256d a = _mm256_broadcast_sd(A + i);
      c0[i] = _mm256_fmadd_pd(a, b0, c0[i]);
      c1[i] = _mm256_fmadd_pd(a, b1, c1[i]);
    }
    A += MR;
    B += 8;
  }
  alignas(32) double tile[MR * 8];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    _mm256_store_pd(tile + i * 8, c0[i]);
    _mm256_store_pd(tile + i * 8 + 4, c1[i]);
  }
  store_partial(tile, 8, C, ldc, alpha, beta, mr, nr);
}
#endif  // SC_X86

// ------------------------------------------------------------------------------------------
// Blocking configuration per ISA and type
// ------------------------------------------------------------------------------------------

template <typename T>
struct Cfg {
  int MR, NR;  // register tile
  int MC;      // rows of A per packed block: MC x KC floats sit in L2 (1 MB/core on Zen4)
  int KC;      // depth per block: the KC x NR B micro-panel stays in L1 across the ir loop
  int NC;      // columns of B per packed block (L2/L3)
  UkrFn<T> ukr;
  const char* name;
};

template <typename T>
Cfg<T> config();

template <>
Cfg<float> config<float>() {
#if SC_X86
  switch (isa_level()) {
    // 14x32: B micro-panel 256x32x4 = 32 KB streams from L1/L2 with prefetch; A block
    // 168x256x4 = 168 KB stays in L2.
    case 2: return {14, 32, 168, 256, 4096, &ukr_avx512<14>, "avx512"};
    // 6x16 (BLIS Haswell-like): B micro-panel 256x16x4 = 16 KB in L1, A block 144x256 in L2.
    case 1: return {6, 16, 144, 256, 4096, &ukr_avx2, "avx2"};
    default: break;
  }
#endif
  return {6, 8, 120, 256, 2048, &ukr_generic<float, 6, 8>, "generic"};
}

template <>
Cfg<double> config<double>() {
#if SC_X86
  switch (isa_level()) {
    case 2: return {8, 16, 96, 256, 2048, &ukr_avx512_d, "avx512"};
    case 1: return {4, 8, 96, 256, 2048, &ukr_avx2_d, "avx2"};
    default: break;
  }
#endif
  return {4, 4, 96, 256, 2048, &ukr_generic<double, 4, 4>, "generic"};
}

// ------------------------------------------------------------------------------------------
// Packing
// ------------------------------------------------------------------------------------------

#if SC_X86
// One full 6-row panel of row-major A (the AVX2 tile): 8 k at a time, the 6 rows (and two zero
// rows) transposed 8 x 8 in registers and stored as 8 overlapping 8-float runs of which the
// first 6 floats are the panel's; the last run's 2 extra floats land on the next k (or the next
// panel, or the buffer's slack) and are overwritten by it. The scalar interleave this replaces
// was a third of a GEMM with 32 columns and a reduction of 32 (SegFormer's and NExNet's token
// linears): the panel is packed once per 2 column panels there.
__attribute__((target("avx2,fma"))) void pack_a_rows6_avx2(const float* const* rows, int64_t kc, float* dst) {
  const __m256 z = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    const __m256 t0 = _mm256_unpacklo_ps(_mm256_loadu_ps(rows[0] + k), _mm256_loadu_ps(rows[1] + k));
    const __m256 t1 = _mm256_unpackhi_ps(_mm256_loadu_ps(rows[0] + k), _mm256_loadu_ps(rows[1] + k));
    const __m256 t2 = _mm256_unpacklo_ps(_mm256_loadu_ps(rows[2] + k), _mm256_loadu_ps(rows[3] + k));
    const __m256 t3 = _mm256_unpackhi_ps(_mm256_loadu_ps(rows[2] + k), _mm256_loadu_ps(rows[3] + k));
    const __m256 t4 = _mm256_unpacklo_ps(_mm256_loadu_ps(rows[4] + k), _mm256_loadu_ps(rows[5] + k));
    const __m256 t5 = _mm256_unpackhi_ps(_mm256_loadu_ps(rows[4] + k), _mm256_loadu_ps(rows[5] + k));
    // Per 128-bit half: rows 0-3 (s0..s3) and rows 4, 5, 0, 0 (s4..s7) at k+j and k+4+j.
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s4 = _mm256_shuffle_ps(t4, z, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s5 = _mm256_shuffle_ps(t4, z, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s6 = _mm256_shuffle_ps(t5, z, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s7 = _mm256_shuffle_ps(t5, z, _MM_SHUFFLE(3, 2, 3, 2));
    float* d = dst + k * 6;
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(d + 6, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(d + 12, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(d + 18, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(d + 24, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(d + 30, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(d + 36, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(d + 42, _mm256_permute2f128_ps(s3, s7, 0x31));
  }
  for (; k < kc; ++k)
    for (int i = 0; i < 6; ++i) dst[k * 6 + i] = rows[i][k];
}
#endif

// Floats past the packed A block that pack_a_rows6_avx2 may write.
constexpr int64_t kApackSlack = 8;

#if SC_X86
// GCC 12's unmasked AVX-512 shuffles pass _mm512_undefined_ps() (a self-initialised variable) as
// their unused merge source, which -Wmaybe-uninitialized reports once transpose16 is inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// One full 14-row panel of row-major A (the AVX-512 tile), 16 k at a time through the transpose
// (rows 14 and 15 zero), each k's 14 values a masked store. With pack_b_trans32_avx512 it replaces
// scalar interleaves that were 30 % of a 1x1 weight gradient's time (its A is the output
// gradient's rows of pixels, its B the input's).
SC_T512 void pack_a_rows14_avx512(const float* const* rows, int64_t kc, float* dst) {
  int64_t k = 0;
  for (; k + 16 <= kc; k += 16) {
    __m512 r[16];
#pragma GCC unroll 14
    for (int i = 0; i < 14; ++i) r[i] = _mm512_loadu_ps(rows[i] + k);
    r[14] = r[15] = _mm512_setzero_ps();
    transpose16(r);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) _mm512_mask_storeu_ps(dst + (k + j) * 14, 0x3FFF, r[j]);
  }
  for (; k < kc; ++k)
    for (int i = 0; i < 14; ++i) dst[k * 14 + i] = rows[i][k];
}

// One full 14-row panel of op(A) = A^T: each k's 14 values are contiguous, a masked copy.
SC_T512 void pack_a_trans14_avx512(const float* A, int64_t lda, int64_t kc, float* dst) {
  for (int64_t k = 0; k < kc; ++k)
    _mm512_mask_storeu_ps(dst + k * 14, 0x3FFF, _mm512_maskz_loadu_ps(0x3FFF, A + k * lda));
}

// One full 32-column panel of op(B) = B^T (B's 32 rows each contiguous in k), 16 k at a time:
// two transposes, each k's 32 values two stores.
SC_T512 void pack_b_trans32_avx512(const float* B, int64_t ldb, int64_t kc, float* dst) {
  int64_t k = 0;
  for (; k + 16 <= kc; k += 16) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(B + (h * 16 + i) * ldb + k);
      transpose16(r);
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) _mm512_storeu_ps(dst + (k + j) * 32 + h * 16, r[j]);
    }
  }
  for (; k < kc; ++k)
    for (int j = 0; j < 32; ++j) dst[k * 32 + j] = B[j * ldb + k];
}
#pragma GCC diagnostic pop
#endif

// Packs op(A)[i0:i0+mc, k0:k0+kc] into MR-row panels, panel p at Ap + p*MR*kc, [k*MR + i].
template <typename T>
void pack_A(bool transA, const T* A, int64_t lda, int64_t i0, int64_t mc, int64_t k0,
            int64_t kc, int MR, T* __restrict Ap) {
#if SC_X86
  [[maybe_unused]] const bool rows6 = std::is_same_v<T, float> && !transA && MR == 6 && isa_level() == 1;
  [[maybe_unused]] const bool full14 = std::is_same_v<T, float> && MR == 14 && isa_level() == 2;
#endif
  for (int64_t ip = 0; ip < mc; ip += MR) {
    const int mr = (int)std::min<int64_t>(MR, mc - ip);
    T* dst = Ap + ip * kc;
    if (!transA) {
      // op(A)(i,k) = A[i*lda + k]: MR row streams, interleaved.
      const T* rows[32];
      for (int i = 0; i < mr; ++i) rows[i] = A + (i0 + ip + i) * lda + k0;
#if SC_X86
      if constexpr (std::is_same_v<T, float>) {
        if (rows6 && mr == 6) {
          pack_a_rows6_avx2(rows, kc, dst);
          continue;
        }
        if (full14 && mr == 14) {
          pack_a_rows14_avx512(rows, kc, dst);
          continue;
        }
      }
#endif
      for (int64_t k = 0; k < kc; ++k) {
        T* d = dst + k * MR;
        int i = 0;
        for (; i < mr; ++i) d[i] = rows[i][k];
        for (; i < MR; ++i) d[i] = T(0);
      }
    } else {
#if SC_X86
      if constexpr (std::is_same_v<T, float>) {
        if (full14 && mr == 14) {
          pack_a_trans14_avx512(A + k0 * lda + i0 + ip, lda, kc, dst);
          continue;
        }
      }
#endif
      // op(A)(i,k) = A[k*lda + i]: each k is a contiguous run of mr elements.
      for (int64_t k = 0; k < kc; ++k) {
        const T* s = A + (k0 + k) * lda + i0 + ip;
        T* d = dst + k * MR;
        int i = 0;
        for (; i < mr; ++i) d[i] = s[i];
        for (; i < MR; ++i) d[i] = T(0);
      }
    }
  }
}

// Packs op(B)[k0:k0+kc, j0:j0+nc] into NR-column panels, panel p at Bp + p*NR*kc, [k*NR + j].
template <typename T>
void pack_B(bool transB, const T* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0,
            int64_t nc, int NR, T* __restrict Bp) {
#if SC_X86
  [[maybe_unused]] const bool full32 = std::is_same_v<T, float> && NR == 32 && isa_level() == 2;
#endif
  for (int64_t jp = 0; jp < nc; jp += NR) {
    const int nr = (int)std::min<int64_t>(NR, nc - jp);
    T* dst = Bp + jp * kc;
    if (!transB) {
      for (int64_t k = 0; k < kc; ++k) {
        const T* s = B + (k0 + k) * ldb + j0 + jp;
        T* d = dst + k * NR;
        int j = 0;
        if (nr == NR) {
          std::memcpy(d, s, sizeof(T) * NR);
          continue;
        }
        for (; j < nr; ++j) d[j] = s[j];
        for (; j < NR; ++j) d[j] = T(0);
      }
    } else {
#if SC_X86
      if constexpr (std::is_same_v<T, float>) {
        if (full32 && nr == 32) {
          pack_b_trans32_avx512(B + (j0 + jp) * ldb + k0, ldb, kc, dst);
          continue;
        }
      }
#endif
      // op(B)(k,j) = B[j*ldb + k]: read each of the nr rows of B contiguously.
      for (int j = 0; j < nr; ++j) {
        const T* s = B + (j0 + jp + j) * ldb + k0;
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = s[k];
      }
      for (int j = nr; j < NR; ++j)
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = T(0);
    }
  }
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// C = beta * C for the degenerate cases (K == 0 or alpha == 0).
template <typename T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* c = C + i * ldc;
    if (beta == T(0))
      for (int64_t j = 0; j < N; ++j) c[j] = T(0);
    else if (beta != T(1))
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
  }
}

// Serial blocked GEMM on one slice of C. Requires M, N, K > 0.
template <typename T>
void gemm_serial(const Cfg<T>& cfg, bool tA, bool tB, int64_t M, int64_t N, int64_t K, T alpha,
                 const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const int MR = cfg.MR, NR = cfg.NR;
  // Even out the blocks so a size just above a multiple of KC/MC does not leave a sliver.
  const int64_t KCb = ceil_div(K, ceil_div(K, cfg.KC));
  const int64_t MCb = round_up(ceil_div(M, ceil_div(M, cfg.MC)), MR);
  const int64_t NCb = round_up(ceil_div(N, ceil_div(N, cfg.NC)), NR);
  T* Bp = static_cast<T*>(tl_bpack.get(sizeof(T) * KCb * NCb));
  T* Ap = static_cast<T*>(tl_apack.get(sizeof(T) * (KCb * MCb + kApackSlack)));
  for (int64_t jc = 0; jc < N; jc += NCb) {
    const int64_t nc = std::min(NCb, N - jc);
    for (int64_t pc = 0; pc < K; pc += KCb) {
      const int64_t kc = std::min(KCb, K - pc);
      pack_B(tB, B, ldb, pc, kc, jc, nc, NR, Bp);
      const T beff = pc == 0 ? beta : T(1);
      for (int64_t ic = 0; ic < M; ic += MCb) {
        const int64_t mc = std::min(MCb, M - ic);
        pack_A(tA, A, lda, ic, mc, pc, kc, MR, Ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int nr = (int)std::min<int64_t>(NR, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int mr = (int)std::min<int64_t>(MR, mc - ir);
            cfg.ukr(kc, Ap + ir * kc, Bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, alpha,
                    beff, mr, nr);
          }
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == T(0)) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const Cfg<T> cfg = config<T>();
  const int nt = num_threads();
  // Below ~1 MFLOP a pool wake-up costs more than it saves.
  if (nt <= 1 || 2.0 * M * N * K < 1.0e6) {
    gemm_serial(cfg, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split C into one contiguous range per thread along the dimension with more register
  // tiles (ties go to N: the conv GEMMs have few rows and many pixel columns).
  const int64_t tilesN = ceil_div(N, cfg.NR), tilesM = ceil_div(M, cfg.MR);
  if (tilesN >= tilesM || tilesN >= 4 * nt) {
    const int64_t per = round_up(ceil_div(N, nt), cfg.NR);
    const int64_t tasks = ceil_div(N, per);
    parallel_for(0, tasks, 1, [&](int64_t b, int64_t e) {
      const int64_t j0 = b * per, j1 = std::min(N, e * per);
      const T* Bj = transB ? B + j0 * ldb : B + j0;
      gemm_serial(cfg, transA, transB, M, j1 - j0, K, alpha, A, lda, Bj, ldb, beta, C + j0, ldc);
    });
  } else {
    const int64_t per = round_up(ceil_div(M, nt), cfg.MR);
    const int64_t tasks = ceil_div(M, per);
    parallel_for(0, tasks, 1, [&](int64_t b, int64_t e) {
      const int64_t i0 = b * per, i1 = std::min(M, e * per);
      const T* Ai = transA ? A + i0 : A + i0 * lda;
      gemm_serial(cfg, transA, transB, i1 - i0, N, K, alpha, Ai, lda, B, ldb, beta,
                  C + i0 * ldc, ldc);
    });
  }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                           int64_t, const double*, int64_t, double, double*, int64_t);

const char* gemm_isa() {
  switch (isa_level()) {
    case 2: return "avx512";
    case 1: return "avx2";
    default: return "generic";
  }
}

void gemm_force_isa(const char* name) { g_isa.store(resolve_isa(parse_isa(name))); }

int cpu_isa_level() { return isa_level(); }

// ------------------------------------------------------------------------------------------
// FMA peak calibration
// ------------------------------------------------------------------------------------------

namespace {

// Independent accumulation chains (more than latency x pipes) of a*m + c; the values converge
// to a fixed point, so nothing overflows and the compiler cannot fold the loop away.
#if SC_X86
__attribute__((target("avx512f"))) double peak_loop_avx512(int64_t iters) {
  constexpr int NCH = 16;
  __m512 acc[NCH];
  const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
#pragma GCC unroll 16
  for (int i = 0; i < NCH; ++i) acc[i] = _mm512_set1_ps((float)i);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < NCH; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, c);
  }
  __m512 s = acc[0];
  for (int i = 1; i < NCH; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return 2.0 * 16 * NCH * (double)iters;
}

__attribute__((target("avx2,fma"))) double peak_loop_avx2(int64_t iters) {
  constexpr int NCH = 12;  // + 2 constants = 14 of 16 ymm registers
  __m256 acc[NCH];
  const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
#pragma GCC unroll 16
  for (int i = 0; i < NCH; ++i) acc[i] = _mm256_set1_ps((float)i);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < NCH; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
  }
  __m256 s = acc[0];
  for (int i = 1; i < NCH; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return 2.0 * 8 * NCH * (double)iters;
}
#endif

// Baseline: separate multiply and add (no FMA in the base ISA), vectorised by the compiler.
double peak_loop_generic(int64_t iters) {
  constexpr int NCH = 32;
  float acc[NCH];
  for (int i = 0; i < NCH; ++i) acc[i] = (float)i;
  const float m = 0.999f, c = 1e-3f;
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < NCH; ++i) acc[i] = acc[i] * m + c;
  float s = 0;
  for (int i = 0; i < NCH; ++i) s += acc[i];
  volatile float sink = s;
  (void)sink;
  return 2.0 * NCH * (double)iters;
}

double peak_loop(int64_t iters) {
#if SC_X86
  switch (isa_level()) {
    case 2: return peak_loop_avx512(iters);
    case 1: return peak_loop_avx2(iters);
    default: break;
  }
#endif
  return peak_loop_generic(iters);
}

}  // namespace

// Each thread times its own FMA loop with its thread CPU clock, and the per-thread rates are
// summed: on a shared host this is the rate the cores deliver while our threads run on them,
// unaffected by other processes taking turns (wall-clock timing would be).
double measure_fma_peak_gflops(int threads) {
  threads = std::max(1, std::min(threads, num_threads()));
  const int64_t iters = 4'000'000;
  auto thread_cpu = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  };
  double best = 0;
  for (int rep = 0; rep < 8; ++rep) {
    std::atomic<double> rate{0};
    parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const double t0 = thread_cpu();
        const double f = peak_loop(iters);
        const double r = f / std::max(thread_cpu() - t0, 1e-9);
        double cur = rate.load();
        while (!rate.compare_exchange_weak(cur, cur + r)) {
        }
      }
    });
    best = std::max(best, rate.load() * 1e-9);
  }
  return best;
}

// ------------------------------------------------------------------------------------------
// "bmm": batched matrix multiply on contiguous 3-D tensors.
//   a [B,M,K] (or [B,K,M] with transA), b [B,K,N] (or [B,N,K] with transB) -> out [B,M,N].
// ------------------------------------------------------------------------------------------

namespace {

void bmm_cpu(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& attrs) {
  const BmmP q = check_bmm(in, out, attrs);
  const TArg &a = in[0], &b = in[1], &c = out[0];
  const bool tA = q.tA, tB = q.tB;
  const int64_t Bn = q.Bn, M = q.M, N = q.N, K = q.K;
  if (c.numel() == 0) return;
  const int64_t lda = a.shape[2], ldb = b.shape[2];
  SC_FLOAT_DISPATCH(a.dtype, T, {
    const T* A = a.ptr<T>();
    const T* Bp = b.ptr<T>();
    T* C = c.ptr<T>();
    auto one = [&](int64_t i) {
      gemm<T>(tA, tB, M, N, K, T(1), A + i * M * K, lda, Bp + i * K * N, ldb, T(0),
              C + i * M * N, N);
    };
    // Many small matrices: one per thread (the inner GEMMs then run serially). Few large
    // ones: one after the other, each using the whole pool.
    const int64_t nt = num_threads();
    if (nt > 1 && Bn >= nt && (Bn >= 4 * nt || 2.0 * M * N * K < 4.0e7)) {
      parallel_for(0, Bn, 1, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) one(i);
      });
    } else {
      for (int64_t i = 0; i < Bn; ++i) one(i);
    }
  });
}

}  // namespace

SC_KERNEL("bmm", cpu, bmm_cpu);

}  // namespace sc
