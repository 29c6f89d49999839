// cmd_tokenizer.cpp — `asclepius tokenizer train|encode`: a small SentencePiece model for the
// demo, trained on the distinct notes of CSV/JSONL/JSON files (or plain .txt), LLaMA conventions.
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
  auto* cmd = app.add_subcommand("tokenizer", "Train or try a SentencePiece tokenizer");
  cmd->require_subcommand(1);
  struct Opts {
    std::vector<std::string> inputs;
    int32_t vocab = 2000;
    std::string out, model, text;
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
  enc->add_option("--model", o->model, "tokenizer.model")->required()->check(CLI::ExistingFile);
  enc->add_option("text", o->text, "Text")->required();
  enc->callback([=] {
    Tokenizer tok(o->model);
    for (int32_t id : tok.encode(o->text)) std::cout << id << " ";
    std::cout << "\n";
  });
}

}  // namespace asc::cli
