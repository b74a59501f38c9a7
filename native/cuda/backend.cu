// The CUDA backend: device memory for the caching allocator and the initialiser that decides
// at load time whether a GPU (or, in the emulated flavour, the CPU emulator) is usable. All
// kernels run on the default stream; reads back to the host synchronise.
#include "cuda/compat.cuh"
#include "core/storage.h"

namespace sc {
namespace {

class CudaMemory final : public DeviceMemory {
 public:
  void* raw_alloc(size_t bytes) override {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky OOM error so the allocator can retry
      return nullptr;
    }
    return p;
  }
  void raw_free(void* p, size_t) override { (void)cudaFree(p); }
  void copy_from_host(void* d, const void* s, size_t n) override { SC_CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyHostToDevice)); }
  void copy_to_host(void* d, const void* s, size_t n) override { SC_CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyDeviceToHost)); }
  void copy_device(void* d, const void* s, size_t n) override { SC_CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyDeviceToDevice)); }
  void synchronize() override { SC_CUDA_CHECK(cudaDeviceSynchronize()); }
  double time_ms(const std::function<void()>& fn, int iters) override {
    // CUDA events on the default stream time the kernels themselves, not the host loop.
    cudaEvent_t a, b;
    SC_CUDA_CHECK(cudaEventCreate(&a));
    SC_CUDA_CHECK(cudaEventCreate(&b));
    SC_CUDA_CHECK(cudaEventRecord(a, 0));
    for (int i = 0; i < iters; ++i) fn();
    SC_CUDA_CHECK(cudaEventRecord(b, 0));
    SC_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    SC_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    (void)cudaEventDestroy(a);
    (void)cudaEventDestroy(b);
    return ms / iters;
  }
};

BackendStatus cuda_init() {
  BackendStatus st;
#ifdef CUDA_EMU
  st.emulated = true;
#endif
  // Without a driver cudaGetDeviceCount fails (error 35) and leaves the count untouched: start
  // at 0 and treat any error as "no GPU".
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    (void)cudaGetLastError();
    st.reason = e != cudaSuccess ? std::string("no usable CUDA driver/GPU (") + cudaGetErrorString(e) + ")" : "no CUDA device found";
    return st;
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) st.device_name = prop.name;
  st.device_count = n;
  st.available = true;
  register_device_memory(Backend::cuda, new CudaMemory());
  return st;
}

const int registered = (register_backend_init(Backend::cuda, cuda_init), 0);

}  // namespace
}  // namespace sc
