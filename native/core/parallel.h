// A persistent thread pool shared by all CPU kernels. Workers are created once and park on a
// condition variable between jobs, so a kernel call costs a wake-up, not a thread spawn.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

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

// Column sums over rows [0, R) that do not depend on the thread count: the rows go in fixed
// chunks of rows_per_chunk (at least `grain` chunks per thread), chunk k adding each of its rows
// into its own zeroed `width` double partials (acc_row(row, partials)); the chunks' partials are
// then added in chunk order and done(j, total) receives column j's sum.
template <typename AccRow, typename Done>
void ordered_row_sums(int64_t R, int64_t width, int64_t rows_per_chunk, int64_t grain, AccRow acc_row, Done done) {
  const int64_t nchunks = (R + rows_per_chunk - 1) / rows_per_chunk;
  std::vector<double> part(static_cast<size_t>(nchunks * width), 0.0);
  parallel_for(0, nchunks, grain, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k)
      for (int64_t r = k * rows_per_chunk, re = std::min(R, r + rows_per_chunk); r < re; ++r) acc_row(r, part.data() + k * width);
  });
  for (int64_t j = 0; j < width; ++j) {
    double total = 0;
    for (int64_t k = 0; k < nchunks; ++k) total += part[k * width + j];
    done(j, total);
  }
}

}  // namespace sc
