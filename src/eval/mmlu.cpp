// MMLU: CSV reading, prompt construction and truncation, prefix-reusing scoring of the A-D letters.
#include "eval/mmlu.h"

#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/file_text.h"

namespace fp4z {

namespace {

// RFC-4180 records (quoted fields may hold commas, doubled quotes and newlines).
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, field_started = false;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
      } else {
        field += c;
      }
      ++i;
      continue;
    }
    if (c == '"' && field.empty() && !field_started) {
      quoted = true;
      field_started = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
      field_started = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      row.push_back(field);
      rows.push_back(row);
      row.clear();
      field.clear();
      field_started = false;
    } else {
      field += c;
      field_started = true;
    }
    ++i;
  }
  if (quoted) fail_input(path + ": unterminated quoted field");
  if (field_started || !field.empty() || !row.empty()) {
    row.push_back(field);
    rows.push_back(row);
  }
  return rows;
}


}  // namespace

std::vector<MmluQuestion> read_mmlu_csv(const std::string& path) {
  auto rows = parse_csv(read_whole_file(path), path);
  if (rows.empty() || rows[0].size() != 6 || rows[0][0] != "question" || rows[0][5] != "answer")
    fail_input(path + ": expected the header question,choice0,choice1,choice2,choice3,answer");
  std::vector<MmluQuestion> out;
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& f = rows[r];
    if (f.size() == 1 && f[0].empty()) continue;  // blank line
    if (f.size() != 6) fail_input(path + ": row " + std::to_string(r + 1) + " has " + std::to_string(f.size()) + " fields, expected 6");
    MmluQuestion q;
    q.question = f[0];
    for (int i = 0; i < 4; ++i) q.choices[size_t(i)] = f[size_t(1 + i)];
    if (f[5].size() != 1 || f[5][0] < '0' || f[5][0] > '3')
      fail_input(path + ": row " + std::to_string(r + 1) + " has answer \"" + f[5] + "\", expected 0-3");
    q.answer = f[5][0] - '0';
    out.push_back(std::move(q));
  }
  return out;
}

const std::vector<std::string>& mmlu_default_subjects() {
  static const std::vector<std::string> kDefault = {
      "abstract_algebra", "college_computer_science", "clinical_knowledge", "miscellaneous",
      "econometrics",     "sociology",                "philosophy",         "high_school_world_history"};
  return kDefault;
}

