// Dense matrix multiply for the CPU backend (row-major), used by bmm and the convolutions.
//
//   C = alpha * op(A) * op(B) + beta * C,   op(A) is M x K, op(B) is K x N, C is M x N.
//   transA: A is stored K x M (leading dimension lda), otherwise M x K; likewise B.
//   beta == 0 means C is write-only (it may hold NaN/garbage on entry).
//
// The float path is a cache-blocked, packed GEMM with a register-blocked micro-kernel chosen
// at run time for the CPU (AVX-512F, AVX2+FMA, or portable C++). The double path uses the
// same blocking with a portable micro-kernel (it serves gradient checks, not training).
// Calls from outside a parallel region use the shared thread pool; nested calls (e.g. from a
// convolution that already parallelises over images) run in the calling thread.
#pragma once
#include <cstdint>

namespace sc {

template <typename T>
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

extern template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                 int64_t, const float*, int64_t, float, float*, int64_t);
extern template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                  int64_t, const double*, int64_t, double, double*, int64_t);

// Name of the instruction-set path in use: "avx512", "avx2" or "generic".
const char* gemm_isa();

// Forces a path ("avx512", "avx2", "generic"; nullptr or "" = automatic). A path the CPU
// cannot run falls back to the best one it can. The environment variable SCALPEL_ISA does
// the same at first use. Not meant to be called while kernels are running.
void gemm_force_isa(const char* name);

// Instruction-set level shared by the other CPU kernels that have ISA-specific variants:
// 2 = AVX-512F, 1 = AVX2+FMA, 0 = generic.
int cpu_isa_level();

// Peak floating-point rate (float, GFLOP/s) of the selected ISA on `threads` threads, measured
// with independent FMA chains; benchmarks report GEMM speed as a fraction of it.
double measure_fma_peak_gflops(int threads);

}  // namespace sc
