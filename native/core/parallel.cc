#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sc {
namespace {

thread_local bool tl_in_parallel = false;

// Spin budget of an idle thread before it blocks on a condition variable. A kernel call's
// parallel region lasts tens of microseconds to a few milliseconds and the next one follows
// after a few microseconds of JS; a futex wake-up on a virtualised host took longer than many
// whole regions (CMUNeXt's 64-channel grouped conv ran no faster on 2 threads than on 1), so
// workers keep polling for the next job for a while, and the caller polls for their
// completion. They pause, then yield, so a spinning worker gives its core to any other
// runnable thread (data-loading workers) and sleeps once the budget is spent.
int64_t spin_budget_ns() {
  static const int64_t ns = [] {
    const char* e = std::getenv("SCALPEL_SPIN_US");
    return (int64_t)(e ? std::max(0, std::atoi(e)) : 1000) * 1000;
  }();
  return ns;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls ready() for up to the spin budget; true when it became true.
template <typename F>
bool spin_until(F&& ready) {
  const int64_t budget = spin_budget_ns();
  if (budget <= 0) return ready();
  const int64_t t0 = now_ns();
  for (int i = 0;; ++i) {
    if (ready()) return true;
    if (i < 64) {
      cpu_relax();
      continue;
    }
    if ((i & 15) == 0 && now_ns() - t0 > budget) return ready();
    if (i > 2048) std::this_thread::yield(); else cpu_relax();
  }
}

class Pool {
 public:
  static Pool& get() {
    // Never destroyed: workers may outlive static destruction at process exit.
    static Pool* p = new Pool();
    return *p;
  }

  int size() const { return nthreads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    nthreads_ = std::max(1, n);
    start_workers();
  }

  void run(int64_t nchunks, const std::function<void(int64_t)>& chunk) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    bool wake;
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &chunk;
      njobs_ = nchunks;
      next_.store(1);  // chunk 0 runs on the caller
      done_.store(0);
      error_ = nullptr;
      generation_.fetch_add(1);
      wake = sleepers_ > 0;
    }
    if (wake) cv_.notify_all();
    run_chunk(0, chunk);
    int64_t i;
    while ((i = next_.fetch_add(1)) < nchunks) run_chunk(i, chunk);
    // Wait for every chunk and for every worker to leave this job, so that no worker can
    // carry a stale job pointer into the next run. The spin only shortens the wait: the check
    // that ends it is repeated under the mutex, in the same hold that clears job_, because a
    // worker takes the job (and counts itself active) under that mutex. Between a lock-free
    // check and the clearing, a late worker could take the pointer and, once the next run had
    // reset the chunk counter, call this run's destroyed function.
    auto finished = [&] { return done_.load() == njobs_ && active_.load() == 0; };
    spin_until(finished);
    std::unique_lock<std::mutex> lk(m_);
    if (!finished()) {
      caller_waiting_.store(true);
      done_cv_.wait(lk, finished);
      caller_waiting_.store(false);
    }
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  Pool() {
    int n = 0;
    if (const char* e = std::getenv("SCALPEL_NUM_THREADS")) n = std::atoi(e);
    if (n <= 0) n = (int)std::thread::hardware_concurrency();
    nthreads_ = std::max(1, n);
    start_workers();
  }

  void run_chunk(int64_t i, const std::function<void(int64_t)>& chunk) {
    tl_in_parallel = true;
    try {
      chunk(i);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m_);
      if (!error_) error_ = std::current_exception();
    }
    tl_in_parallel = false;
    done_.fetch_add(1);
  }

  // After a worker's last change to done_ / active_: wake the caller if it stopped spinning.
  // (seq_cst on both sides: either the caller's predicate sees the change, or this load sees
  // caller_waiting_ and the notify, taken under the mutex, reaches its wait.)
  void notify_caller() {
    if (!caller_waiting_.load()) return;
    std::lock_guard<std::mutex> lk(m_);
    done_cv_.notify_all();
  }

  void worker() {
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] { return stopping_.load() || generation_.load() != seen; });
      const std::function<void(int64_t)>* job;
      int64_t njobs;
      {
        std::unique_lock<std::mutex> lk(m_);
        ++sleepers_;
        cv_.wait(lk, [&] { return stopping_.load() || (generation_.load() != seen && job_ != nullptr); });
        --sleepers_;
        if (stopping_.load()) return;
        seen = generation_.load();
        job = job_;
        njobs = njobs_;
        active_.fetch_add(1);
      }
      int64_t i;
      while ((i = next_.fetch_add(1)) < njobs) run_chunk(i, *job);
      active_.fetch_sub(1);
      notify_caller();
    }
  }

  void start_workers() {
    stopping_.store(false);
    for (int t = 1; t < nthreads_; ++t) workers_.emplace_back([this] { worker(); });
  }
  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stopping_.store(true);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int nthreads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel region at a time
  std::mutex m_;          // guards job_, njobs_, error_, sleepers_ and the condition variables
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t njobs_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> active_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> caller_waiting_{false};
  int sleepers_ = 0;
  std::exception_ptr error_;
};

}  // namespace

int num_threads() { return Pool::get().size(); }

void set_num_threads(int n) {
  if (n <= 0) n = (int)std::thread::hardware_concurrency();
  Pool::get().resize(n);
}

namespace {

// fn over [begin, end) in chunks of `per` iterations, which the pool's threads claim one at a
// time; serially in the calling thread when one chunk covers the range.
void run_chunks(int64_t begin, int64_t end, int64_t per,
                const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t chunks = (end - begin + per - 1) / per;
  if (chunks <= 1) {
    fn(begin, end);
    return;
  }
  Pool::get().run(chunks, [&](int64_t c) {
    const int64_t b = begin + c * per;
    fn(b, std::min(end, b + per));
  });
}

}  // namespace

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (end <= begin) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t n = end - begin;
  const int nt = tl_in_parallel ? 1 : num_threads();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(nt, (n + grain - 1) / grain));
  run_chunks(begin, end, (n + chunks - 1) / chunks, fn);
}

void parallel_for_dynamic(int64_t begin, int64_t end, int64_t grain,
                          const std::function<void(int64_t, int64_t)>& fn) {
  if (end <= begin) return;
  const int nt = tl_in_parallel ? 1 : num_threads();
  // Chunks of `grain` claimed from a shared counter: a thread that starts late or runs slower
  // (another tenant on its core) takes fewer, and the region ends when the work does.
  run_chunks(begin, end, nt <= 1 ? end - begin : std::max<int64_t>(1, grain), fn);
}

}  // namespace sc
