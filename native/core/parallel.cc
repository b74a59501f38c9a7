#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sc {
namespace {

thread_local bool tl_in_parallel = false;

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
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &chunk;
      njobs_ = nchunks;
      next_.store(1);  // chunk 0 runs on the caller
      done_ = 0;
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    run_chunk(0, chunk);
    int64_t i;
    while ((i = next_.fetch_add(1)) < nchunks) run_chunk(i, chunk);
    std::unique_lock<std::mutex> lk(m_);
    // Wait for every chunk and for every worker to leave this job, so that no worker can
    // carry a stale job pointer into the next run.
    done_cv_.wait(lk, [&] { return done_ == njobs_ && active_ == 0; });
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
    std::lock_guard<std::mutex> lk(m_);
    ++done_;
    if (done_ == njobs_) done_cv_.notify_all();
  }

  void worker() {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int64_t)>* job;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stopping_ || (generation_ != seen && job_ != nullptr); });
        if (stopping_) return;
        seen = generation_;
        job = job_;
        ++active_;
      }
      int64_t i;
      while ((i = next_.fetch_add(1)) < njobs_) run_chunk(i, *job);
      std::lock_guard<std::mutex> lk(m_);
      --active_;
      done_cv_.notify_all();
    }
  }

  void start_workers() {
    stopping_ = false;
    for (int t = 1; t < nthreads_; ++t) workers_.emplace_back([this] { worker(); });
  }
  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int nthreads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel region at a time
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t njobs_ = 0;
  std::atomic<int64_t> next_{0};
  int64_t done_ = 0;
  int active_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

}  // namespace

int num_threads() { return Pool::get().size(); }

void set_num_threads(int n) {
  if (n <= 0) n = (int)std::thread::hardware_concurrency();
  Pool::get().resize(n);
}

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (end <= begin) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t n = end - begin;
  const int nt = tl_in_parallel ? 1 : num_threads();
  int64_t chunks = std::min<int64_t>(nt, (n + grain - 1) / grain);
  if (chunks <= 1) {
    fn(begin, end);
    return;
  }
  const int64_t per = (n + chunks - 1) / chunks;
  chunks = (n + per - 1) / per;
  Pool::get().run(chunks, [&](int64_t c) {
    const int64_t b = begin + c * per;
    fn(b, std::min(end, b + per));
  });
}

}  // namespace sc