std::vector<std::string> mmlu_all_subjects(const std::string& data_dir) {
  std::vector<std::string> out;
  std::string dir = data_dir + "/test";
  DIR* d = opendir(dir.c_str());
  if (!d) fail_input(dir + ": cannot open the MMLU test directory");
  const std::string suffix = "_test.csv";
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(n.substr(0, n.size() - suffix.size()));
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string mmlu_header(const std::string& subject, bool hendrycks_spacing) {
  // Hendrycks: "about {}." with {} = "".join(" " + w for w in words) -> two spaces after "about".
  std::string s;
  if (hendrycks_spacing) {
    std::stringstream words(subject);
    std::string w;
    while (std::getline(words, w, '_')) s += " " + w;
  } else {
    s = subject;
    std::replace(s.begin(), s.end(), '_', ' ');
  }
  return "The following are multiple choice questions (with answers) about " + s + ".\n\n";
}

std::string mmlu_format(const MmluQuestion& q, bool with_answer) {
  static const char* kLetters[4] = {"A", "B", "C", "D"};
  std::string s = q.question;
  for (int i = 0; i < 4; ++i) s += std::string("\n") + kLetters[i] + ". " + q.choices[size_t(i)];
  s += "\nAnswer:";
  if (with_answer) s += std::string(" ") + kLetters[q.answer] + "\n\n";
  return s;
}

MmluPrompt mmlu_prompt(const Tokenizer& tok, const std::string& subject, const std::vector<MmluQuestion>& dev,
                       const MmluQuestion& q, const MmluOptions& opt) {
  MmluPrompt p;
  p.subject = subject;
  p.answer = q.answer;
  int k = std::min<int>(opt.shots, int(dev.size()));
  for (;;) {
    std::string text = mmlu_header(subject, opt.hendrycks_spacing);
    for (int i = 0; i < k; ++i) text += mmlu_format(dev[size_t(i)], true);
    text += mmlu_format(q, false);
    std::vector<int32_t> ids = tok.encode(text);
    if (int64_t(ids.size()) <= opt.max_seq_len || k == 0) {
      p.text = std::move(text);
      p.ids = std::move(ids);
      p.shots = k;
      return p;
    }
    --k;  // drop the last shot
  }
}

std::array<int32_t, 4> mmlu_letter_ids(const Tokenizer& tok) {
  std::array<int32_t, 4> ids{};
  const char* letters[4] = {" A", " B", " C", " D"};
  for (int i = 0; i < 4; ++i) {
    auto e = tok.encode(letters[i]);
    if (e.size() != 1)
      fail_input(std::string("the tokenizer encodes \"") + letters[i] + "\" as " + std::to_string(e.size()) +
                 " tokens; MMLU scoring needs single-token answer letters");
    ids[size_t(i)] = e[0];
  }
  return ids;
}

MmluResult run_mmlu(Session& s, const Tokenizer& tok, const std::string& data_dir, const MmluOptions& opt,
                    const std::function<void(int64_t, int64_t)>& on_start,
                    const std::function<void(int64_t, int64_t)>& progress,
                    const std::function<void(const MmluSample&)>& on_sample) {
  MmluResult r;
  const auto letters = mmlu_letter_ids(tok);
  const int64_t V = s.model().cfg.vocab;
  for (int32_t id : letters)
    if (id < 0 || id >= V) fail_input("answer letter id " + std::to_string(id) + " is outside the model's vocabulary");
  // Prepare every prompt first, so the progress line knows the token total.
  std::vector<MmluPrompt> prompts;
  for (const auto& subject : opt.subjects) {
    auto dev = read_mmlu_csv(data_dir + "/dev/" + subject + "_dev.csv");
    auto test = read_mmlu_csv(data_dir + "/test/" + subject + "_test.csv");
    int64_t n = opt.limit_per_subject > 0 ? std::min<int64_t>(opt.limit_per_subject, int64_t(test.size())) : int64_t(test.size());
    r.per_subject.push_back({subject, 0, n});
    for (int64_t i = 0; i < n; ++i) prompts.push_back(mmlu_prompt(tok, subject, dev, test[size_t(i)], opt));
  }
  // Tokens to forward: each prompt minus its common prefix with the previous one (at least 1).
  auto common = [](const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    size_t n = 0, m = std::min(a.size(), b.size());
    while (n < m && a[n] == b[n]) ++n;
    return n;
  };
  int64_t total_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    size_t reuse = i ? std::min(common(prompts[i - 1].ids, prompts[i].ids), prompts[i].ids.size() - 1) : 0;
    total_tokens += int64_t(prompts[i].ids.size() - reuse);
  }
  if (on_start) on_start(int64_t(prompts.size()), total_tokens);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> cached;  // the ids whose keys/values are in the session's cache
  std::vector<float> logits;
  size_t subj = 0;
  int64_t index_in_subject = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const MmluPrompt& p = prompts[i];
    if (p.ids.empty()) fail_input("empty MMLU prompt");
    if (r.per_subject[subj].subject != p.subject) index_in_subject = 0;
    while (r.per_subject[subj].subject != p.subject) ++subj;
    size_t reuse = std::min(common(cached, p.ids), p.ids.size() - 1);
    s.truncate(int64_t(reuse));
    s.forward(p.ids.data() + reuse, int64_t(p.ids.size() - reuse), 1, logits);
    cached = p.ids;
    r.tokens_forwarded += int64_t(p.ids.size() - reuse);
    r.tokens_reused += int64_t(reuse);
    int best = 0;
    for (int c = 1; c < 4; ++c)
      if (logits[size_t(letters[size_t(c)])] > logits[size_t(letters[size_t(best)])]) best = c;
    r.predictions.push_back(best);
    if (on_sample) {
      MmluSample sample;
      sample.subject = p.subject;
      sample.index = index_in_subject;
      sample.prompt = &p;
      for (int c = 0; c < 4; ++c) sample.choice_logits[size_t(c)] = logits[size_t(letters[size_t(c)])];
      sample.prediction = best;
      sample.gold = p.answer;
      on_sample(sample);
    }
    ++index_in_subject;
    if (best == p.answer) {
      ++r.correct;
      ++r.per_subject[subj].correct;
    }
    ++r.total;
    if (progress) progress(1, int64_t(p.ids.size() - reuse));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.accuracy = r.total ? double(r.correct) / double(r.total) : 0;
  r.stderr_acc = r.total > 1 ? std::sqrt(r.accuracy * (1 - r.accuracy) / double(r.total - 1)) : 0;
  return r;
}

}  // namespace fp4z
