// MMLU protocol: CSV reading, prompt text and Qwen3 token ids of a known question (ids from PyPI
// `tokenizers` 0.23.3), shot truncation, and an end-to-end `fp4z eval mmlu` run on a
// generated Qwen3-shaped model whose first prediction is checked against the numpy oracle.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "eval/mmlu.h"
#include "text/tokenizer.h"
#include "test_util.h"

namespace fp4z {
namespace {

using fp4z::testing::kFixtures;
using fp4z::testing::TempDir;
const std::string kSrc = fp4z::testing::kSourceDir;
const std::string kMmlu = kFixtures + "/eval/mmlu";
const std::string kQwenTok = kFixtures + "/qwen3-tokenizer";

// Stdout of cmd (stderr is kept apart); rc is its exit status.
std::string run_capture(const std::string& cmd, int& rc) {
  fp4z::testing::CommandResult r = fp4z::testing::run_command(cmd);
  rc = r.code;
  return r.out;
}

uint64_t fnv1a(const std::vector<int32_t>& ids) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int32_t i : ids) {
    h ^= uint64_t(uint32_t(i));
    h *= 0x100000001b3ull;
  }
  return h;
}

TEST(Mmlu, CsvHasAllQuestions) {
  auto subjects = mmlu_all_subjects(kMmlu);
  ASSERT_EQ(subjects.size(), 57u);
  size_t test = 0, dev = 0;
  for (const auto& s : subjects) {
    test += read_mmlu_csv(kMmlu + "/test/" + s + "_test.csv").size();
    dev += read_mmlu_csv(kMmlu + "/dev/" + s + "_dev.csv").size();
  }
  EXPECT_EQ(test, 14042u);
  EXPECT_EQ(dev, 285u);
  auto d = read_mmlu_csv(kMmlu + "/dev/abstract_algebra_dev.csv");
  ASSERT_EQ(d.size(), 5u);
  EXPECT_EQ(d[1].question,
            "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
            "subgroups of G then HK is a subgroup of G.");
  EXPECT_EQ(d[1].choices[0], "True, True");
  EXPECT_EQ(d[1].answer, 1);
}

