#include "storage.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace sc {
namespace {

class HostMemory final : public DeviceMemory {
 public:
  HostMemory() {
#ifdef __GLIBC__
    // Blocks of a megabyte or more straight from mmap, freed back to the system on trim.
    // glibc's dynamic threshold otherwise rises to 32 MB after the first large frees, serving
    // activation-sized blocks from the heap, where a block the cache gives back stays in the
    // process (RSS) unless it happens to sit at the heap's top.
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  }
  void* raw_alloc(size_t bytes) override {
    // 64-byte alignment: whole cache lines and aligned AVX-512 loads.
    return std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  }
  void raw_free(void* p) override { std::free(p); }
  void copy_from_host(void* d, const void* s, size_t n) override { std::memcpy(d, s, n); }
  void copy_to_host(void* d, const void* s, size_t n) override { std::memcpy(d, s, n); }
  void copy_device(void* d, const void* s, size_t n) override { std::memmove(d, s, n); }
};

// Allocators are intentionally leaked: tensors finalised during process teardown may still
// free into them after static destructors would have run.
CachingAllocator* g_alloc[2] = {new CachingAllocator(new HostMemory()), nullptr};

}  // namespace

double DeviceMemory::time_ms(const std::function<void()>& fn, int iters) {
  synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  synchronize();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(t1 - t0).count() / iters;
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) return 64;
  if (bytes <= 4096) return (bytes + 63) / 64 * 64;
  // Larger blocks: round up to an eighth of the next power of two (waste under 12.5%), and
  // blocks of a megabyte or more to a 32nd (under 3%: there the rounding is activation-sized
  // memory, and alloc()'s best fit already lets nearby sizes share blocks).
  size_t p = 1;
  while (p < bytes) p <<= 1;
  size_t q = bytes >= (1u << 20) ? p / 32 : p / 8;
  return (bytes + q - 1) / q * q;
}

void* CachingAllocator::alloc(size_t bytes, size_t* block_bytes) {
  const size_t sz = round_size(bytes);
  *block_bytes = sz;
  {
    std::lock_guard<std::mutex> lk(m_);
    // Best fit among cached blocks up to an eighth larger than asked: a step's tensors come in
    // many nearby sizes, and reusing a slightly larger block instead of allocating a new one
    // keeps the cache from holding a private set of blocks per size (memory the process then
    // holds but cannot use). The block keeps its size, so it goes back to its own bin.
    for (auto it = free_.lower_bound(sz); it != free_.end() && it->first <= sz + sz / 8; ++it) {
      if (it->second.empty()) continue;
      void* p = it->second.back();
      it->second.pop_back();
      *block_bytes = it->first;
      stats_.bytes_cached -= it->first;
      stats_.bytes_in_use += it->first;
      stats_.live_storages++;
      if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
      if (stats_.bytes_in_use > high_water_) high_water_ = stats_.bytes_in_use;
      return p;
    }
  }
  {
    // A miss. Cached blocks of other sizes count against the process too: keep what the
    // allocator holds (in use + cached) within 1/16 above the largest in use it ever had, giving
    // cached blocks back (largest first) before taking new memory beyond that. Without this the
    // cache keeps a private set of blocks per size and RSS grows by the fragmentation.
    std::lock_guard<std::mutex> lk(m_);
    const size_t high = std::max<size_t>(static_cast<size_t>(high_water_), static_cast<size_t>(stats_.bytes_in_use) + sz);
    const size_t limit = high + high / 32;
    if (static_cast<size_t>(stats_.bytes_in_use + stats_.bytes_cached) + sz > limit) {
      const size_t held = static_cast<size_t>(stats_.bytes_in_use) + sz;
      trim_locked(limit > held ? limit - held : 0);
    }
  }
  void* p = mem_->raw_alloc(sz);
  if (!p) {
    empty_cache();  // under pressure: give every cached block back and try once more
    p = mem_->raw_alloc(sz);
    if (!p) throw KernelError("out of memory allocating " + std::to_string(bytes) + " bytes");
  }
  std::lock_guard<std::mutex> lk(m_);
  stats_.bytes_in_use += sz;
  stats_.live_storages++;
  if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
  if (stats_.bytes_in_use > high_water_) high_water_ = stats_.bytes_in_use;
  return p;
}

void CachingAllocator::free(void* p, size_t block_bytes) {
  std::lock_guard<std::mutex> lk(m_);
  free_[block_bytes].push_back(p);
  stats_.bytes_in_use -= block_bytes;
  stats_.bytes_cached += block_bytes;
  stats_.live_storages--;
  if (static_cast<size_t>(stats_.bytes_cached) > cache_limit_) trim_locked(cache_limit_);
}

void CachingAllocator::trim_locked(size_t limit) {
  for (auto it = free_.rbegin(); it != free_.rend() && static_cast<size_t>(stats_.bytes_cached) > limit; ++it) {
    while (!it->second.empty() && static_cast<size_t>(stats_.bytes_cached) > limit) {
      mem_->raw_free(it->second.back());
      it->second.pop_back();
      stats_.bytes_cached -= it->first;
    }
  }
}

void CachingAllocator::set_cache_limit(size_t bytes) {
  std::lock_guard<std::mutex> lk(m_);
  cache_limit_ = bytes;
  trim_locked(bytes);
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lk(m_);
  stats_.peak_bytes_in_use = stats_.bytes_in_use;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lk(m_);
  for (auto& kv : free_)
    for (void* p : kv.second) mem_->raw_free(p);
  free_.clear();
  stats_.bytes_cached = 0;
}

MemoryStats CachingAllocator::stats() {
  std::lock_guard<std::mutex> lk(m_);
  return stats_;
}

bool backend_available(Backend be) { return g_alloc[static_cast<int>(be)] != nullptr; }

CachingAllocator& allocator(Backend be) {
  CachingAllocator* a = g_alloc[static_cast<int>(be)];
  if (!a) throw KernelError(be == Backend::cuda ? "cuda backend is not available" : "backend not available");
  return *a;
}

void register_device_memory(Backend be, DeviceMemory* mem) {
  g_alloc[static_cast<int>(be)] = new CachingAllocator(mem);
}

Storage* storage_new(Backend be, size_t bytes) {
  auto* s = new Storage();
  s->backend = be;
  s->bytes = bytes;
  try {
    s->ptr = allocator(be).alloc(bytes, &s->block_bytes);
  } catch (...) {
    delete s;
    throw;
  }
  return s;
}

void storage_retain(Storage* s) { s->refs.fetch_add(1); }

void storage_release(Storage* s) {
  if (s->refs.fetch_sub(1) == 1) {
    if (!s->external) allocator(s->backend).free(s->ptr, s->block_bytes);
    else if (s->on_release) s->on_release();
    delete s;
  }
}

}  // namespace sc

namespace sc {
namespace {
BackendInit g_inits[2] = {nullptr, nullptr};
BackendStatus* g_status[2] = {nullptr, nullptr};
}  // namespace

void register_backend_init(Backend be, BackendInit init) { g_inits[static_cast<int>(be)] = init; }

BackendStatus init_backend(Backend be) {
  const int i = static_cast<int>(be);
  if (!g_status[i]) {
    g_status[i] = new BackendStatus();
    if (be == Backend::cpu) {
      g_status[i]->available = true;
      g_status[i]->device_count = 1;
      g_status[i]->device_name = "cpu";
    } else if (g_inits[i]) {
      *g_status[i] = g_inits[i]();
    } else {
      g_status[i]->reason = "this build of scalpel has no CUDA backend (nvcc was not found at install time)";
    }
  }
  return *g_status[i];
}
}  // namespace sc
