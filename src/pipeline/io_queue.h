// A job's output writes and input read-ahead on one background thread, beside the encoding workers.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/byte_buffer.h"
#include "common/input_file.h"
#include "format/safetensors.h"

namespace fp4z {

// Buffered writes into the page cache take the file's lock and copy at memory speed on one core;
// done here they overlap the encoding of the next layer instead of following it. Read-ahead
// requests for the next layer (cold inputs) wait here for the disk instead of in a worker.
// Queued buffers are capped at kMaxQueuedBytes (submitters wait), so memory stays bounded by a few
// layers' outputs; written buffers come back through spare() with their capacity, so the steady
// state allocates nothing.
class IoQueue {
 public:
  static constexpr uint64_t kMaxQueuedBytes = 64ull << 20;

  explicit IoQueue(CheckpointWriter& w);
  IoQueue(const IoQueue&) = delete;
  IoQueue& operator=(const IoQueue&) = delete;
  ~IoQueue();  // stops after the job in progress (queued work is dropped on error paths)

  // Writes the whole tensor `name` from `bytes` (its size must match the tensor's).
  void write(const std::string& name, ByteBuffer&& bytes);
  // Writes bytes [at, at + n) of tensor `name` from `p`, which must stay valid and unchanged until a
  // later complete() of the same tensor has run (the queue is in order): a layer's output is written
  // piece by piece while the rest of it is still being encoded.
  void write_part(const std::string& name, uint64_t at, const uint8_t* p, uint64_t n);
  // Marks tensor `name` as written (all its parts queued before) and takes `buffer`, the memory the
  // parts were written from, to recycle it through spare() once they are done.
  void complete(const std::string& name, ByteBuffer&& buffer);
  // Copies the whole tensor `name` from `in` at `offset` (CheckpointWriter::copy_from).
  void copy(const std::string& name, const InputFile& in, uint64_t offset);
  // Starts reading [offset, offset + len) of `in` into the page cache (prefetch_input).
  void prefetch(const InputFile& in, uint64_t offset, uint64_t len);
  // Runs `task` on the background thread (e.g. copying the config and tokenizer files meanwhile).
  void call(std::function<void()> task);
  // A buffer that was written and can be refilled (capacity kept), or an empty one.
  ByteBuffer spare();
  // Waits until everything queued is done; rethrows the first failure.
  void finish();

 private:
  enum class Kind { kWrite, kWritePart, kComplete, kCopy, kPrefetch, kCall };
  struct Job {
    Kind kind;
    std::string name;
    ByteBuffer bytes;
    const InputFile* in = nullptr;
    uint64_t offset = 0, len = 0;
    std::function<void()> task = nullptr;
    const uint8_t* part = nullptr;  // kWritePart: not owned
  };
  void push(Job&& job);
  void run();

  CheckpointWriter& writer_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Job> jobs_;
  std::vector<ByteBuffer> spares_;
  uint64_t queued_bytes_ = 0;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace fp4z
