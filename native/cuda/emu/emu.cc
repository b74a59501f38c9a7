// The CUDA emulator's scheduler, fibers and runtime calls. See emu.h for the model.
//
// Per block: one fiber per CUDA thread, run in passes over a schedule order. A fiber runs until
// it blocks (barrier, incomplete warp op) or exits. When no fiber is runnable, either every live
// thread waits at the same barrier (release it), or the block is stuck: that becomes a
// diagnostic naming file:line, never a hang. Errors abort the block by unwinding every suspended
// fiber (a Cancel exception thrown at its suspension point), so nothing leaks into the next launch.
#include "emu.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if !defined(__x86_64__)
#error "the CUDA emulator's context switch is written for x86-64 (SysV ABI)"
#endif

// Context switch: push the callee-saved registers and the FP control words on the current stack,
// store rsp in *save, load rsp from `load`, pop the same from there. No system calls (glibc's
// swapcontext saves the signal mask with two syscalls per switch: ~14x slower here).
// Frame layout from rsp upwards: [mxcsr | x87 cw][r15][r14][r13][r12][rbx][rbp][return address].
extern "C" void sc_emu_switch(void** save, void* load);
// First return target of a new fiber: r12 = argument, r13 = entry function (never returns).
extern "C" void sc_emu_fiber_start();
asm(R"(
  .text
  .p2align 4
  .globl sc_emu_switch
  .hidden sc_emu_switch
  .type sc_emu_switch, @function
sc_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size sc_emu_switch, .-sc_emu_switch

  .p2align 4
  .globl sc_emu_fiber_start
  .hidden sc_emu_fiber_start
  .type sc_emu_fiber_start, @function
sc_emu_fiber_start:
  .cfi_startproc
  .cfi_undefined rip
  movq %r12, %rdi
  callq *%r13
  ud2
  .cfi_endproc
  .size sc_emu_fiber_start, .-sc_emu_fiber_start
)");

