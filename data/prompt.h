// prompt.h — instruction prompt templates as data (data/prompts/*.txt, built into the binary;
// a user's own file works too). A template holds {note} and {question} once each; render()
// substitutes them, after stripping leading/trailing newlines of both as upstream does, by
// concatenation (a note that itself contains "{question}" stays as written). No libtorch.
#pragma once

#include <string>
#include <vector>

namespace asc {

struct PromptTemplate {
  std::string name;   // a built-in name, or the file's path
  std::string text;   // the template
  std::string xxh64;  // of text: what a corpus records and a model's config.json carries
  // `strip`: the characters stripped from both ends of note and question ("\n" alone is
  // upstream's own strip("\n"), used with upstream_compat).
  std::string render(const std::string& note, const std::string& question,
                     const char* strip = "\r\n") const;

  // A built-in name (data/prompts/NAME.txt) or a file path. Throws asc::Error naming `where`
  // (the flag or recipe field) for an unknown name, a missing file, or a template without
  // exactly one {note} and one {question}.
  static PromptTemplate resolve(const std::string& name_or_path, const std::string& where);
  static PromptTemplate builtin(const std::string& name);  // throws for an unknown name
  // A template recorded elsewhere (a corpus, a model's config.json): checked as a file would be.
  static PromptTemplate from_text(const std::string& name, const std::string& text,
                                  const std::string& where);
};

// The built-in templates' names ("asclepius", "asclepius-space", ...).
std::vector<std::string> builtin_prompt_names();
constexpr const char* kDefaultPrompt = "asclepius";

std::string strip_newlines(const std::string& s, const char* chars = "\r\n");

}  // namespace asc
