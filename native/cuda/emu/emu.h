// CUDA emulation for machines without a GPU: the same kernel sources that nvcc compiles are
// compiled by g++ with -DCUDA_EMU and run on the CPU (design: shared/design/cuda-without-a-gpu.md).
//
// Every CUDA thread is a fiber; the threads of a block run one after another on one worker
// thread, switching at __syncthreads, warp operations and exit. Kernel sources include this
// only through native/cuda/compat.cuh, which also defines KLAUNCH and SC_DYN_SMEM.
#pragma once
#ifndef CUDA_EMU
#error "emu.h is only for CUDA_EMU builds (include native/cuda/compat.cuh instead)"
#endif
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../../core/kernel.h"

// g++ does not know `#pragma unroll` (GCC 12 warns from the preprocessor, and this diagnostic
// pragma only helps newer GCC): write SC_UNROLL from compat.cuh, or build with -Wno-unknown-pragmas.
#pragma GCC diagnostic ignored "-Wunknown-pragmas"

// ---- Qualifiers: all code is host code here. ----
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
// No __noinline__: libstdc++ spells __attribute__((__noinline__)), which the macro would break.
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Static shared arrays must be private to the block being run. A worker runs one block at a time
// and never switches blocks mid-run, so thread_local storage is exactly per-block. With
// SC_EMU_STATIC_SHARED (define it in every TU, emu.cc included) they are plain statics and the
// emulator runs one worker: AddressSanitizer does not check thread_local storage, but does this.
#ifdef SC_EMU_STATIC_SHARED
#define __shared__ static
#else
#define __shared__ static thread_local
#endif

// ---- Built-in vector types and index variables. ----
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(16) double2 { double x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

// Trivial types so that reads need no TLS init wrapper; the scheduler rewrites threadIdx on every
// fiber switch (the switch is an opaque call, so kernels reload it after each barrier).
inline thread_local uint3 threadIdx, blockIdx, blockDim, gridDim;
constexpr int warpSize = 32;

// ---- Runtime API subset (malloc-backed; everything is synchronous). ----
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct CUstream_st;
struct CUevent_st;
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
  int warpSize, maxThreadsPerBlock, multiProcessorCount, major, minor;
  int maxThreadsDim[3], maxGridSize[3];
};