// AddressSanitizer must be told about every stack switch, or it reports false errors (first of
// all when an exception unwinds a fiber stack).
#if defined(__SANITIZE_ADDRESS__)
#define SC_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SC_EMU_ASAN 1
#endif
#endif
#ifdef SC_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace sc {
namespace emu {
namespace {

#ifdef SC_EMU_ASAN
void asan_start(void** fake, const void* bottom, size_t size) { __sanitizer_start_switch_fiber(fake, bottom, size); }
void asan_finish(void* fake) { __sanitizer_finish_switch_fiber(fake, nullptr, nullptr); }
#else
void asan_start(void**, const void*, size_t) {}
void asan_finish(void*) {}
#endif

// Thrown into suspended fibers to unwind their stacks when a block is aborted.
struct Cancel {};

enum class St : uint8_t { ready, barrier, warp, done };

struct Fiber {
  void* sp = nullptr;
  char* map = nullptr;  // the stack mapping, guard page at its low end
  size_t map_size = 0;
  int index = 0;  // linear thread index in the block
  uint3 tid{};
  St st = St::ready;
  bool started = false;
  const char* file = nullptr;  // where it is blocked
  int line = 0;
  int bkind = 0, pred = 0;  // barrier flavour and predicate (__syncthreads_count & co.)
  WarpKind wkind = WarpKind::sync;
  unsigned mask = 0;
  int size = 0, arg = 0, width = 32;
  uint64_t val = 0, result = 0;
  void* asan_fake = nullptr;
  const char* stack_lo() const { return map + size_t(sysconf(_SC_PAGESIZE)); }
  size_t stack_size() const { return map_size - size_t(sysconf(_SC_PAGESIZE)); }
  ~Fiber() {
    if (map) munmap(map, map_size);
  }
};

size_t stack_bytes() {
  static const size_t bytes = [] {
    const char* e = std::getenv("SCALPEL_EMU_STACK_KB");
    long kb = e ? std::atol(e) : 0;
    return size_t(kb >= 16 ? kb : 256) * 1024;  // generous: debug builds of kernels are stack-hungry
  }();
  return bytes;
}

struct Job {
  LaunchSpec spec;
  uint64_t nblocks = 0;
  int nthreads = 0;
  Schedule sched = Schedule::forward;
  uint64_t seed = 0, launch_no = 0;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex m;
  uint64_t err_block = UINT64_MAX;
  std::exception_ptr err;
};

// Everything a worker needs to run one block; thread_local because each worker runs its own.
struct Runner {
  std::vector<std::unique_ptr<Fiber>> fibers;  // grows to the largest block seen, then reused
  std::vector<int> order;
  uint32_t arrived[32] = {}, exited[32] = {}, exist[32] = {};  // per-warp lane masks
  struct alignas(16) Chunk { unsigned char b[16]; };
  std::vector<Chunk> smem;
  unsigned char* smem_ptr = nullptr;
  void* sched_sp = nullptr;
  void* sched_fake = nullptr;  // ASan bookkeeping for the worker's own stack
  const void* sched_lo = nullptr;
  size_t sched_size = 0;
  Fiber* cur = nullptr;
  const Job* job = nullptr;
  int n = 0, live = 0;
  int pos = -1;        // position in `order` of the running pass
  uint64_t fpctl = 0;  // the worker's mxcsr | x87 control word << 32, for new fibers
  bool cancelling = false;
  std::exception_ptr error;  // first exception thrown by a kernel thread of this block
  uint64_t rng = 0;
};
// Hot paths reach the runner through a plain pointer: a thread_local object with a constructor
// would cost a TLS-init wrapper call on every barrier. The owner frees stacks at thread exit.
thread_local Runner* tlr = nullptr;
thread_local std::unique_ptr<Runner> tl_owner;
Runner& runner() {
  if (!tlr) {
    tl_owner = std::make_unique<Runner>();
    tlr = tl_owner.get();
#ifdef SC_EMU_ASAN
    pthread_attr_t a;
    void* lo = nullptr;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
      pthread_attr_getstack(&a, &lo, &tlr->sched_size);
      pthread_attr_destroy(&a);
    }
    tlr->sched_lo = lo;
#endif
  }
  return *tlr;
}

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string where(const char* file, int line) { return std::string(file) + ":" + std::to_string(line); }
std::string tstr(uint3 t) {
  return "(" + std::to_string(t.x) + "," + std::to_string(t.y) + "," + std::to_string(t.z) + ")";
}
const char* op_name(WarpKind k) {
  switch (k) {
    case WarpKind::sync: return "__syncwarp";
    case WarpKind::ballot: return "__ballot_sync";
    case WarpKind::any: return "__any_sync";
    case WarpKind::all: return "__all_sync";
    case WarpKind::shfl_idx: return "__shfl_sync";
    case WarpKind::shfl_up: return "__shfl_up_sync";
    case WarpKind::shfl_down: return "__shfl_down_sync";
    case WarpKind::shfl_xor: return "__shfl_xor_sync";
  }
  return "?";
}
const char* barrier_name(int kind) {
  static const char* names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and",
                                "__syncthreads_or"};
  return names[kind & 3];
}
std::string hex(unsigned m) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", m);
  return b;
}

[[noreturn]] void fail(const std::string& what) {
  const Runner& r = runner();
  std::string msg = "cuda-emu: " + what;
  if (r.job) {
    msg += " [block " + tstr(blockIdx) + " of kernel launched at " +
           where(r.job->spec.file, r.job->spec.line) + "]";
  }
  throw KernelError(msg);
}

void on_exit(Runner& r, int i);
void fiber_main(Fiber* f);

// Makes `f` the running thread; a fiber that never ran gets a fresh frame whose `ret` lands in
// sc_emu_fiber_start, with the worker's FP control words (so FTZ/rounding settings carry over).
Fiber* prepare(Runner& r, Fiber* f) {
  if (!f->started) {
    // Stagger the stack tops (64 B steps within a page): identical page offsets for every fiber
    // would put all their hot frames into the same few L1 sets.
    char* top = f->map + f->map_size - (size_t(f->index) * 64 % 4096);
    uint64_t* sp = reinterpret_cast<uint64_t*>(top) - 8;
    sp[0] = r.fpctl;
    sp[1] = sp[2] = sp[5] = sp[6] = 0;
    sp[3] = reinterpret_cast<uint64_t>(&fiber_main);
    sp[4] = reinterpret_cast<uint64_t>(f);
    sp[7] = reinterpret_cast<uint64_t>(&sc_emu_fiber_start);
    f->sp = sp;
    f->started = true;
  }
  r.cur = f;
  threadIdx = f->tid;
  return f;
}

// The next runnable thread of the current pass, or null when the pass is over.
Fiber* next_ready(Runner& r) {
  while (++r.pos < r.n) {
    Fiber* f = r.fibers[r.order[r.pos]].get();
    if (f->st == St::ready) return f;
  }
  return nullptr;
}

