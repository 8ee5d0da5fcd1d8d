// Persistent worker threads for the forward pass (hundreds of parallel loops per token).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/aligned_vector.h"

namespace fp4z {

// Runs fn(task, thread) for task in [0, tasks) on `threads` threads (the caller is thread 0),
// dynamically scheduled, and returns when all tasks are done. Not reentrant.
struct ThreadPool {
  explicit ThreadPool(int threads);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();
  int size() const { return int(workers_.size()) + 1; }
  void run(int64_t tasks, const std::function<void(int64_t task, int thread)>& fn);
  // Per-thread scratch of at least `floats` floats (64-byte aligned), owned by the pool; only thread `thread` may
  // use its buffer (inside run) or the caller (outside run, thread 0).
  float* scratch(int thread, size_t floats);

 private:
  void worker_loop(int index);
  void drain(int index);
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  int busy_ = 0;
  // Lock-free mirrors of generation_ and busy_ (written under mu_), polled for a few microseconds
  // before sleeping: a generated token runs ~300 parallel loops, and a futex wake-up of an idle
  // vCPU costs more than the gap between two of them.
  std::atomic<uint64_t> published_{0};
  std::atomic<int> running_{0};
  bool stop_ = false;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
  std::vector<AlignedVector<float>> scratch_;
};

}  // namespace fp4z
