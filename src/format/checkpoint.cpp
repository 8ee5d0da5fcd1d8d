// Hugging Face checkpoint directories (single-file or sharded) and strict JSON file helpers.
#include "format/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_set>

#include "common/error.h"
#include "common/file_text.h"
#include "format/json_reader.h"

namespace fs = std::filesystem;

namespace fp4z {

nlohmann::ordered_json parse_json_strict(const std::string& text, const std::string& label) {
  return parse_json_linear(text, label);
}

nlohmann::ordered_json read_json_file(const std::string& path) { return parse_json_strict(read_whole_file(path), path); }

void write_json_file(const std::string& path, const nlohmann::ordered_json& j) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail_io(path + ": cannot create");
  out << j.dump(2) << "\n";
  out.close();
  if (!out) fail_io(path + ": write failed");
}

void copy_file_exact(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) fail_io("cannot copy " + from + " to " + to + ": " + ec.message());
}

void TensorRef::release() const { release_pages(file->map, size_t(data() - file->map.data), size_t(info->nbytes())); }

const TensorRef* Checkpoint::find(const std::string& name) const {
  auto it = by_name.find(name);
  return it == by_name.end() ? nullptr : &it->second;
}

const TensorRef& Checkpoint::get(const std::string& name) const {
  const TensorRef* r = find(name);
  if (!r) fail_input(dir + ": tensor '" + name + "' not found");
  return *r;
}

std::vector<std::string> Checkpoint::other_files() const {
  std::set<std::string> weights;
  for (const auto& f : files) weights.insert(fs::path(f->path()).filename().string());
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    std::string rel = fs::relative(it->path(), dir).string();
    if (weights.count(rel) || rel == "model.safetensors.index.json") continue;
    out.push_back(rel);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::unique_ptr<Checkpoint> open_checkpoint(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail_input(dir + ": not a directory");
  auto ck = std::make_unique<Checkpoint>();
  ck->dir = dir;
  std::string index_path = dir + "/model.safetensors.index.json";
  std::vector<std::string> shard_files;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index_path, ec)) {
    ck->sharded = true;
    auto idx = read_json_file(index_path);
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      fail_input(index_path + ": missing weight_map object");
    std::set<std::string> uniq;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail_input(index_path + ": weight_map value of '" + it.key() + "' is not a string");
      std::string f = it.value().get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        fail_input(index_path + ": shard name '" + f + "' is not a plain file name");
      weight_map[it.key()] = f;
      uniq.insert(f);
    }
    shard_files.assign(uniq.begin(), uniq.end());
  } else if (fs::exists(dir + "/model.safetensors", ec)) {
    shard_files.push_back("model.safetensors");
  } else {
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") shard_files.push_back(e.path().filename().string());
    if (shard_files.size() != 1)
      fail_input(dir + ": no model.safetensors or model.safetensors.index.json" +
                 std::string(shard_files.empty() ? "" : " (and several *.safetensors files without an index)"));
  }
  for (const auto& f : shard_files) {
    ck->files.push_back(open_safetensors(dir + "/" + f));
    const SafetensorsFile* sf = ck->files.back().get();
    ck->by_name.reserve(ck->by_name.size() + sf->tensors.size());
    ck->names.reserve(ck->names.size() + sf->tensors.size());
    for (size_t i : sf->by_offset) {
      const TensorInfo& t = sf->tensors[i];
      if (ck->sharded) {
        auto it = weight_map.find(t.name);
        if (it == weight_map.end()) fail_input(sf->path() + ": tensor '" + t.name + "' is not listed in the index");
        if (it->second != f) fail_input(sf->path() + ": tensor '" + t.name + "' is mapped to " + it->second + " by the index");
      }
      if (!ck->by_name.emplace(t.name, TensorRef{sf, &t}).second)
        fail_input(sf->path() + ": tensor '" + t.name + "' appears in more than one shard");
      ck->names.push_back(t.name);
    }
  }
  if (ck->sharded)
    for (const auto& [name, file] : weight_map)
      if (!ck->by_name.count(name)) fail_input(index_path + ": tensor '" + name + "' is missing from " + file);
  return ck;
}

}  // namespace fp4z