// Called on fiber `f` once it has blocked or exited: switch straight to the next runnable thread
// of the pass (one switch instead of two through the scheduler), or back to the scheduler when
// the pass is over, an error is pending or the block is being cancelled.
void leave(Runner& r, Fiber* f, bool exiting) {
  Fiber* g = (r.error || r.cancelling) ? nullptr : next_ready(r);
  void** fake = exiting ? nullptr : &f->asan_fake;
  if (g) {
    prepare(r, g);
    asan_start(fake, g->stack_lo(), g->stack_size());
    sc_emu_switch(&f->sp, g->sp);
  } else {
    r.cur = nullptr;
    asan_start(fake, r.sched_lo, r.sched_size);
    sc_emu_switch(&f->sp, r.sched_sp);
  }
  asan_finish(f->asan_fake);
}

void fiber_main(Fiber* f) {
  asan_finish(nullptr);
  Runner& r = *tlr;
  try {
    r.job->spec.body(r.job->spec.ctx);
  } catch (const Cancel&) {
  } catch (...) {
    if (!r.error) r.error = std::current_exception();
  }
  f->st = St::done;
  --r.live;
  if (!r.error && !r.cancelling) on_exit(r, f->index);
  leave(r, f, true);
  __builtin_unreachable();
}

// Called on the scheduler's stack: run `f` (and whatever it chains to) until control comes back.
void resume(Runner& r, Fiber* f) {
  prepare(r, f);
  asan_start(&r.sched_fake, f->stack_lo(), f->stack_size());
  sc_emu_switch(&r.sched_sp, f->sp);
  asan_finish(r.sched_fake);
  r.cur = nullptr;
}

// Called on a fiber: block until some other party makes it runnable and resumes it.
void suspend(Runner& r, Fiber* f) {
  leave(r, f, false);
  if (r.cancelling) throw Cancel{};
}

Fiber* current(const char* what, const char* file, int line) {
  Fiber* f = tlr ? tlr->cur : nullptr;
  if (!f) throw KernelError(std::string("cuda-emu: ") + what + " called outside a kernel at " + where(file, line));
  return f;
}

// A warp op completes once every existing lane named in the mask has either arrived with the
// same op and mask or exited. Reads from lanes that did not take part (exited, not named,
// beyond the block) return all-ones bits (NaN for floats) so the garbage a GPU returns shows.
bool try_complete(Runner& r, int w, unsigned mask) {
  unsigned eff = mask & r.exist[w], part = eff & r.arrived[w];
  if ((eff & ~(r.arrived[w] | r.exited[w])) || !part) return false;
  Fiber* lanes[32];
  Fiber* first = nullptr;
  for (unsigned p = part; p; p &= p - 1) {
    int l = __builtin_ctz(p);
    Fiber* g = r.fibers[w * 32 + l].get();
    lanes[l] = g;
    if (!first) first = g;
    if (g->mask != mask || g->wkind != first->wkind || g->size != first->size ||
        g->width != first->width)
      return false;  // left waiting; reported as a mismatch if the block gets stuck
  }
  uint64_t ballot = 0;
  for (unsigned p = part; p; p &= p - 1)
    if (lanes[__builtin_ctz(p)]->val) ballot |= 1ull << __builtin_ctz(p);
  for (unsigned p = part; p; p &= p - 1) {
    int l = __builtin_ctz(p);
    Fiber* g = lanes[l];
    int wd = g->width, lo = l & ~(wd - 1), hi = lo + wd - 1, j = l;
    switch (g->wkind) {
      case WarpKind::sync: g->result = 0; break;
      case WarpKind::ballot: g->result = ballot; break;
      case WarpKind::any: g->result = ballot != 0; break;
      case WarpKind::all: g->result = ballot == part; break;
      case WarpKind::shfl_idx: j = lo + (g->arg & (wd - 1)); break;
      case WarpKind::shfl_up: j = l - g->arg < lo ? l : l - g->arg; break;
      case WarpKind::shfl_down: j = l + g->arg > hi ? l : l + g->arg; break;
      case WarpKind::shfl_xor: j = (l ^ g->arg) > hi ? l : (l ^ g->arg); break;
    }
    if (g->wkind >= WarpKind::shfl_idx)
      g->result = (j == l) ? g->val : (j >= 0 && j < 32 && (part >> j & 1)) ? lanes[j]->val : ~0ull;
    g->st = St::ready;
  }
  r.arrived[w] &= ~part;
  return true;
}

