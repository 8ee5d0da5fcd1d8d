// A job's output writes and input read-ahead on one background thread, beside the encoding workers.
#include "pipeline/io_queue.h"

#include <utility>

namespace fp4z {

namespace {
constexpr size_t kMaxSpares = 4;
}

IoQueue::IoQueue(CheckpointWriter& w) : writer_(w), thread_([this] { run(); }) {}

IoQueue::~IoQueue() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    jobs_.clear();
  }
  changed_.notify_all();
  thread_.join();
}

void IoQueue::push(Job&& job) {
  const uint64_t n = job.bytes.size();
  std::unique_lock<std::mutex> lk(mu_);
  // One job may exceed the cap on its own (a huge tensor); it then waits for an empty queue.
  changed_.wait(lk, [&] { return error_ || queued_bytes_ == 0 || queued_bytes_ + n <= kMaxQueuedBytes; });
  if (error_) std::rethrow_exception(error_);
  queued_bytes_ += n;
  jobs_.push_back(std::move(job));
  lk.unlock();
  changed_.notify_all();
}

void IoQueue::write(const std::string& name, ByteBuffer&& bytes) {
  Job j{Kind::kWrite, name, std::move(bytes)};
  push(std::move(j));
}

void IoQueue::write_part(const std::string& name, uint64_t at, const uint8_t* p, uint64_t n) {
  Job j{Kind::kWritePart, name, {}, nullptr, at, n};
  j.part = p;
  push(std::move(j));
}

void IoQueue::complete(const std::string& name, ByteBuffer&& buffer) {
  Job j{Kind::kComplete, name, std::move(buffer)};
  push(std::move(j));
}

void IoQueue::copy(const std::string& name, const InputFile& in, uint64_t offset) {
  Job j{Kind::kCopy, name, {}, &in, offset};
  push(std::move(j));
}

void IoQueue::prefetch(const InputFile& in, uint64_t offset, uint64_t len) {
  Job j{Kind::kPrefetch, {}, {}, &in, offset, len};
  push(std::move(j));
}

void IoQueue::call(std::function<void()> task) {
  Job j{Kind::kCall, {}, {}, nullptr, 0, 0, std::move(task)};
  push(std::move(j));
}

ByteBuffer IoQueue::spare() {
  std::lock_guard<std::mutex> lk(mu_);
  if (spares_.empty()) return {};
  ByteBuffer v = std::move(spares_.back());
  spares_.pop_back();
  return v;
}

void IoQueue::finish() {
  std::unique_lock<std::mutex> lk(mu_);
  changed_.wait(lk, [&] { return error_ || (jobs_.empty() && !busy_); });
  if (error_) std::rethrow_exception(error_);
}

void IoQueue::run() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    changed_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
    if (stop_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    busy_ = true;
    lk.unlock();
    std::exception_ptr err;
    try {
      switch (job.kind) {
        case Kind::kWrite: writer_.write(job.name, job.bytes.data(), job.bytes.size()); break;
        case Kind::kWritePart: writer_.write_part(job.name, job.offset, job.part, job.len); break;
        case Kind::kComplete: writer_.mark_written(job.name); break;
        case Kind::kCopy: writer_.copy_from(job.name, *job.in, job.offset); break;
        case Kind::kPrefetch: prefetch_input(*job.in, job.offset, job.len); break;
        case Kind::kCall: job.task(); break;
      }
    } catch (...) {
      err = std::current_exception();
    }
    lk.lock();
    busy_ = false;
    queued_bytes_ -= job.bytes.size();
    if (err && !error_) {
      error_ = err;
      jobs_.clear();
    }
    if (!err && job.bytes.capacity() >= (1u << 20) && spares_.size() < kMaxSpares) spares_.push_back(std::move(job.bytes));
    changed_.notify_all();
  }
}

}  // namespace fp4z
