// A tiled, register-blocked GEMM kernel shared by bmm and the convolutions (implicit GEMM).
//
//   C[z](m, n) = sum_{k in split} A[z](m, k) * B[z](k, n)      for z in [0, Z)
//
// The operands are functors, so the same kernel multiplies plain matrices (bmm, either
// transposition) or gathers an operand on the fly (im2col index math for the convolutions);
// the store is a functor too (plain store, bias add, or atomicAdd for split-K partials).
//   AL: T operator()(int z, int m, int k)    (called only for m < M, k < K)
//   BL: T operator()(int z, int k, int n)
//   ST: void operator()(int z, int m, int n, T v)
// Block tile 64 x 64 x 16, 256 threads as 16 x 16, each thread a 4 x 4 register tile (rows
// ty + 16 i, columns tx + 16 j: conflict-free shared reads and 16-wide coalesced stores).
// A_KFAST / B_KFAST choose which tile index consecutive threads walk while loading, so that
// global reads are coalesced along the operand's contiguous axis. The shared tiles are padded
// by one element to avoid bank conflicts on the transposing stores. Split-K: blockIdx.z covers
// Z * nsplit slices (k range [split * kchunk, ...)); Z * nsplit may exceed gridDim.z.
#pragma once
#include "cuda/common.cuh"

namespace sc {
namespace cu {

constexpr int kTBM = 64, kTBN = 64, kTBK = 16, kTThreads = 256;

template <typename T, bool A_KFAST, bool B_KFAST, class AL, class BL, class ST>
__global__ void __launch_bounds__(256) tile_gemm_k(AL al, BL bl, ST st, int M, int N, int K, int Z, int nsplit, int kchunk) {
  __shared__ T As[kTBK][kTBM + 1];
  __shared__ T Bs[kTBK][kTBN + 1];
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int m0 = blockIdx.y * kTBM, n0 = blockIdx.x * kTBN;
  for (int zz = blockIdx.z; zz < Z * nsplit; zz += gridDim.z) {
    const int z = zz / nsplit, split = zz - z * nsplit;
    const int kb = split * kchunk;
    const int ke = K < kb + kchunk ? K : kb + kchunk;
    T acc[4][4];
    SC_UNROLL for (int i = 0; i < 4; ++i) {
      SC_UNROLL for (int j = 0; j < 4; ++j) acc[i][j] = T(0);
    }
    for (int k0 = kb; k0 < ke; k0 += kTBK) {
      SC_UNROLL for (int r = 0; r < (kTBM * kTBK) / kTThreads; ++r) {
        const int e = tid + r * kTThreads;
        const int am = A_KFAST ? e / kTBK : e % kTBM;
        const int ak = A_KFAST ? e % kTBK : e / kTBM;
        const int gm = m0 + am, gak = k0 + ak;
        As[ak][am] = (gm < M && gak < ke) ? al(z, gm, gak) : T(0);
        const int bn = B_KFAST ? e / kTBK : e % kTBN;
        const int bk = B_KFAST ? e % kTBK : e / kTBN;
        const int gn = n0 + bn, gbk = k0 + bk;
        Bs[bk][bn] = (gn < N && gbk < ke) ? bl(z, gbk, gn) : T(0);
      }
      __syncthreads();
      SC_UNROLL for (int k = 0; k < kTBK; ++k) {
        T a[4], b[4];
        SC_UNROLL for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
        SC_UNROLL for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
        SC_UNROLL for (int i = 0; i < 4; ++i) {
          SC_UNROLL for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
      }
      __syncthreads();
    }
    SC_UNROLL for (int i = 0; i < 4; ++i) {
      SC_UNROLL for (int j = 0; j < 4; ++j) {
        const int gm = m0 + ty + 16 * i, gn = n0 + tx + 16 * j;
        if (gm < M && gn < N) st(z, gm, gn, acc[i][j]);
      }
    }
  }
}

// Launches tile_gemm_k over an M x N output for Z problems, each split into nsplit K-slices of
// kchunk (a multiple of kTBK; nsplit = 1, kchunk = K for no split).
template <typename T, bool A_KFAST, bool B_KFAST, class AL, class BL, class ST>
void tile_gemm(const AL& al, const BL& bl, const ST& st, int64_t M, int64_t N, int64_t K, int64_t Z, int nsplit, int64_t kchunk, const char* what) {
  if (M <= 0 || N <= 0 || Z <= 0) return;
  if (M > (1LL << 30) || N > (1LL << 30) || K > (1LL << 30) || Z * nsplit > (1LL << 30))
    throw KernelError(std::string(what) + ": problem too large for the CUDA GEMM kernel");
  if (kchunk <= 0) kchunk = kTBK;
  const dim3 grid((unsigned)ceil_div64(N, kTBN), (unsigned)ceil_div64(M, kTBM), (unsigned)std::min<int64_t>(Z * nsplit, 65535));
  if (grid.y > 65535) throw KernelError(std::string(what) + ": M too large for the CUDA GEMM kernel");
  KLAUNCH((tile_gemm_k<T, A_KFAST, B_KFAST, AL, BL, ST>), grid, dim3(kTThreads), 0, 0)(al, bl, st, (int)M, (int)N, (int)K, (int)Z, nsplit, (int)kchunk);
  check_launch(what);
}

}  // namespace cu
}  // namespace sc