void on_exit(Runner& r, int i) {
  int w = i >> 5;
  r.exited[w] |= 1u << (i & 31);
  // An exit may be the last thing a pending warp op was waiting for.
  for (unsigned p = r.arrived[w]; p; p &= p - 1) {
    int l = __builtin_ctz(p);
    if (r.arrived[w] >> l & 1) try_complete(r, w, r.fibers[w * 32 + l]->mask);
  }
}

// Unwind every suspended fiber so that no kernel thread is left half-run.
void abort_block(Runner& r) {
  r.cancelling = true;
  for (int i = 0; i < r.n; ++i) {
    Fiber* f = r.fibers[i].get();
    if (f->st != St::done && f->started) resume(r, f);
    f->st = St::done;
  }
  r.cancelling = false;
  r.error = nullptr;
}

std::string describe_group(const std::vector<Fiber*>& g) {
  return std::to_string(g.size()) + (g.size() == 1 ? " thread " : " threads (first ") +
         tstr(g[0]->tid) + (g.size() == 1 ? "" : ")");
}

// No fiber can run and some are alive: release a barrier or explain why the block is stuck.
void resolve_stall(Runner& r) {
  // Fast path: everybody waits at one barrier (the common case, once per barrier).
  Fiber* b0 = r.fibers[0].get();
  bool same = b0->st == St::barrier;
  int count = 0;
  for (int i = 0; i < r.n && same; ++i) {
    Fiber* f = r.fibers[i].get();
    same = f->st == St::barrier && f->bkind == b0->bkind && f->line == b0->line &&
           (f->file == b0->file || !std::strcmp(f->file, b0->file));
    count += f->pred;
  }
  if (same) {
    int kind = b0->bkind;
    uint64_t result = uint64_t(kind == 1 ? count : kind == 2 ? count == r.n : kind == 3 ? count > 0 : 0);
    for (int i = 0; i < r.n; ++i) {
      r.fibers[i]->st = St::ready;
      r.fibers[i]->result = result;
    }
    return;
  }
  std::vector<Fiber*> exited, warp;
  std::vector<std::vector<Fiber*>> sites;  // barrier waiters grouped by site
  for (int i = 0; i < r.n; ++i) {
    Fiber* f = r.fibers[i].get();
    if (f->st == St::done) {
      exited.push_back(f);
    } else if (f->st == St::warp) {
      warp.push_back(f);
    } else {
      auto it = std::find_if(sites.begin(), sites.end(), [f](const std::vector<Fiber*>& s) {
        return s[0]->line == f->line && s[0]->bkind == f->bkind && !std::strcmp(s[0]->file, f->file);
      });
      if (it == sites.end()) sites.push_back({f}); else it->push_back(f);
    }
  }
  if (!warp.empty()) {
    Fiber* f = warp[0];
    int w = f->index >> 5;
    std::string msg = "warp deadlock: thread " + tstr(f->tid) + " (warp " + std::to_string(w) +
                      " lane " + std::to_string(f->index & 31) + ") waits in " + op_name(f->wkind) +
                      "(mask " + hex(f->mask) + ") at " + where(f->file, f->line) + ", but";
    int listed = 0, more = 0;
    for (unsigned p = f->mask & r.exist[w] & ~r.exited[w]; p; p &= p - 1) {
      Fiber* g = r.fibers[w * 32 + __builtin_ctz(p)].get();
      std::string why;
      if (g->st == St::barrier)
        why = " waits at " + std::string(barrier_name(g->bkind)) + " at " + where(g->file, g->line);
      else if (g->mask != f->mask || g->wkind != f->wkind || g->size != f->size || g->width != f->width)
        why = " waits in " + std::string(op_name(g->wkind)) + "(mask " + hex(g->mask) + ", width " +
              std::to_string(g->width) + ") at " + where(g->file, g->line) +
              (g->mask != f->mask ? " (mismatched mask)" : " (mismatched operation)");
      else
        continue;
      if (listed++ < 3) msg += (listed > 1 ? ";" : "") + std::string(" lane ") + std::to_string(g->index & 31) + why;
      else ++more;
    }
    if (!listed) msg += " its lanes cannot complete it";
    if (more) msg += "; and " + std::to_string(more) + " more lanes";
    fail(msg);
  }
  if (!exited.empty()) {
    Fiber* f = sites[0][0];
    fail("barrier divergence: " + describe_group(sites[0]) + " wait at " + barrier_name(f->bkind) +
         " at " + where(f->file, f->line) + ", but " + describe_group(exited) +
         " exited the kernel without reaching it");
  }
  std::string msg = "barrier divergence: threads wait at different barriers:";
  for (size_t k = 0; k < sites.size() && k < 4; ++k)
    msg += (k ? ";" : "") + std::string(" ") + describe_group(sites[k]) + " at " +
           barrier_name(sites[k][0]->bkind) + " " + where(sites[k][0]->file, sites[k][0]->line);
  fail(msg);
}

