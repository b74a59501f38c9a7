#include "storage.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#endif

namespace sc {
namespace {

// Host blocks of this size or more are page-aligned anonymous mappings (a multiple of the page
// size: round_size makes them multiples of 32 KB).
#ifdef __linux__
constexpr size_t kMapped = CachingAllocator::kMinSplitBlock;
#else
constexpr size_t kMapped = 0;  // no mappings of our own: blocks are not split
#endif

class HostMemory final : public DeviceMemory {
 public:
  HostMemory() {
#ifdef __GLIBC__
    // Blocks of a megabyte or more straight from mmap, freed back to the system on trim.
    // glibc's dynamic threshold otherwise rises to 32 MB after the first large frees, serving
    // activation-sized blocks from the heap, where a block the cache gives back stays in the
    // process (RSS) unless it happens to sit at the heap's top.
    mallopt(M_MMAP_THRESHOLD, CachingAllocator::kMinSplitBlock);
#endif
  }
  void* raw_alloc(size_t bytes) override {
#ifdef __linux__
    // Large blocks are mappings of our own, so that the cache can split them.
    if (bytes >= kMapped) {
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      return p == MAP_FAILED ? nullptr : p;
    }
#endif
    // 64-byte alignment: whole cache lines and aligned AVX-512 loads.
    return std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  }
  void raw_free(void* p, size_t bytes) override {
#ifdef __linux__
    if (bytes >= kMapped) {
      munmap(p, bytes);
      return;
    }
#endif
    std::free(p);
  }
  // Mapped blocks: any page-aligned part can be unmapped alone (raw_free of a part).
  bool blocks_splittable() const override { return kMapped > 0; }
  void* raw_grow(void* p, size_t old_bytes, size_t new_bytes) override {
#ifdef __linux__
    if (old_bytes >= kMapped && new_bytes >= old_bytes) {
      void* q = mremap(p, old_bytes, new_bytes, MREMAP_MAYMOVE);
      return q == MAP_FAILED ? nullptr : q;
    }
#endif
    return nullptr;
  }
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

void* CachingAllocator::hand_out_locked(void* p, size_t block) {
  stats_.bytes_in_use += block;
  stats_.live_storages++;
  if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
  if (stats_.bytes_in_use > high_water_) high_water_ = stats_.bytes_in_use;
  return p;
}

// Takes a block out of its bin (and out of bytes_cached; cache_locked puts one in); an emptied
// bin is dropped, since merged blocks come in many sizes.
void* CachingAllocator::pop_cached_locked(std::map<size_t, std::vector<void*>>::iterator it) {
  void* p = it->second.back();
  stats_.bytes_cached -= it->first;
  it->second.pop_back();
  if (it->second.empty()) free_.erase(it);
  cached_by_addr_.erase(static_cast<char*>(p));
  return p;
}

// Splittable blocks (see split_cached_locked) that touch in memory are cached as one: a freed
// block merges with a cached neighbour on either side, so a split block becomes whole again,
// and the large blocks a step needs stay available instead of being given back and mapped anew.
void CachingAllocator::cache_locked(void* ptr, size_t block) {
  stats_.bytes_cached += block;  // merging below moves cached bytes, it does not add any
  char* p = static_cast<char*>(ptr);
  if (mem_->blocks_splittable() && block >= kMinSplitBlock) {
    auto unbin = [&](char* q, size_t n) {
      const auto it = free_.find(n);
      it->second.erase(std::find(it->second.begin(), it->second.end(), q));
      if (it->second.empty()) free_.erase(it);
    };
    const auto next = cached_by_addr_.find(p + block);
    if (next != cached_by_addr_.end()) {
      unbin(next->first, next->second);
      block += next->second;
      cached_by_addr_.erase(next);
    }
    const auto after = cached_by_addr_.lower_bound(p);
    if (after != cached_by_addr_.begin()) {
      const auto prev = std::prev(after);
      if (prev->first + prev->second == p) {
        unbin(prev->first, prev->second);
        p = prev->first;
        block += prev->second;
        cached_by_addr_.erase(prev);
      }
    }
    cached_by_addr_[p] = block;
  }
  free_[block].push_back(p);
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
    const auto fit = free_.lower_bound(sz);
    if (fit != free_.end() && fit->first <= sz + sz / 8) {
      *block_bytes = fit->first;
      return hand_out_locked(pop_cached_locked(fit), *block_bytes);
    }
    // A miss. Cached blocks of other sizes count against the process too: keep what the
    // allocator holds (in use + cached) within 1/16 above the largest in use it ever had. (1/32
    // left too little room for a step's blocks to settle after a validation pass had split
    // them: CMUNeXt-S at 128 px b8 then faulted 8-10k fresh pages every step; with 1/16 it
    // settles at 50-250, SegFormer-B0 and CMUNeXt likewise, at the same peak RSS.)
    const size_t high = std::max<size_t>(static_cast<size_t>(high_water_), static_cast<size_t>(stats_.bytes_in_use) + sz);
    const size_t limit = high + high / 16;
    const bool over = static_cast<size_t>(stats_.bytes_in_use + stats_.bytes_cached) + sz > limit;
    if (mem_->blocks_splittable() && sz >= kMinSplitBlock)
      if (void* p = split_cached_locked(sz, block_bytes)) return hand_out_locked(p, *block_bytes);
    if (over) {
      // Every cached block is smaller than sz here (the split above failed). Fresh memory costs
      // a page fault per 4 KB touched (~2.8 us each on this VM, against 0.25 us to write a
      // resident page; 17k faults a SegFormer-B0 step at 128 px), so the largest cached block
      // is grown to sz instead, keeping its pages: only the growth is new.
      void* grown = nullptr;
      if (mem_->blocks_splittable() && sz >= kMinSplitBlock && !free_.empty() && free_.rbegin()->first >= kMinSplitBlock) {
        before_give_back();  // mremap may move the block
        const auto largest = std::prev(free_.end());
        const size_t have = largest->first;
        void* p = pop_cached_locked(largest);
        grown = mem_->raw_grow(p, have, sz);
        if (!grown) cache_locked(p, have);
      }
      // Giving cached blocks back (trim_locked: as little beyond the limit as it can) before
      // taking new memory beyond the limit. Without this the cache keeps a private set of blocks
      // per size and RSS grows by the fragmentation.
      const size_t held = static_cast<size_t>(stats_.bytes_in_use) + sz;
      trim_locked(limit > held ? limit - held : 0);
      if (grown) return hand_out_locked(grown, sz);
    }
  }
  void* p = mem_->raw_alloc(sz);
  if (!p) {
    empty_cache();  // under pressure: give every cached block back and try once more
    p = mem_->raw_alloc(sz);
    if (!p) throw KernelError("out of memory allocating " + std::to_string(bytes) + " bytes");
  }
  std::lock_guard<std::mutex> lk(m_);
  return hand_out_locked(p, sz);
}

void CachingAllocator::free(void* p, size_t block_bytes) {
  std::lock_guard<std::mutex> lk(m_);
  stats_.bytes_in_use -= block_bytes;
  stats_.live_storages--;
  cache_locked(p, block_bytes);
  if (static_cast<size_t>(stats_.bytes_cached) > cache_limit_) trim_locked(cache_limit_);
}

// A miss for a large block where blocks can be split (host mappings) takes the smallest cached
// block that is larger: its first sz bytes are handed out and the rest stays cached (a mapping
// can be unmapped in parts, so this needs no system call; a rest under kMinSplitBlock stays with
// the block). Otherwise, in a training step whose tensor sizes vary, the limit above had cached
// blocks of the wrong sizes given back and new ones mapped: a page fault per 4 KB touched, each
// page zeroed by the kernel, ~50k per CMUNeXt-S step at 128 px batch 8 and a third of its time.
// Splitting never adds system mappings beyond one per block (moving pages between blocks did
// remove more faults, but fragmented the mappings without bound).
void* CachingAllocator::split_cached_locked(size_t sz, size_t* block_bytes) {
  const auto it = free_.lower_bound(sz);
  if (it == free_.end()) return nullptr;
  const size_t have = it->first;
  char* p = static_cast<char*>(pop_cached_locked(it));
  if (have - sz >= kMinSplitBlock) {
    cache_locked(p + sz, have - sz);
    *block_bytes = sz;
  } else {
    *block_bytes = have;
  }
  return p;
}

// Gives cached blocks back until at most `limit` bytes stay, giving back as little beyond that as
// it can: the largest block smaller than what is still over, again, and at last the smallest
// block that covers the rest. Largest-first gave a 100 MB block back to make room for a 64 KB one:
// a validation pass between training epochs (other sizes, mostly small) left CMUNeXt-S's cache
// without its large blocks, and every later training step mapped and faulted ~17k pages afresh
// (4k before the pass).
void CachingAllocator::trim_locked(size_t limit) {
  if (!free_.empty() && static_cast<size_t>(stats_.bytes_cached) > limit) before_give_back();
  while (!free_.empty() && static_cast<size_t>(stats_.bytes_cached) > limit) {
    auto it = free_.lower_bound(static_cast<size_t>(stats_.bytes_cached) - limit);
    if (it != free_.begin()) --it;  // the largest block under the excess: no overshoot
    void* p = it->second.back();
    cached_by_addr_.erase(static_cast<char*>(p));
    mem_->raw_free(p, it->first);
    stats_.bytes_cached -= it->first;
    it->second.pop_back();
    if (it->second.empty()) free_.erase(it);
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
  if (!free_.empty()) before_give_back();
  for (auto& kv : free_)
    for (void* p : kv.second) mem_->raw_free(p, kv.first);
  free_.clear();
  cached_by_addr_.clear();
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
