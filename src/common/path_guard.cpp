// Output-versus-input check by file identity (device, inode) of resolved paths and their ancestors.
#include "common/path_guard.h"

#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <utility>

#include "common/error.h"

namespace fs = std::filesystem;

namespace fp4z {
namespace {

struct Identity {
  dev_t dev;
  ino_t ino;
  bool operator==(const Identity& o) const { return dev == o.dev && ino == o.ino; }
};

// The identities of `path` (resolved) and of each of its existing ancestors, innermost first.
std::vector<std::pair<Identity, std::string>> chain_of(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec) p = fs::absolute(path).lexically_normal();
  std::vector<std::pair<Identity, std::string>> chain;
  for (fs::path at = p;; at = at.parent_path()) {
    struct stat st{};
    if (::stat(at.c_str(), &st) == 0) chain.push_back({Identity{st.st_dev, st.st_ino}, at.string()});
    if (at == at.parent_path()) break;
  }
  return chain;
}

std::optional<Identity> identity_of(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return Identity{st.st_dev, st.st_ino};
}

}  // namespace

void require_output_apart(const std::string& out, const std::vector<std::string>& inputs, const std::string& flag) {
  std::optional<Identity> out_id = identity_of(out);
  std::vector<std::pair<Identity, std::string>> out_chain = chain_of(out);
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    std::optional<Identity> in_id = identity_of(in);
    if (!in_id) continue;  // a missing input is reported by the command that reads it
    if (out_id && *out_id == *in_id)
      fail_input(flag + " " + out + ": is the input " + in + " (an output never replaces an input)");
    for (const auto& [id, where] : out_chain)
      if (id == *in_id)
        fail_input(flag + " " + out + ": lies inside the input " + in + " (an output never replaces an input)");
    if (out_id)
      for (const auto& [id, where] : chain_of(in))
        if (id == *out_id)
          fail_input(flag + " " + out + ": contains the input " + in + " (an output never replaces an input)");
  }
}

}  // namespace fp4z