void run_block(const Job& j, uint64_t linear) {
  Runner& r = runner();
  const dim3 g = j.spec.grid, b = j.spec.block;
  blockIdx = {unsigned(linear % g.x), unsigned(linear / g.x % g.y), unsigned(linear / g.x / g.y)};
  blockDim = b;
  gridDim = g;
  r.job = &j;
  r.n = j.nthreads;
  const size_t sb = stack_bytes(), page = size_t(sysconf(_SC_PAGESIZE));
  while (int(r.fibers.size()) < r.n) {
    auto f = std::make_unique<Fiber>();
    void* m = mmap(nullptr, sb + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) throw KernelError("cuda-emu: cannot map a fiber stack");
    mprotect(m, page, PROT_NONE);  // guard page: an overflow faults instead of corrupting
    f->map = static_cast<char*>(m);
    f->map_size = sb + page;
    r.fibers.push_back(std::move(f));
  }
  for (int i = 0; i < r.n; ++i) {
    Fiber* f = r.fibers[i].get();
    f->index = i;
    f->tid = {unsigned(i % b.x), unsigned(i / b.x % b.y), unsigned(i / b.x / b.y)};
    f->st = St::ready;
    f->started = false;
  }
  int nw = (r.n + 31) / 32;
  for (int w = 0; w < nw; ++w) {
    r.arrived[w] = r.exited[w] = 0;
    r.exist[w] = (r.n - w * 32 >= 32) ? ~0u : (1u << (r.n - w * 32)) - 1;
  }
  r.order.resize(r.n);
  for (int i = 0; i < r.n; ++i) r.order[i] = j.sched == Schedule::reverse ? r.n - 1 - i : i;
  // Dynamic shared memory: fresh NaN bytes for every block, so reads of unwritten entries show.
  r.smem.resize((j.spec.smem + 15) / 16 + 1);
  std::memset(r.smem.data(), 0xff, r.smem.size() * 16);
  r.smem_ptr = r.smem.data()->b;
  r.rng = j.seed ^ (j.launch_no * 0x9e3779b97f4a7c15ull) ^ (linear * 0xc2b2ae3d27d4eb4full);
  r.error = nullptr;
  r.live = r.n;
  {
    uint32_t csr;
    uint16_t cw;
    asm volatile("stmxcsr %0" : "=m"(csr));
    asm volatile("fnstcw %0" : "=m"(cw));
    r.fpctl = csr | (uint64_t(cw) << 32);
  }
  try {
    while (r.live > 0) {
      // One pass: the threads run in schedule order, each handing over to the next runnable one.
      if (j.sched == Schedule::random)
        for (int i = r.n - 1; i > 0; --i) std::swap(r.order[i], r.order[splitmix(r.rng) % (i + 1)]);
      r.pos = -1;
      if (Fiber* f = next_ready(r)) {
        resume(r, f);
        if (r.error) std::rethrow_exception(r.error);
      } else {
        resolve_stall(r);  // nothing runnable: release a barrier or report why the block is stuck
      }
    }
  } catch (...) {
    abort_block(r);
    r.job = nullptr;
    throw;
  }
  r.job = nullptr;
}

void work(Job& j) {
  for (;;) {
    if (j.failed.load(std::memory_order_relaxed)) return;
    uint64_t blk = j.next.fetch_add(1);
    if (blk >= j.nblocks) return;
    try {
      run_block(j, blk);
    } catch (...) {
      // Keep the lowest failing block: every lower block was taken earlier and ran to its end,
      // so the report does not depend on worker timing.
      std::lock_guard<std::mutex> lk(j.m);
      if (blk < j.err_block) {
        j.err_block = blk;
        j.err = std::current_exception();
      }
      j.failed = true;
    }
  }
}

