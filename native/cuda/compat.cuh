// Included first by every kernel .cu file. The same source builds two ways:
//   nvcc                      -> real CUDA (this header maps the macros onto CUDA syntax);
//   g++ -DCUDA_EMU -x c++     -> the CPU emulator in emu/ (see shared/design/cuda-without-a-gpu.md).
// Kernel sources therefore never write `<<<...>>>` or `extern __shared__` themselves:
//   KLAUNCH(kernel, grid, block, smem_bytes, stream)(args...);
//   SC_DYN_SMEM(float, tile);      // inside a kernel: `float* tile` -> dynamic shared memory
//   SC_CUDA_CHECK(cudaMemcpy(...)); // throws sc::KernelError "file:line: expr: message"
//   SC_UNROLL for (...)             // `#pragma unroll` for nvcc, nothing for g++ (which warns)
#pragma once
#include <string>

#include "../core/kernel.h"

#if defined(CUDA_EMU)
#if defined(__CUDACC__)
#error "CUDA_EMU builds are compiled by the host compiler (g++ -x c++), not by nvcc"
#endif
#include "emu/emu.h"

#define KLAUNCH(kernel, grid, block, smem, stream) \
  ::sc::emu::make_launch(kernel, grid, block, smem, stream, __FILE__, __LINE__)
#define SC_DYN_SMEM(type, name) type* name = reinterpret_cast<type*>(::sc::emu::dyn_smem())
#define SC_UNROLL

#elif defined(__CUDACC__)
#include <cuda_runtime.h>

#define KLAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
// One byte array shared by all kernels of a translation unit: `extern __shared__` arrays of
// different element types under one name would conflict, so each kernel casts its own view.
#define SC_DYN_SMEM(type, name)                                 \
  extern __shared__ __align__(16) unsigned char sc_dyn_smem_[]; \
  type* name = reinterpret_cast<type*>(sc_dyn_smem_)
#define SC_UNROLL _Pragma("unroll")

#else
#error "compat.cuh needs nvcc, or a host compiler with -DCUDA_EMU"
#endif

#define SC_CUDA_CHECK(expr)                                                              \
  do {                                                                                   \
    cudaError_t sc_cuda_err_ = (expr);                                                   \
    if (sc_cuda_err_ != cudaSuccess)                                                     \
      throw ::sc::KernelError(std::string(__FILE__ ":") + std::to_string(__LINE__) +     \
                              ": " #expr ": " + cudaGetErrorString(sc_cuda_err_));       \
  } while (0)
