// Minimal fork-join parallelism: run a loop body over index ranges on N threads.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fp4z {

// Number of threads to use when the user asked for `requested` (0 = all cores).
inline int resolve_threads(int requested) {
  if (requested > 0) return requested;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(n);
}

// Calls body(begin, end) on disjoint chunks of [0, n) from `threads` threads, dynamically
// scheduled in pieces of `grain`. Rethrows the first exception after all threads stop.
template <class F>
void parallel_for(size_t n, int threads, size_t grain, F&& body) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  int t = std::max(1, std::min<int>(threads, int((n + grain - 1) / grain)));
  if (t == 1) {
    body(size_t(0), n);
    return;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr err;
  std::mutex err_mu;
  auto worker = [&] {
    for (;;) {
      size_t b = next.fetch_add(grain);
      if (b >= n) return;
      try {
        body(b, std::min(n, b + grain));
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (!err) err = std::current_exception();
        next.store(n);
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < t; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace fp4z
