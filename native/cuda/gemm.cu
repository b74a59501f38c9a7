// "bmm" on the CUDA backend: batched matrix multiply on contiguous 3-D tensors, mirroring
// native/kernels/gemm.cc:
//   a [B,M,K] (or [B,K,M] with transA), b [B,K,N] (or [B,N,K] with transB) -> out [B,M,N].
// One launch of the tiled SGEMM in tile_gemm.cuh (64x64x16 tiles, 4x4 per thread), batched over
// gridDim.z; the four transposition variants are template instantiations so that tile loads
// are coalesced along each operand's contiguous axis.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"
#include "cuda/tile_gemm.cuh"
#include "kernels/bmm_params.h"

#include <string>

namespace sc {
namespace cu {
namespace {

template <typename T, bool TA>
struct BmmA {
  const T* p;
  int64_t M, K;
  __device__ __forceinline__ T operator()(int z, int m, int k) const {
    return TA ? p[(int64_t)z * M * K + (int64_t)k * M + m] : p[(int64_t)z * M * K + (int64_t)m * K + k];
  }
};
template <typename T, bool TB>
struct BmmB {
  const T* p;
  int64_t K, N;
  __device__ __forceinline__ T operator()(int z, int k, int n) const {
    return TB ? p[(int64_t)z * K * N + (int64_t)n * K + k] : p[(int64_t)z * K * N + (int64_t)k * N + n];
  }
};
template <typename T>
struct BmmStore {
  T* p;
  int64_t M, N;
  __device__ __forceinline__ void operator()(int z, int m, int n, T v) const { p[(int64_t)z * M * N + (int64_t)m * N + n] = v; }
};

template <typename T, bool TA, bool TB>
void bmm_launch(const T* A, const T* B, T* C, int64_t Bn, int64_t M, int64_t N, int64_t K) {
  tile_gemm<T, !TA, TB>(BmmA<T, TA>{A, M, K}, BmmB<T, TB>{B, K, N}, BmmStore<T>{C, M, N}, M, N, K, Bn, 1, K, "bmm");
}

void bmm_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& attrs) {
  const BmmP q = check_bmm(in, out, attrs);
  const TArg &a = in[0], &b = in[1], &c = out[0];
  const bool tA = q.tA, tB = q.tB;
  const int64_t Bn = q.Bn, M = q.M, N = q.N, K = q.K;
  if (c.numel() == 0) return;
  SC_FLOAT_DISPATCH(a.dtype, T, {
    const T* A = a.ptr<T>();
    const T* B = b.ptr<T>();
    T* C = c.ptr<T>();
    if (!tA && !tB) bmm_launch<T, false, false>(A, B, C, Bn, M, N, K);
    else if (!tA && tB) bmm_launch<T, false, true>(A, B, C, Bn, M, N, K);
    else if (tA && !tB) bmm_launch<T, true, false>(A, B, C, Bn, M, N, K);
    else bmm_launch<T, true, true>(A, B, C, Bn, M, N, K);
  });
}

}  // namespace

SC_KERNEL("bmm", cuda, bmm_cuda);

}  // namespace cu
}  // namespace sc
