// Error type carrying the process exit code, so library code can fail with the right status.
#pragma once
#include <stdexcept>
#include <string>

namespace fp4z {

// Exit codes used by every subcommand.
enum ExitCode : int {
  kExitOk = 0,
  kExitFindings = 1,  // a check ran and found problems
  kExitInput = 2,     // unreadable, malformed or hostile input; bad usage
  kExitInternal = 3,  // I/O failure while writing, or a bug
};

// Thrown for every user-visible failure. `what()` is one line, naming the file and the fault.
struct Error : std::runtime_error {
  int code;
  Error(int exit_code, const std::string& msg) : std::runtime_error(msg), code(exit_code) {}
};

// Malformed or unreadable input (exit code 2).
[[noreturn]] inline void fail_input(const std::string& msg) { throw Error(kExitInput, msg); }
// Failure while producing output (exit code 3).
[[noreturn]] inline void fail_io(const std::string& msg) { throw Error(kExitInternal, msg); }

}  // namespace fp4z