TEST(Mmlu, HeaderSpacing) {
  EXPECT_EQ(mmlu_header("abstract_algebra", false),
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n");
  EXPECT_EQ(mmlu_header("abstract_algebra", true),
            "The following are multiple choice questions (with answers) about  abstract algebra.\n\n");
}

TEST(Mmlu, KnownQuestionPromptAndQwen3Ids) {
  auto tok = load_tokenizer(kQwenTok);
  auto letters = mmlu_letter_ids(*tok);
  EXPECT_EQ(letters, (std::array<int32_t, 4>{362, 425, 356, 422}));
  auto dev = read_mmlu_csv(kMmlu + "/dev/abstract_algebra_dev.csv");
  auto test = read_mmlu_csv(kMmlu + "/test/abstract_algebra_test.csv");
  ASSERT_EQ(test.size(), 100u);
  MmluOptions o;
  o.shots = 0;
  MmluPrompt p0 = mmlu_prompt(*tok, "abstract_algebra", dev, test[0], o);
  EXPECT_EQ(p0.text,
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
            "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
            "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:");
  EXPECT_EQ(p0.answer, 1);
  // Hugging Face tokenizers (PyPI 0.23.3) Tokenizer.encode(text, add_special_tokens=False).ids
  const std::vector<int32_t> want0 = {785,  2701, 525,   5248, 5754,  4755, 320, 4197, 11253, 8,   911, 8115, 46876,
                                      382,  9885, 279,   8381, 369,   279,  2661, 2070, 8894, 1207, 83073, 7,   17,
                                      701,  17946, 7,    18,   701,   17946, 7,   16,   23,   593, 916, 1207, 624,
                                      32,   13,   220,   15,   198,   33,   13,  220,  19,   198, 34,  13,  220,
                                      17,   198,  35,    13,   220,   21,   198, 16141, 25};
  EXPECT_EQ(p0.ids, want0);
  o.shots = 5;
  MmluPrompt p5 = mmlu_prompt(*tok, "abstract_algebra", dev, test[0], o);
  EXPECT_EQ(p5.shots, 5);
  EXPECT_EQ(p5.ids.size(), 342u);
  EXPECT_EQ(fnv1a(p5.ids), 0x044f47c29866b427ull);
  const std::string item = p0.text.substr(mmlu_header("abstract_algebra", false).size());
  ASSERT_GT(p5.text.size(), item.size());
  EXPECT_EQ(p5.text.substr(p5.text.size() - item.size()), item);
  const std::string first_shot = mmlu_header("abstract_algebra", false) + mmlu_format(dev[0], true);
  EXPECT_EQ(p5.text.substr(0, first_shot.size()), first_shot);
  EXPECT_EQ(mmlu_format(dev[0], true), "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n");
  // Truncation: drop the last shots until the prompt fits.
  o.max_seq_len = 200;
  MmluPrompt pt = mmlu_prompt(*tok, "abstract_algebra", dev, test[0], o);
  EXPECT_LT(pt.shots, 5);
  EXPECT_LE(pt.ids.size(), 200u);
  MmluOptions more = o;
  more.shots = pt.shots + 1;
  more.max_seq_len = 1 << 20;
  EXPECT_GT(mmlu_prompt(*tok, "abstract_algebra", dev, test[0], more).ids.size(), 200u);
  // 0-shot prompts are used even when too long.
  o.max_seq_len = 10;
  EXPECT_EQ(mmlu_prompt(*tok, "abstract_algebra", dev, test[0], o).shots, 0);
}

TEST(Mmlu, EndToEndOnGeneratedQwen3Model) {
  TempDir tmp;
  std::string dir = tmp.path + "/m";
  ASSERT_EQ(std::system(("/usr/bin/python3 " + kSrc + "/tests/oracle_forward.py make --arch qwen3-vocab --weights ct --out " + dir).c_str()), 0);
  ASSERT_EQ(std::system(("cp " + kQwenTok + "/tokenizer.json " + kQwenTok + "/tokenizer_config.json " + dir + "/").c_str()), 0);
  int rc = 0;
  std::string out = run_capture(std::string(FP4Z_BINARY) + " eval mmlu --model " + dir + " --data " + kMmlu +
                                    " --subjects abstract_algebra,sociology --limit-per-subject 2 --threads 2 --json",
                                rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["num_examples"], 4);
  EXPECT_EQ(j["num_subjects"], 2);
  EXPECT_EQ(j["per_subject"]["abstract_algebra"]["total"], 2);
  EXPECT_EQ(j["per_subject"]["sociology"]["total"], 2);
  EXPECT_GT(j["tokens_reused"].get<int64_t>(), 300);  // the 5-shot prefix is reused for question 2
  ASSERT_EQ(j["predictions"].size(), 4u);
  double acc = j["accuracy"];
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  // The oracle's last-position logits of the first prompt give the same letter.
  auto tok = load_tokenizer(kQwenTok);
  auto dev = read_mmlu_csv(kMmlu + "/dev/abstract_algebra_dev.csv");
  auto test = read_mmlu_csv(kMmlu + "/test/abstract_algebra_test.csv");
  MmluPrompt p = mmlu_prompt(*tok, "abstract_algebra", dev, test[0], MmluOptions{});
  {
    std::ofstream f(tmp.path + "/ids.txt");
    for (int32_t id : p.ids) f << id << " ";
  }
  ASSERT_EQ(std::system(("/usr/bin/python3 " + kSrc + "/tests/oracle_forward.py logits --last --model " + dir + " --tokens @" +
                         tmp.path + "/ids.txt --out " + tmp.path + "/l.bin").c_str()),
            0);
  std::ifstream lf(tmp.path + "/l.bin", std::ios::binary);
  std::vector<float> l(151936);
  lf.read(reinterpret_cast<char*>(l.data()), std::streamsize(l.size() * 4));
  const int32_t letters[4] = {362, 425, 356, 422};
  int best = 0;
  for (int c = 1; c < 4; ++c)
    if (l[size_t(letters[c])] > l[size_t(letters[best])]) best = c;
  EXPECT_EQ(j["predictions"][0].get<int>(), best);
}

}  // namespace
}  // namespace fp4z
