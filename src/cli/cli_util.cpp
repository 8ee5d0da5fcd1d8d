// Shared argument helpers of the subcommands.
#include "cli/cli_util.h"

#include <climits>

namespace fp4z::cli {

std::vector<int32_t> parse_token_ids(const std::string& text, const std::string& where) {
  std::vector<int32_t> ids;
  std::string cur;
  auto flush = [&]() {
    if (cur.empty()) return;
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(cur, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != cur.size() || v < 0 || v > INT32_MAX) fail_input(where + ": not a token id: \"" + cur + "\"");
    ids.push_back(int32_t(v));
    cur.clear();
  };
  for (char c : text) {
    if (c == ' ' || c == ',' || c == '\n' || c == '\r' || c == '\t' || c == '[' || c == ']') {
      flush();
    } else {
      cur.push_back(c);
    }
  }
  flush();
  return ids;
}

}  // namespace fp4z::cli
