// MMLU multiple-choice evaluation with the published protocol (../shared/design/inference.md §4).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/forward.h"
#include "text/tokenizer.h"

namespace fp4z {

struct MmluQuestion {
  std::string question;
  std::array<std::string, 4> choices;
  int answer = 0;  // 0..3
};

// Reads a `question,choice0,choice1,choice2,choice3,answer` RFC-4180 CSV (header required).
std::vector<MmluQuestion> read_mmlu_csv(const std::string& path);

// The published default sample: 8 subjects, 5 questions each.
const std::vector<std::string>& mmlu_default_subjects();
// Every subject with a <data>/test/<subject>_test.csv file, alphabetically.
std::vector<std::string> mmlu_all_subjects(const std::string& data_dir);

// "The following are multiple choice questions (with answers) about <s>.\n\n"; `hendrycks_spacing`
// writes " " before every word (two spaces after "about") like the original script.
std::string mmlu_header(const std::string& subject, bool hendrycks_spacing);
// Question and choices verbatim; ends "\nAnswer: X\n\n" with the answer, or "\nAnswer:" without.
std::string mmlu_format(const MmluQuestion& q, bool with_answer);

struct MmluOptions {
  std::vector<std::string> subjects;
  int64_t limit_per_subject = 5;  // 0 = all
  int shots = 5;
  int64_t max_seq_len = 4096;
  bool hendrycks_spacing = false;
};

// One prepared prompt: its text, ids and the number of shots kept after truncation.
struct MmluPrompt {
  std::string subject;
  std::string text;
  std::vector<int32_t> ids;
  int shots = 0;
  int answer = 0;
};
// Builds the prompt of test question `q` of `subject` with the first `shots` dev rows, dropping
// the last shot while the prompt exceeds max_seq_len tokens.
MmluPrompt mmlu_prompt(const Tokenizer& tok, const std::string& subject, const std::vector<MmluQuestion>& dev,
                       const MmluQuestion& q, const MmluOptions& opt);

// Ids of " A", " B", " C", " D"; each must encode to a single token (Error exit 2 otherwise).
std::array<int32_t, 4> mmlu_letter_ids(const Tokenizer& tok);

struct MmluSubjectResult {
  std::string subject;
  int64_t correct = 0, total = 0;
};
struct MmluResult {
  std::vector<MmluSubjectResult> per_subject;
  int64_t correct = 0, total = 0;
  double accuracy = 0, stderr_acc = 0;
  int64_t tokens_forwarded = 0, tokens_reused = 0;
  double seconds = 0;
  std::vector<int> predictions;  // per question, in order
};

// One scored question, as lm-eval's --log_samples records it: what was asked and what the model said.
struct MmluSample {
  std::string subject;
  int64_t index = 0;  // row of the subject's test CSV (0-based)
  const MmluPrompt* prompt = nullptr;
  std::array<float, 4> choice_logits{};  // logits of " A" .. " D" after the prompt
  int prediction = 0, gold = 0;
};

// Runs the evaluation. The KV cache is reused across prompts for their longest common token
// prefix (the few-shot prefix within a subject). `progress(questions_done, tokens_forwarded)`;
// `on_sample` sees every question in order.
MmluResult run_mmlu(Session& s, const Tokenizer& tok, const std::string& data_dir, const MmluOptions& opt,
                    const std::function<void(int64_t total_questions, int64_t total_tokens)>& on_start,
                    const std::function<void(int64_t, int64_t)>& progress,
                    const std::function<void(const MmluSample&)>& on_sample = {});

}  // namespace fp4z
