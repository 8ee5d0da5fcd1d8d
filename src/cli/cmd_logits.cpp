// `fp4z logits`: the engine's logits for given token ids, written as raw f32 [tokens, vocab] (for cross-engine tests).
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/parallel.h"
#include "common/staged_output.h"
#include "model/forward.h"
#include "model/model.h"

namespace fp4z::cli {

int cmd_logits(int argc, char** argv) {
  CLI::App app{"Run the engine on token ids and write the logits of every position as raw little-endian f32 [tokens, vocab]"};
  app.name("fp4z logits");
  std::string model_dir, ids_text, out;
  int threads = 0;
  bool int8_act = false, force = false;
  app.add_option("--model", model_dir, "checkpoint directory")->required();
  app.add_option("--prompt-ids", ids_text, "token ids, comma- or space-separated (no BOS is added)")->required();
  app.add_option("--out", out, "output file")->required();
  app.add_option("--threads", threads, "worker threads (0 = all cores)")->check(CLI::Range(0, 1024));
  app.add_flag("--int8-act", int8_act, "int8 activations in the NVFP4 prompt kernels (not the f32 reference)");
  app.add_flag("--force", force, "replace an existing output file");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  std::vector<int32_t> ids = parse_token_ids(ids_text, "--prompt-ids");
  if (ids.empty()) fail_input("--prompt-ids: no token ids given");
  StagedFile staged(out, force);
  auto model = load_model(model_dir);
  for (int32_t id : ids)
    if (id < 0 || id >= model->cfg.vocab)
      fail_input("--prompt-ids: token id " + std::to_string(id) + " is outside the vocabulary (" + std::to_string(model->cfg.vocab) + ")");
  EngineOptions eo;
  eo.threads = resolve_threads(threads);
  eo.isa = kernel_isa();
  eo.int8_act = int8_act;
  Session s(*model, eo);
  std::vector<float> logits;
  s.forward(ids.data(), int64_t(ids.size()), int64_t(ids.size()), logits);
  FILE* f = std::fopen(staged.temp.c_str(), "wb");
  if (!f) fail_io(staged.temp + ": cannot create file");
  bool ok = std::fwrite(logits.data(), sizeof(float), logits.size(), f) == logits.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok) fail_io(out + ": write failed");
  staged.commit();
  std::printf("logits of %zu positions x %lld tokens -> %s\n", ids.size(), (long long)model->cfg.vocab, out.c_str());
  return 0;
}

}  // namespace fp4z::cli
