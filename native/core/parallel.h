// A persistent thread pool shared by all CPU kernels. Workers are created once and park on a
// condition variable between jobs, so a kernel call costs a wake-up, not a thread spawn.
#pragma once
#include <cstdint>
#include <functional>

namespace sc {

int num_threads();
void set_num_threads(int n);  // n <= 0: hardware concurrency (or SCALPEL_NUM_THREADS)

// Splits [begin, end) into at most num_threads() contiguous chunks of at least `grain`
// iterations and runs fn(chunk_begin, chunk_end) on them, the caller taking the first chunk.
// Nested calls run serially in the calling thread. Exceptions from any chunk are rethrown.
void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn);

// Like parallel_for, but in ceil((end - begin) / grain) chunks that the threads claim one at a
// time, for loops whose iterations are independent and whose chunks may run in any order on
// any thread (no per-thread partial buffers). Balances uneven or disturbed threads.
void parallel_for_dynamic(int64_t begin, int64_t end, int64_t grain,
                          const std::function<void(int64_t, int64_t)>& fn);

}  // namespace sc
