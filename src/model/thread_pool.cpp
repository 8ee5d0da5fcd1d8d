// Persistent worker threads: one wake-up per parallel loop instead of one thread start.
#include "model/thread_pool.h"

namespace fp4z {

namespace {
// Bounded spin (~50-100 µs on current x86 cores) before falling back to the condition variable.
constexpr int kSpinPauses = 2048;
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads < 1) threads = 1;
  scratch_.resize(size_t(threads));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

float* ThreadPool::scratch(int thread, size_t floats) {
  auto& s = scratch_[size_t(thread)];
  if (s.size() < floats) s.resize(floats);
  return s.data();
}

void ThreadPool::drain(int index) {
  for (;;) {
    int64_t t = next_.fetch_add(1);
    if (t >= tasks_) return;
    try {
      (*fn_)(t, index);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_) error_ = std::current_exception();
      next_.store(tasks_);
      return;
    }
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    for (int i = 0; i < kSpinPauses && published_.load(std::memory_order_acquire) == seen; ++i) cpu_relax();
    {
      std::unique_lock<std::mutex> lk(mu_);
      wake_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    drain(index);
    {
      std::lock_guard<std::mutex> lk(mu_);
      running_.store(busy_ - 1, std::memory_order_release);
      if (--busy_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::run(int64_t tasks, const std::function<void(int64_t, int)>& fn) {
  if (tasks <= 0) return;
  if (workers_.empty() || tasks == 1) {
    for (int64_t t = 0; t < tasks; ++t) fn(t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    fn_ = &fn;
    tasks_ = tasks;
    next_.store(0);
    error_ = nullptr;
    busy_ = int(workers_.size());
    running_.store(busy_, std::memory_order_relaxed);
    ++generation_;
    published_.store(generation_, std::memory_order_release);
  }
  wake_.notify_all();
  drain(0);
  for (int i = 0; i < kSpinPauses && running_.load(std::memory_order_acquire) > 0; ++i) cpu_relax();
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, [&] { return busy_ == 0; });
    err = error_;
    fn_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace fp4z