// Settings, read from the environment once.
struct Settings {
  std::atomic<int> sched{int(Schedule::forward)};
  std::atomic<uint64_t> seed{0};
  std::atomic<int> workers{2};
  Settings() {
    if (const char* s = std::getenv("SCALPEL_EMU_SCHEDULE")) {
      std::string v = s;
      if (v == "reverse") sched = int(Schedule::reverse);
      else if (v == "random") sched = int(Schedule::random);
      else if (v != "forward" && !v.empty())
        std::fprintf(stderr, "scalpel: unknown SCALPEL_EMU_SCHEDULE '%s', using forward\n", s);
    }
    if (const char* s = std::getenv("SCALPEL_EMU_SEED"); s && *s) seed = std::strtoull(s, nullptr, 0);
    if (const char* s = std::getenv("SCALPEL_EMU_WORKERS"); s && *s) workers = std::max(1, std::atoi(s));
#ifdef SC_EMU_STATIC_SHARED
    workers = 1;
#endif
  }
};
Settings& settings() {
  static Settings s;
  return s;
}

// Helper threads for launches with several blocks; the launching thread is worker 0. Leaked on
// purpose: joining at process exit (e.g. when Node unloads the addon) buys nothing.
struct Pool {
  std::mutex m;
  std::condition_variable wake, idle;
  std::vector<std::thread> threads;
  Job* job = nullptr;
  uint64_t gen = 0;
  int busy = 0;
  bool stop = false;

  void resize(int n) {
    if (int(threads.size()) == n) return;
    {
      std::lock_guard<std::mutex> lk(m);
      stop = true;
    }
    wake.notify_all();
    for (auto& t : threads) t.join();
    threads.clear();
    stop = false;
    // A new thread starts from the current generation, so it cannot miss the next job.
    for (int i = 0; i < n; ++i) threads.emplace_back([this, g = gen] { loop(g); });
  }
  void loop(uint64_t seen) {
    for (;;) {
      Job* j;
      {
        std::unique_lock<std::mutex> lk(m);
        wake.wait(lk, [&] { return stop || gen != seen; });
        if (stop) return;
        seen = gen;
        j = job;
      }
      work(*j);
      std::lock_guard<std::mutex> lk(m);
      if (--busy == 0) idle.notify_all();
    }
  }
};
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}
std::mutex launch_mutex;  // one grid at a time: the pool and its job slot are shared
std::atomic<uint64_t> launch_count{0};

}  // namespace

void set_schedule(Schedule s, uint64_t seed) {
  settings().sched = int(s);
  settings().seed = seed;
}
Schedule schedule() { return Schedule(settings().sched.load()); }
uint64_t seed() { return settings().seed; }
const char* schedule_name(Schedule s) {
  return s == Schedule::forward ? "forward" : s == Schedule::reverse ? "reverse" : "random";
}
void set_workers(int n) {
#ifdef SC_EMU_STATIC_SHARED
  n = 1;
#endif
  settings().workers = std::max(1, std::min(n, 64));
}
int workers() { return settings().workers; }

int barrier(const char* file, int line, int kind, int pred) {
  Fiber* f = current(barrier_name(kind), file, line);
  f->st = St::barrier;
  f->file = file;
  f->line = line;
  f->bkind = kind;
  f->pred = pred != 0;
  suspend(*tlr, f);
  return int(f->result);
}

uint64_t warp_op(const char* file, int line, WarpKind kind, unsigned mask, uint64_t value, int size,
                 int arg, int width) {
  Fiber* f = current(op_name(kind), file, line);
  Runner& r = *tlr;
  int lane = f->index & 31, w = f->index >> 5;
  if (!(mask >> lane & 1))
    fail(std::string(op_name(kind)) + " at " + where(file, line) + ": thread " + tstr(f->tid) +
         " (lane " + std::to_string(lane) + ") is not in its own mask " + hex(mask));
  if (width < 1 || width > 32 || (width & (width - 1)))
    fail(std::string(op_name(kind)) + " at " + where(file, line) + ": width " +
         std::to_string(width) + " is not a power of two up to 32");
  f->st = St::warp;
  f->file = file;
  f->line = line;
  f->wkind = kind;
  f->mask = mask;
  f->val = value;
  f->size = size;
  f->arg = arg;
  f->width = width;
  r.arrived[w] |= 1u << lane;
  // The last lane to arrive completes the op and runs on; the others are resumed by the scheduler.
  if (!try_complete(r, w, mask)) suspend(r, f);
  return f->result;
}