cudaError_t cudaMalloc(void** p, size_t bytes);
template <class T> cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream = nullptr);
template <class T>
cudaError_t cudaMemcpyToSymbol(T& symbol, const void* src, size_t bytes, size_t offset = 0,
                               cudaMemcpyKind = cudaMemcpyHostToDevice) {
  if (offset + bytes > sizeof(T)) return cudaErrorInvalidValue;
  std::memcpy(reinterpret_cast<char*>(&symbol) + offset, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
template <class F> cudaError_t cudaFuncSetAttribute(F*, cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t e);

namespace sc {
namespace emu {

// Order in which the runnable threads of a block run between synchronisation points. Forward
// hides many missing barriers (a thread sees everything earlier threads wrote); reverse and
// random expose them. Defaults come from SCALPEL_EMU_SCHEDULE / SCALPEL_EMU_SEED.
enum class Schedule { forward, reverse, random };
void set_schedule(Schedule s, uint64_t seed = 0);
Schedule schedule();
uint64_t seed();
const char* schedule_name(Schedule s);
// Worker threads that run blocks concurrently (default 2, or SCALPEL_EMU_WORKERS).
void set_workers(int n);
int workers();

enum class WarpKind : uint8_t { sync, ballot, any, all, shfl_idx, shfl_up, shfl_down, shfl_xor };

// Entry points used by the macros below; `file`/`line` name the call site for diagnostics.
int barrier(const char* file, int line, int kind, int pred);
uint64_t warp_op(const char* file, int line, WarpKind kind, unsigned mask, uint64_t value,
                 int size, int arg, int width);
unsigned activemask();
unsigned char* dyn_smem();

struct LaunchSpec {
  dim3 grid, block;
  size_t smem = 0;
  cudaStream_t stream = nullptr;
  const char* file = nullptr;
  int line = 0;
  void (*body)(void*) = nullptr;  // runs the kernel once for the current (fiber) thread
  void* ctx = nullptr;
};
// Runs the whole grid before returning; diagnostics and kernel exceptions are rethrown here.
void launch(const LaunchSpec& spec);

// Call-site carrier, so that `__shfl_down_sync(m, v, 1)` can become
// `Site{__FILE__, __LINE__}.shfl_down(m, v, 1)` with CUDA's default arguments intact.
struct Site {
  const char* file;
  int line;
  void syncthreads() const { barrier(file, line, 0, 0); }
  int syncthreads_count(int p) const { return barrier(file, line, 1, p); }
  int syncthreads_and(int p) const { return barrier(file, line, 2, p); }
  int syncthreads_or(int p) const { return barrier(file, line, 3, p); }
  void syncwarp(unsigned mask = 0xffffffffu) const {
    warp_op(file, line, WarpKind::sync, mask, 0, 0, 0, 32);
  }
  unsigned ballot(unsigned mask, int pred) const {
    return unsigned(warp_op(file, line, WarpKind::ballot, mask, pred != 0, 4, 0, 32));
  }
  int any(unsigned mask, int pred) const {
    return int(warp_op(file, line, WarpKind::any, mask, pred != 0, 4, 0, 32));
  }
  int all(unsigned mask, int pred) const {
    return int(warp_op(file, line, WarpKind::all, mask, pred != 0, 4, 0, 32));
  }
  template <class T> T shuffle(WarpKind k, unsigned mask, T v, int arg, int width) const {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                  "warp shuffles move values of at most 8 bytes");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = warp_op(file, line, k, mask, bits, int(sizeof(T)), arg, width);
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
  }
  template <class T> T shfl(unsigned m, T v, int src, int w = 32) const {
    return shuffle(WarpKind::shfl_idx, m, v, src, w);
  }
  template <class T> T shfl_up(unsigned m, T v, unsigned d, int w = 32) const {
    return shuffle(WarpKind::shfl_up, m, v, int(d), w);
  }
  template <class T> T shfl_down(unsigned m, T v, unsigned d, int w = 32) const {
    return shuffle(WarpKind::shfl_down, m, v, int(d), w);
  }
  template <class T> T shfl_xor(unsigned m, T v, int lane_mask, int w = 32) const {
    return shuffle(WarpKind::shfl_xor, m, v, lane_mask, w);
  }
};

template <class... P> struct Launch {
  void (*kernel)(P...);
  LaunchSpec spec;
  template <class... A> void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "wrong number of kernel arguments");
    // Arguments are converted to the parameter types once, as nvcc does at a launch; every
    // emulated thread then gets its own by-value copy.
    struct Ctx {
      void (*k)(P...);
      std::tuple<std::decay_t<P>...> args;
    };
    Ctx ctx{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(a)...)};
    LaunchSpec s = spec;
    s.ctx = &ctx;
    s.body = [](void* c) {
      Ctx* x = static_cast<Ctx*>(c);
      std::apply(x->k, x->args);
    };
    launch(s);
  }
};
template <class... P>
Launch<P...> make_launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem,
                         cudaStream_t stream, const char* file, int line) {
  LaunchSpec s;
  s.grid = grid;
  s.block = block;
  s.smem = smem;
  s.stream = stream;
  s.file = file;
  s.line = line;
  return Launch<P...>{k, s};
}

}  // namespace emu
}  // namespace sc

