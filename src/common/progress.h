// Progress line on stderr (items i/N, MB/s, ETA), shown only when stderr is a terminal.
#pragma once
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace fp4z {

struct Progress {
  std::string label;
  uint64_t total_items = 0;
  uint64_t total_bytes = 0;
  uint64_t done_items = 0;
  uint64_t done_bytes = 0;
  bool enabled = false;
  const char* unit = "MB";  // what done_bytes counts; "tok" prints tokens/s instead of MB/s
  std::chrono::steady_clock::time_point start;
  std::chrono::steady_clock::time_point last_draw;
  std::mutex mu;

  // quiet=true, or stderr not a terminal, disables all output.
  Progress(std::string label, uint64_t items, uint64_t bytes, bool quiet);
  // Thread-safe; redraws at most ~10 times a second.
  void advance(uint64_t items, uint64_t bytes, const std::string& current = "");
  // Clears the line.
  void finish();
  double elapsed_s() const;
};

}  // namespace fp4z