unsigned activemask() {
  if (!tlr || !tlr->cur) return 0;
  Runner& r = *tlr;
  int w = r.cur->index >> 5;
  return r.exist[w] & ~r.exited[w];
}

unsigned char* dyn_smem() { return tlr && tlr->cur ? tlr->smem_ptr : nullptr; }

void launch(const LaunchSpec& spec) {
  const dim3 g = spec.grid, b = spec.block;
  auto cfg = [&](const std::string& why) {
    throw KernelError("cuda-emu: invalid launch configuration at " + where(spec.file, spec.line) +
                      ": " + why + " (grid (" + std::to_string(g.x) + "," + std::to_string(g.y) +
                      "," + std::to_string(g.z) + "), block (" + std::to_string(b.x) + "," +
                      std::to_string(b.y) + "," + std::to_string(b.z) + "), " +
                      std::to_string(spec.smem) + " B shared)");
  };
  if (tlr && tlr->cur) cfg("kernel launched from inside a kernel (dynamic parallelism is not emulated)");
  uint64_t nthreads = uint64_t(b.x) * b.y * b.z;
  if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z) cfg("empty grid or block");
  if (nthreads > 1024 || b.z > 64) cfg("more than 1024 threads per block or block.z > 64");
  if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) cfg("grid dimension out of range");
  if (spec.smem > 227 * 1024) cfg("more than 227 KiB of dynamic shared memory");

  std::lock_guard<std::mutex> guard(launch_mutex);
  Job j;
  j.spec = spec;
  j.nblocks = uint64_t(g.x) * g.y * g.z;
  j.nthreads = int(nthreads);
  j.sched = schedule();
  j.seed = seed();
  j.launch_no = launch_count++;
  Pool& p = pool();
  bool helpers = j.nblocks > 1 && workers() > 1;
  if (helpers) {
    p.resize(workers() - 1);
    std::lock_guard<std::mutex> lk(p.m);
    p.job = &j;
    p.busy = int(p.threads.size());
    ++p.gen;
  }
  if (helpers) p.wake.notify_all();
  work(j);
  if (helpers) {
    std::unique_lock<std::mutex> lk(p.m);
    p.idle.wait(lk, [&] { return p.busy == 0; });
    p.job = nullptr;
  }
  if (j.err) std::rethrow_exception(j.err);
}

}  // namespace emu
}  // namespace sc

// ---- Runtime API ----
struct CUstream_st {};
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
  bool recorded = false;
};
namespace {
thread_local cudaError_t last_error = cudaSuccess;
cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) last_error = e;
  return e;
}
}  // namespace

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (!p) return set_error(cudaErrorInvalidValue);
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  void* m = std::aligned_alloc(256, (bytes + 255) / 256 * 256);  // cudaMalloc aligns to 256
  if (!m) return set_error(cudaErrorMemoryAllocation);
  std::memset(m, 0xff, bytes);  // device memory is not zeroed: make reads of unwritten data NaN
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) { return cudaMalloc(p, bytes); }
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) { return cudaFree(p); }
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes && (!dst || !src)) return set_error(cudaErrorInvalidValue);
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, k);
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (bytes && !p) return set_error(cudaErrorInvalidValue);
  if (bytes) std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  return cudaMemset(p, value, bytes);
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  if (!s) return set_error(cudaErrorInvalidValue);
  *s = new CUstream_st;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return last_error; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}
cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return set_error(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int* device) {
  if (!device) return set_error(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (!p) return set_error(cudaErrorInvalidValue);
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "scalpel CUDA emulator (%d CPU workers)", sc::emu::workers());
  p->totalGlobalMem = size_t(8) << 30;
  p->sharedMemPerBlock = 48 * 1024;
  p->sharedMemPerBlockOptin = 227 * 1024;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->multiProcessorCount = sc::emu::workers();
  p->major = 8;
  p->minor = 0;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  if (!e) return set_error(cudaErrorInvalidValue);
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
// Launches are synchronous, so the host clock at record time is the event's time.
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (!e) return set_error(cudaErrorInvalidResourceHandle);
  e->t = std::chrono::steady_clock::now();
  e->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  return e ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  return e ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!ms) return set_error(cudaErrorInvalidValue);
  if (!a || !b || !a->recorded || !b->recorded) return set_error(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