// ---- Synchronisation and warp intrinsics (macros capture the call site). ----
#define SC_EMU_SITE ::sc::emu::Site{__FILE__, __LINE__}
#define __syncthreads() SC_EMU_SITE.syncthreads()
#define __syncthreads_count(p) SC_EMU_SITE.syncthreads_count(p)
#define __syncthreads_and(p) SC_EMU_SITE.syncthreads_and(p)
#define __syncthreads_or(p) SC_EMU_SITE.syncthreads_or(p)
#define __syncwarp(...) SC_EMU_SITE.syncwarp(__VA_ARGS__)
#define __ballot_sync(...) SC_EMU_SITE.ballot(__VA_ARGS__)
#define __any_sync(...) SC_EMU_SITE.any(__VA_ARGS__)
#define __all_sync(...) SC_EMU_SITE.all(__VA_ARGS__)
#define __shfl_sync(...) SC_EMU_SITE.shfl(__VA_ARGS__)
#define __shfl_up_sync(...) SC_EMU_SITE.shfl_up(__VA_ARGS__)
#define __shfl_down_sync(...) SC_EMU_SITE.shfl_down(__VA_ARGS__)
#define __shfl_xor_sync(...) SC_EMU_SITE.shfl_xor(__VA_ARGS__)
inline unsigned __activemask() { return ::sc::emu::activemask(); }

// ---- Atomics: real atomics, because blocks run concurrently on several workers. ----
namespace sc {
namespace emu {
template <class T, class F> inline T atomic_update(T* a, F f) {
  T old, next;
  __atomic_load(a, &old, __ATOMIC_RELAXED);
  do {
    next = f(old);
  } while (!__atomic_compare_exchange(a, &old, &next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return old;
}
}  // namespace emu
}  // namespace sc
#define SC_EMU_INT_ATOMICS(T)                                                                    \
  inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }          \
  inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }          \
  inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }          \
  inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }            \
  inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }          \
  inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }        \
  inline T atomicMax(T* a, T v) {                                                               \
    return ::sc::emu::atomic_update(a, [v](T o) { return o < v ? v : o; });                     \
  }                                                                                             \
  inline T atomicMin(T* a, T v) {                                                               \
    return ::sc::emu::atomic_update(a, [v](T o) { return v < o ? v : o; });                     \
  }                                                                                             \
  inline T atomicCAS(T* a, T cmp, T v) {                                                        \
    __atomic_compare_exchange_n(a, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);         \
    return cmp;                                                                                 \
  }
SC_EMU_INT_ATOMICS(int)
SC_EMU_INT_ATOMICS(unsigned)
SC_EMU_INT_ATOMICS(unsigned long long)
#undef SC_EMU_INT_ATOMICS
inline float atomicAdd(float* a, float v) {
  return ::sc::emu::atomic_update(a, [v](float o) { return o + v; });
}
inline double atomicAdd(double* a, double v) {
  return ::sc::emu::atomic_update(a, [v](double o) { return o + v; });
}
inline float atomicExch(float* a, float v) {
  float old;
  __atomic_exchange(a, &v, &old, __ATOMIC_RELAXED);
  return old;
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---- Math and bit intrinsics (the fast-math variants are exact here; compare with tolerances).
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline int __float2int_rn(float x) { return int(nearbyintf(x)); }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; std::memcpy(&v, &f, 4); return v; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned v; std::memcpy(&v, &f, 4); return v; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; std::memcpy(&v, &d, 8); return v; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz(unsigned(x)) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
template <class T> inline T __ldg(const T* p) { return *p; }
// CUDA declares global min/max overloads for device code.
#define SC_EMU_MINMAX(T)                                 \
  inline T min(T a, T b) { return b < a ? b : a; }       \
  inline T max(T a, T b) { return a < b ? b : a; }
SC_EMU_MINMAX(int)
SC_EMU_MINMAX(unsigned)
SC_EMU_MINMAX(long)
SC_EMU_MINMAX(unsigned long)
SC_EMU_MINMAX(long long)
SC_EMU_MINMAX(unsigned long long)
SC_EMU_MINMAX(float)
SC_EMU_MINMAX(double)
#undef SC_EMU_MINMAX
