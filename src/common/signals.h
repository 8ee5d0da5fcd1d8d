// Interruption (SIGINT/SIGTERM/SIGHUP): staging outputs are removed and the process ends with 128+signal.
#pragma once
#include <mutex>
#include <string>

namespace fp4z {

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (so every thread started afterwards
// inherits the mask and no worker is interrupted half-way through a write) and starts one watcher
// thread that waits for them. On a signal the watcher removes every registered staging path,
// prints one line "fp4z COMMAND: interrupted by SIGxxx ..." and ends the process with 128+signal
// (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP). Call once from main before any thread starts.
void install_interrupt_handler(const std::string& command);

// Staging outputs (files or directory trees) that an interruption must remove.
void register_staging(const std::string& path);
void unregister_staging(const std::string& path);

// Held while a staging output is renamed into place, so an interruption either sees the rename
// complete (and leaves the published output alone) or not started (and removes the staging path).
std::unique_lock<std::mutex> lock_staging();

}  // namespace fp4z
