// synthesis.h — the text side of upstream's data pipeline (preprocessing/): its prompts as
// files (data/synthesis/*.txt, built in; a user's own file works), Python str.format filling,
// the 8 tasks and their fixed example questions, the question bootstrapping's example draw
// (3 fixed samples + 2 from the pool of questions already made for the task), and the tidying
// of a model's reply. No libtorch: `asclepius synthesize` (tools/cli) runs the model.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace asc {

struct SynthPrompt {
  std::string name;   // a built-in name or the file's path
  std::string text;   // the template
  std::string xxh64;  // of text (every output row records it)

  // A built-in `<stage>-<name>` (data/synthesis/) or a file. The template's placeholders must be
  // exactly `fields`; throws asc::Error naming `where`, the file and the placeholder otherwise.
  static SynthPrompt resolve(const std::string& name_or_path, const std::string& stage,
                             const std::vector<std::string>& fields, const std::string& where);
  // Python's str.format with named fields: {name} -> value in one pass, {{ -> {, }} -> }.
  std::string fill(const std::map<std::string, std::string>& values) const;
};

// Python str.format's named fields of a template ({{ and }} skipped), in order of appearance.
// Throws naming `where` for a lone brace or a field that is not a plain name ({0}, {x!r}, ...).
std::vector<std::string> template_fields(const std::string& text, const std::string& where);

struct SynthTask {
  std::string name;
  std::vector<std::string> samples;  // the fixed example questions (upstream: 5)
};
// A built-in tasks file (`tasks-<name>`, data/synthesis/) or a path; at least 3 samples per task.
std::vector<SynthTask> load_synth_tasks(const std::string& name_or_path,
                                        std::string* xxh64 = nullptr);

// A seeded draw (splitmix64): the same on every machine and standard library.
class SynthRng {
 public:
  explicit SynthRng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  size_t below(size_t n);  // uniform in [0, n) (n > 0)
  // k distinct indices of [0, n) in draw order (Python's random.sample semantics).
  std::vector<size_t> sample(size_t n, size_t k);

 private:
  uint64_t state_;
};

// The example questions of one question prompt, as upstream's bootstrapping draws them: 3 of
// the task's fixed samples, then min(2, pool size) questions of the pool, in draw order.
std::vector<std::string> draw_examples(const SynthTask& task, const std::vector<std::string>& pool,
                                       uint64_t seed);

// A model's reply as a row's text: surrounding whitespace removed (the chat APIs upstream used
// return the message without it).
std::string tidy_reply(const std::string& reply);

// Upstream's answer filter (make_instruction_dataset.py) on one row: "self_reference" when note,
// question or answer mention a model of themselves ("AI language", "language model", ...,
// any case),
// "question_mark" when the answer ends with "?", "" to keep.
std::string upstream_filter_reason(const std::string& note, const std::string& question,
                                   const std::string& answer);

}  // namespace asc
