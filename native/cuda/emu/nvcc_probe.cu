// Compile probe: kernels written in the project's style (compat.cuh, KLAUNCH, SC_DYN_SMEM,
// SC_CUDA_CHECK) must build with real nvcc under the strict flags of the CI gate
//   nvcc -c -arch=sm_80 -Xptxas -v,-warn-spills,-warn-lmem-usage,-Werror --Werror all-warnings
// and unchanged with g++ -DCUDA_EMU -x c++. test/cuda-emu.test.ts does both.
#include "../compat.cuh"

namespace {

constexpr int TS = 16;

__global__ void probe_sgemm(const float* __restrict__ A, const float* __restrict__ B,
                            float* __restrict__ C, int M, int N, int K) {
  __shared__ float As[TS][TS];
  __shared__ float Bs[TS][TS];
  int tx = threadIdx.x, ty = threadIdx.y;
  int row = blockIdx.y * TS + ty, col = blockIdx.x * TS + tx;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += TS) {
    As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.f;
    Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(k0 + ty) * N + col] : 0.f;
    __syncthreads();
SC_UNROLL
    for (int k = 0; k < TS; ++k) acc += As[ty][k] * Bs[k][tx];
    __syncthreads();
  }
  if (row < M && col < N) C[row * N + col] = acc;
}

__device__ __forceinline__ float probe_warp_sum(float v) {
SC_UNROLL
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

__global__ void probe_block_sum(const float* __restrict__ x, float* __restrict__ out, int n) {
  SC_DYN_SMEM(float, part);
  float v = 0.f;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) v += __ldg(x + i);
  v = probe_warp_sum(v);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x / 32) ? part[lane] : 0.f;
    v = probe_warp_sum(v);
    if (lane == 0) atomicAdd(out, v);
  }
}

__global__ void probe_ballot(const float* __restrict__ x, unsigned* __restrict__ out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  unsigned b = __ballot_sync(0xffffffffu, i < n && x[i] > 0.f);
  if ((threadIdx.x & 31) == 0) out[i / 32] = b;
}

}  // namespace

// Host entry points: the launch path with KLAUNCH and error checks.
void probe_launch(const float* A, const float* B, float* C, int M, int N, int K, float* sum,
                  unsigned* ballots, cudaStream_t stream) {
  KLAUNCH(probe_sgemm, dim3((N + TS - 1) / TS, (M + TS - 1) / TS), dim3(TS, TS), 0, stream)(A, B, C, M, N, K);
  SC_CUDA_CHECK(cudaGetLastError());
  SC_CUDA_CHECK(cudaMemsetAsync(sum, 0, sizeof(float), stream));
  KLAUNCH(probe_block_sum, 4, 256, 8 * sizeof(float), stream)(C, sum, M * N);
  SC_CUDA_CHECK(cudaGetLastError());
  KLAUNCH(probe_ballot, (M * N + 255) / 256, 256, 0, stream)(C, ballots, M * N);
  SC_CUDA_CHECK(cudaGetLastError());
  SC_CUDA_CHECK(cudaStreamSynchronize(stream));
}
