// Device storage and the per-backend caching allocators.
//
// A Storage is a refcounted block of memory on one backend. JavaScript holds one reference per
// handle; views share the handle. Freed blocks go back to a size-bucketed cache so that a
// training loop reuses the same blocks every step instead of calling malloc/cudaMalloc.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernel.h"

namespace sc {

struct MemoryStats {
  int64_t live_storages = 0;
  int64_t bytes_in_use = 0;   // bytes held by live storages (rounded block sizes)
  int64_t bytes_cached = 0;   // freed blocks kept for reuse
  int64_t peak_bytes_in_use = 0;
};

// What a backend must provide to own memory. Copies are to/from host memory.
class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  virtual void* raw_alloc(size_t bytes) = 0;  // nullptr on out-of-memory
  virtual void raw_free(void* p, size_t bytes) = 0;  // bytes: as given to raw_alloc
  // Memory whose blocks of CachingAllocator::kMinSplitBlock bytes or more are page mappings:
  // raw_free may then be given any page-aligned part of such a block (the cache splits them).
  virtual bool blocks_splittable() const { return false; }
  // Grows a splittable block (as above) of old_bytes at p to new_bytes keeping the pages it has
  // (its contents are not needed): the new address, or nullptr with p untouched.
  virtual void* raw_grow(void* /*p*/, size_t /*old_bytes*/, size_t /*new_bytes*/) { return nullptr; }
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() {}
  // Milliseconds per call of fn over `iters` calls, timed the way the device measures best
  // (host clock here; CUDA events on the GPU backend).
  virtual double time_ms(const std::function<void()>& fn, int iters);
};

class CachingAllocator {
 public:
  explicit CachingAllocator(DeviceMemory* mem) : mem_(mem) {}
  // Blocks this large or larger may be split where the memory allows (blocks_splittable).
  static constexpr size_t kMinSplitBlock = size_t(1) << 20;
  void* alloc(size_t bytes, size_t* block_bytes);  // throws KernelError naming size on OOM
  void free(void* p, size_t block_bytes);
  void empty_cache();
  MemoryStats stats();
  void reset_peak();
  // Cached (freed, kept for reuse) bytes above this are given back at once (as trim_locked does).
  void set_cache_limit(size_t bytes);
  DeviceMemory* memory() { return mem_; }
  // Called (with the allocator's lock held) before a cached block is given back to the system or
  // moved: a freed block may still be named by kernel calls queued to run later (addon.cc's kernel
  // queue), which must run first. Handing a freed block to a new storage needs no such call: its
  // new owner's kernels are queued after the old ones. The hook must not allocate from here.
  void set_before_give_back(void (*hook)()) { before_give_back_ = hook; }

 private:
  static size_t round_size(size_t bytes);
  DeviceMemory* mem_;
  std::mutex m_;
  std::map<size_t, std::vector<void*>> free_;  // by block size, for best fit
  std::map<char*, size_t> cached_by_addr_;      // the cached splittable blocks, by address
  size_t cache_limit_ = SIZE_MAX;
  int64_t high_water_ = 0;  // the most bytes ever in use (resetPeak does not lower it)
  void (*before_give_back_)() = nullptr;
  void before_give_back() {
    if (before_give_back_) before_give_back_();
  }
  void trim_locked(size_t limit);
  void* hand_out_locked(void* p, size_t block);
  void* pop_cached_locked(std::map<size_t, std::vector<void*>>::iterator it);
  void cache_locked(void* p, size_t block);
  void* split_cached_locked(size_t sz, size_t* block_bytes);
  MemoryStats stats_;
};

struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;        // requested size
  size_t block_bytes = 0;  // allocator block size
  Backend backend = Backend::cpu;
  bool external = false;   // wraps memory owned elsewhere (not returned to the allocator)
  // JavaScript can read or write the bytes directly (a hostView was made, or external memory):
  // kernels naming it run at once, never from the kernel queue (addon.cc).
  std::atomic<bool> host_visible{false};
  std::function<void()> on_release;  // for external memory: lets the owner go
  std::atomic<int> refs{1};
};

// Registry of backends present in this build. CPU is always present.
bool backend_available(Backend be);
CachingAllocator& allocator(Backend be);
void register_device_memory(Backend be, DeviceMemory* mem);  // called by the CUDA backend

Storage* storage_new(Backend be, size_t bytes);
void storage_retain(Storage* s);
void storage_release(Storage* s);

}  // namespace sc

namespace sc {
// Optional backends (CUDA, real or emulated) register an initialiser that the addon calls once
// at load. It returns whether the backend is usable and, if not, why.
struct BackendStatus {
  bool available = false;
  bool emulated = false;
  int device_count = 0;
  std::string device_name;
  std::string reason;  // why it is unavailable (shown to users asking for it)
};
using BackendInit = BackendStatus (*)();
void register_backend_init(Backend be, BackendInit init);
BackendStatus init_backend(Backend be);  // runs the initialiser once; cached afterwards
}  // namespace sc
