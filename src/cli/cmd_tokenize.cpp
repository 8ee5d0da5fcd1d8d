// `fp4z tokenize`: encode text to ids (or decode ids to text) with a model directory's tokenizer.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "text/tokenizer.h"
#include "common/file_text.h"

namespace fp4z::cli {
namespace {


// Ids separated by spaces, commas, newlines or JSON brackets.

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  CLI::App app{"Encode text to token ids (or decode ids to text) with <model>/tokenizer.json", "fp4z tokenize"};
  std::string model_dir, file;
  std::vector<std::string> args;
  bool decode = false, as_json = false, add_bos = false;
  app.add_option("--model", model_dir, "model directory holding tokenizer.json")->required();
  app.add_option("input", args, "text to encode (or ids to decode with --decode)");
  app.add_option("--file", file, "read the text (or the ids) from this file instead");
  app.add_flag("--decode", decode, "decode token ids to text");
  app.add_flag("--json", as_json, "print JSON (ids and pieces, or the decoded text)");
  app.add_flag("--bos", add_bos, "prepend the model's BOS id when it expects one (llama2.c / Llama)");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  if (!file.empty() && !args.empty()) fail_input("give the input either as arguments or with --file, not both");
  if (file.empty() && args.empty()) fail_input("nothing to " + std::string(decode ? "decode" : "encode") + ": give TEXT or --file F");
  if (!decode && args.size() > 1) fail_input("give the text as one argument (quote it)");

  auto tok = load_tokenizer(model_dir);
  if (decode) {
    std::vector<int32_t> ids;
    if (!file.empty()) {
      ids = parse_token_ids(read_whole_file(file), file);
    } else {
      for (const auto& a : args) {
        auto part = parse_token_ids(a, "argument");
        ids.insert(ids.end(), part.begin(), part.end());
      }
    }
    for (int32_t id : ids) {
      if (size_t(id) >= tok->vocab_size()) {
        fail_input("token id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(tok->vocab_size()) + ")");
      }
    }
    std::string text = tok->decode(ids);
    if (as_json) {
      nlohmann::json j = {{"text", text}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fputc('\n', stdout);
    }
    return 0;
  }

  std::string text = file.empty() ? args[0] : read_whole_file(file);
  std::vector<int32_t> ids;
  if (add_bos && tok->bos_id() >= 0) ids.push_back(tok->bos_id());
  auto body = tok->encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  if (as_json) {
    nlohmann::json pieces = nlohmann::json::array();
    // Each piece as it appears in the decoded text: the text the id adds after its predecessor
    // (so decoder steps that act only at the start, like Llama's leading-space strip, apply once).
    for (size_t k = 0; k < ids.size(); ++k) {
      std::string alone = tok->decode({ids[k]});
      if (k == 0) {
        pieces.push_back(alone);
        continue;
      }
      std::string before = tok->decode({ids[k - 1]});
      std::string both = tok->decode({ids[k - 1], ids[k]});
      pieces.push_back(both.compare(0, before.size(), before) == 0 ? both.substr(before.size()) : alone);
    }
    nlohmann::json j = {{"ids", ids}, {"pieces", pieces}, {"count", ids.size()}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::string line;
    for (size_t k = 0; k < ids.size(); ++k) {
      if (k) line.push_back(' ');
      line += std::to_string(ids[k]);
    }
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace fp4z::cli
