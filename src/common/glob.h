// Python-fnmatch-compatible name patterns (POSIX: case-sensitive, '*' crosses dots, no escapes).
#pragma once
#include <string>
#include <vector>

namespace fp4z {

bool glob_match(const std::string& pattern, const std::string& name);
bool glob_match_any(const std::vector<std::string>& patterns, const std::string& name);

}  // namespace fp4z
