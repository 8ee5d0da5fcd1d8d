// Python-fnmatch-compatible name patterns via POSIX fnmatch without path or escape semantics.
#include "common/glob.h"

#include <fnmatch.h>

namespace fp4z {

bool glob_match(const std::string& pattern, const std::string& name) {
  return fnmatch(pattern.c_str(), name.c_str(), FNM_NOESCAPE) == 0;
}

bool glob_match_any(const std::vector<std::string>& patterns, const std::string& name) {
  for (const auto& p : patterns)
    if (glob_match(p, name)) return true;
  return false;
}

}  // namespace fp4z
