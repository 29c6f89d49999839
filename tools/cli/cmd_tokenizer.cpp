// cmd_tokenizer.cpp — `asclepius tokenizer train|encode`: a small SentencePiece model for the
// demo, trained on the distinct notes of CSV/JSONL/JSON files (or plain .txt), LLaMA conventions;
// the ids of a text under any tokenizer we read (data/tokenizer.h).
#include <iostream>

#include <cstdint>
#include <set>

#include "cli/commands.h"
#include "cli/output_path.h"
#include "common/fs.h"
#include "data/ingest.h"
#include "data/tokenizer.h"

namespace asc::cli {

void add_tokenizer(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "tokenizer", "Train a SentencePiece tokenizer, or try one (SentencePiece or tokenizer.json)");
  cmd->require_subcommand(1);
  struct Opts {
    std::vector<std::string> inputs;
    int32_t vocab = 2000;
    std::string out, model, text;
    bool decode = false;
  };
  auto o = std::make_shared<Opts>();
  auto* tr = cmd->add_subcommand("train", "Train a LLaMA-convention BPE model on notes");
  tr->add_option("--input", o->inputs, "Notes: .csv/.jsonl/.json (note column) or .txt")
      ->required()
      ->check(CLI::ExistingFile);
  tr->add_option("--vocab-size", o->vocab, "Vocabulary size")->check(CLI::Range(300, 1000000));
  tr->add_option("--out", o->out, "Output tok.model")->required();
  tr->callback([=] {
    check_output_file("--out", o->out, o->inputs);
    std::vector<std::string> texts;
    std::set<std::string> seen;
    for (const auto& in : o->inputs) {
      if (in.size() > 4 && in.compare(in.size() - 4, 4, ".txt") == 0) {
        texts.push_back(read_file(in));
        continue;
      }
      for (auto& r : read_note_records(in, {}))
        if (seen.insert(r.note).second) texts.push_back(std::move(r.note));
    }
    train_tokenizer(texts, {o->vocab, 0, "bpe"}, o->out);
    Tokenizer tok(o->out);
    std::cout << "trained " << o->out << ": " << tok.vocab_size() << " pieces from " << texts.size()
              << " texts; checksum " << tok.checksum() << "\n";
  });
  auto* enc = cmd->add_subcommand("encode", "Print the ids of a text (with BOS)");
  enc->add_flag("--decode", o->decode, "Also print the ids decoded back to text");
  enc->add_option("--model", o->model,
                  "tokenizer.model (SentencePiece), tokenizer.json (byte-level BPE) or a model "
                  "directory holding one")
      ->required()
      ->check(CLI::ExistingPath);
  enc->add_option("text", o->text, "Text")->required();
  enc->callback([=] {
    Tokenizer tok(o->model);
    const auto ids = tok.encode(o->text);
    for (int32_t id : ids) std::cout << id << " ";
    std::cout << "\n";
    if (o->decode) std::cout << tok.decode(ids) << "\n";
  });
}

}  // namespace asc::cli
