// cmd_corpus.cpp — `asclepius corpus build|inspect`: notes files -> the HDF5 corpus, and a look
// inside one (attributes, counts, length statistics, one decoded sample).
#include <algorithm>

#include <cstdint>
#include <iostream>
#include <numeric>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/output_path.h"
#include "common/error.h"
#include "data/corpus.h"
#include "data/tokenizer.h"

namespace asc::cli {

namespace {

// `corpus build`: notes (CSV/JSONL/JSON) tokenised into corpus.h5.
void add_build(CLI::App* cmd) {
  auto o = std::make_shared<CorpusBuildOptions>();
  auto columns = std::make_shared<std::vector<std::string>>();
  auto* b = cmd->add_subcommand("build", "Tokenise notes (CSV/JSONL/JSON) into corpus.h5");
  b->add_option("--input", o->inputs, "Notes files")->required()->check(CLI::ExistingFile);
  b->add_option("--tokenizer", o->tokenizer,
                "tokenizer.model (SentencePiece), tokenizer.json (byte-level BPE) or a model "
                "directory holding one")
      ->required()
      ->check(CLI::ExistingPath);
  b->add_option("--stage", o->stage,
                "pretrain (distinct notes) or instruct (note, question, answer)")
      ->check(CLI::IsMember({"pretrain", "instruct"}));
  b->add_option("--out", o->out, "Output corpus.h5")->required();
  b->add_option("--max-len", o->max_len,
                "instruct: longest example in tokens (notes are cut to fit)")
      ->check(CLI::Range(int64_t(16), int64_t(1) << 24));
  b->add_option("--prompt-template", o->prompt_template,
                "instruct: a built-in prompt template (" +
                    fmt::format("{}", fmt::join(builtin_prompt_names(), ", ")) +
                    ") or a template file (data/prompts/README.md)");
  b->add_flag("--upstream-compat", o->upstream_compat,
              "instruct: upstream's collator arithmetic (loss from the prompt's last token, "
              "examples cut from the right at --max-len; docs/data-format.md)");
  b->add_flag("--upstream-filters", o->upstream_filters,
              "instruct: drop rows mentioning a model of themselves ('AI language', 'language "
              "model', ...) and answers ending with '?', as upstream's "
              "make_instruction_dataset.py");
  b->add_option("--seed", o->seed, "pretrain: seed of the note order");
  b->add_option("--threads", o->threads, "Tokeniser threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  b->add_option("--column", *columns, "Column mapping LOGICAL=NAME, e.g. note=patient");
  b->add_flag("--skip-bad", o->ingest.skip_bad, "Skip (and count) bad records instead of stopping");
  b->add_flag("--convert-deid", o->ingest.convert_deid,
              "MIMIC de-identification placeholders ([**Last Name**], ...) in notes converted as "
              "upstream's convert_deid_tag.py (Asclepius-R on real notes)");
  b->add_option("--exclude", o->exclude,
                "File of note ids (one a line) whose records are left out (docs/provenance.md)")
      ->check(CLI::ExistingFile);
  b->add_flag("--exclude-allow-unknown", o->exclude_allow_unknown,
              "With --exclude: ids that match no record are reported, not refused");
  b->callback([=] {
    std::vector<std::string> inputs = o->inputs;
    inputs.push_back(o->tokenizer);
    if (o->stage != "instruct" &&
        (o->upstream_compat || o->upstream_filters || o->prompt_template != kDefaultPrompt))
      ASC_FAIL(
          "--prompt-template, --upstream-compat and --upstream-filters apply to --stage instruct "
          "only");
    check_output_file("--out", o->out, inputs);
    for (const auto& c : *columns) {
      auto eq = c.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == c.size())
        ASC_FAIL("--column '{}': expected LOGICAL=NAME (logical: id, note, question, answer, task)",
                 c);
      o->ingest.columns[c.substr(0, eq)] = c.substr(eq + 1);
    }
    auto rep = build_corpus(*o);
    std::cout << fmt::format(
        "wrote {} ({}): {} documents, {} tokens from {} records ({} duplicate notes, {} bad "
        "records "
        "skipped, {} truncated, {} dropped as too long) in {:.2f} s (read {:.2f}, tokenise {:.2f}, "
        "write "
        "{:.2f}), {:.0f} tokens/s\n",
        o->out, o->stage, rep.docs, rep.tokens, rep.records, rep.duplicates, rep.skipped,
        rep.truncated, rep.dropped_too_long, rep.seconds, rep.read_seconds, rep.tokenize_seconds,
        rep.write_seconds, double(rep.tokens) / std::max(1e-9, rep.seconds));
    if (o->upstream_filters)
      std::cout << fmt::format(
          "upstream filters dropped {} rows mentioning a model and {} answers ending with '?'\n",
          rep.filtered_self_reference, rep.filtered_question_answer);
    if (!o->exclude.empty())
      std::cout << fmt::format("--exclude {}: {} records excluded; {} ids matched no record{}{}\n",
                               o->exclude, rep.excluded, rep.unknown_excludes.size(),
                               rep.unknown_excludes.empty() ? "" : ": ",
                               fmt::join(rep.unknown_excludes, ", "));
  });
}

// `corpus inspect`: a corpus verified, its attributes and a sample printed.
void add_inspect(CLI::App* cmd) {
  auto path = std::make_shared<std::string>();
  auto tok_path = std::make_shared<std::string>();
  auto* in = cmd->add_subcommand(
      "inspect", "Verify a corpus (every checksum and id) and print its attributes and a sample");
  in->add_option("corpus", *path, "corpus.h5")->required()->check(CLI::ExistingFile);
  in->add_option("--tokenizer", *tok_path,
                 "tokenizer.model / tokenizer.json / model directory, to decode a sample")
      ->check(CLI::ExistingPath);
  in->callback([=] {
    Corpus c(*path);
    c.verify();  // what train would refuse, inspect refuses (exit 1 naming the range)
    const auto& i = c.info();
    std::vector<int64_t> len;
    for (size_t d = 0; d + 1 < c.doc_offsets().size(); ++d)
      len.push_back(c.doc_offsets()[d + 1] - c.doc_offsets()[d]);
    std::sort(len.begin(), len.end());
    const double mean =
        double(std::accumulate(len.begin(), len.end(), int64_t(0))) / double(len.size());
    std::cout << fmt::format(
        "{}\n  schema_version {}\n  stage {}\n  tokenizer_xxh64 {}\n  vocab_size {}\n  special "
        "ids: "
        "bos {} eos {} pad {} unk {}\n  documents {}\n  tokens {}\n  truncated {}\n  document "
        "length: min {} median {} mean {:.1f} max {}\n{}  sources {}\n  verified: every "
        "chunk's checksum, token ids below vocab_size{}\n",
        *path, i.schema_version, i.stage, i.tokenizer_checksum, i.vocab_size, i.bos_id, i.eos_id,
        i.pad_id, i.unk_id, i.num_docs, i.num_tokens, i.truncated, len.front(), len[len.size() / 2],
        mean, len.back(),
        i.stage == "instruct"
            ? fmt::format("  prompt_template {} (xxh64 {})\n  upstream_compat {}\n",
                          i.prompt_template, i.prompt_template_xxh64, i.upstream_compat)
            : std::string(),
        i.sources, i.stage == "instruct" ? ", loss-mask values" : "");
    std::cout << (i.has_note_ids ? fmt::format("  note ids: {}\n  fingerprint {}\n  excluded {}\n",
                                               i.note_id_rule, i.fingerprint, i.excluded)
                                 : std::string("  note ids: none (built before they were recorded; "
                                               "provenance needs them)\n"));
    const int64_t n = std::min<int64_t>(c.doc_offsets()[1], 256);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    c.read_tokens(0, n, ids.data());
    if (!tok_path->empty()) {
      Tokenizer tok(*tok_path);
      if (tok.checksum() != i.tokenizer_checksum)
        std::cout << "  warning: this tokenizer is not the one that built the corpus\n";
      std::cout << "  document 0 (first " << n << " tokens, decoded):\n" << tok.decode(ids) << "\n";
    } else {
      std::cout << "  document 0 (first " << n << " ids):";
      for (int32_t id : ids) std::cout << " " << id;
      std::cout << "\n";
    }
  });
}

}  // namespace

void add_corpus(CLI::App& app) {
  auto* cmd = app.add_subcommand("corpus", "Build or inspect an HDF5 notes corpus");
  cmd->require_subcommand(1);
  add_build(cmd);
  add_inspect(cmd);
}

}  // namespace asc::cli
