// Progress line on stderr, only when stderr is a terminal.
#include "common/progress.h"

#include <unistd.h>

#include <cstdio>

namespace fp4z {

Progress::Progress(std::string l, uint64_t items, uint64_t bytes, bool quiet)
    : label(std::move(l)), total_items(items), total_bytes(bytes) {
  enabled = !quiet && isatty(STDERR_FILENO);
  start = last_draw = std::chrono::steady_clock::now();
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void Progress::advance(uint64_t items, uint64_t bytes, const std::string& current) {
  std::lock_guard<std::mutex> lk(mu);
  done_items += items;
  done_bytes += bytes;
  if (!enabled) return;
  auto now = std::chrono::steady_clock::now();
  if (done_items < total_items && now - last_draw < std::chrono::milliseconds(100)) return;
  last_draw = now;
  double t = elapsed_s();
  bool tokens = std::string(unit) == "tok";
  double rate = t > 0 ? double(done_bytes) / t : 0;
  double eta = (rate > 0 && total_bytes > done_bytes) ? double(total_bytes - done_bytes) / rate : 0;
  std::string cur = current.size() > 40 ? "…" + current.substr(current.size() - 39) : current;
  if (tokens)
    std::fprintf(stderr, "\r\033[K%s %llu/%llu  %.1f tok/s  ETA %.0fs  %s", label.c_str(),
                 (unsigned long long)done_items, (unsigned long long)total_items, rate, eta, cur.c_str());
  else
    std::fprintf(stderr, "\r\033[K%s %llu/%llu  %.0f MB/s  ETA %.0fs  %s", label.c_str(),
                 (unsigned long long)done_items, (unsigned long long)total_items, rate / 1e6, eta, cur.c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (!enabled) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

}  // namespace fp4z
