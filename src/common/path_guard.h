// Keeps an output away from the inputs: an output path may not be, contain, or lie inside an input.
#pragma once
#include <string>
#include <vector>

namespace fp4z {

// Throws Error (exit 2, one line) when `out` names the same file or directory as one of `inputs`,
// a directory that contains one of them, or a path inside one of them. Symbolic links, "..", bind
// mounts and hard-linked files are seen through: paths are compared by the identity (device and
// inode) of every existing ancestor, not by spelling. `flag` names the option in the message.
// Every command that writes calls this before it creates anything.
void require_output_apart(const std::string& out, const std::vector<std::string>& inputs, const std::string& flag);

}  // namespace fp4z
