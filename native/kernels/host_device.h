// SC_HOST_DEVICE marks small inline functions that kernels of both backends call: nvcc compiles
// them for the host and the device; plain C++ (the CPU backend, and the CUDA sources built by
// g++ -DCUDA_EMU) sees ordinary inline functions.
#pragma once

#if defined(__CUDACC__)
#define SC_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SC_HOST_DEVICE inline
#endif
