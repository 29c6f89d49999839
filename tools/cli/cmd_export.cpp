// cmd_export.cpp — `asclepius export RUN_OR_CHECKPOINT --out DIR`: a Hugging Face directory.
// One process builds the model and writes it; under mpirun every rank writes its share of every
// tensor straight into the final files (checkpoint/export.h), byte-identical, with no gather.
#include <filesystem>
#include <iostream>

#include <cstdint>

#include <fmt/format.h>

#include "checkpoint/export.h"
#include "checkpoint/hf_io.h"
#include "comm/communicator.h"
#include "comm/objects.h"
#include "cli/commands.h"
#include "cli/output_path.h"
#include "common/error.h"

namespace asc::cli {
namespace {
uint64_t parse_size(const std::string& s) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (...) {
    ASC_FAIL("--max-shard-size '{}': expected a size such as 5GB, 500MB or 1000000", s);
  }
  std::string unit = s.substr(pos);
  double mult = 1;
  if (unit == "" || unit == "B")
    mult = 1;
  else if (unit == "KB")
    mult = 1e3;
  else if (unit == "MB")
    mult = 1e6;
  else if (unit == "GB")
    mult = 1e9;
  else if (unit == "KiB")
    mult = 1024.0;
  else if (unit == "MiB")
    mult = 1024.0 * 1024;
  else if (unit == "GiB")
    mult = 1024.0 * 1024 * 1024;
  else
    ASC_FAIL("--max-shard-size '{}': unknown unit '{}' (B, KB, MB, GB, KiB, MiB, GiB)", s, unit);
  if (!(v > 0) || !(v * mult < 9e18))
    ASC_FAIL("--max-shard-size '{}' must be positive and finite", s);
  return uint64_t(v * mult);
}

}  // namespace

// An existing, non-empty --out is refused, or with --force cleared of an earlier export's files
// (only those; a stale shard of a larger export would otherwise sit beside the new ones).
void clear_earlier_export(const std::string& out, bool force) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(out, ec) || fs::is_empty(out, ec)) return;
  if (!force)
    ASC_FAIL_HINT("choose a new or empty directory, or pass --force to replace an earlier export",
                  "--out {}: is not empty", out);
  for (const auto& e : fs::directory_iterator(out))
    if (e.is_regular_file() && is_hf_export_file(e.path().filename().string()))
      fs::remove(e.path());
}

void add_export(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "export", "Write a run's newest checkpoint (or a checkpoint) as a Hugging Face directory");
  struct Opts {
    std::string src, out, dtype = "bf16", shard = "5GB";
    bool force = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("source", o->src, "Run directory, step checkpoint or Hugging Face directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--out", o->out, "Output directory")->required();
  cmd->add_option("--dtype", o->dtype, "Stored dtype")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  cmd->add_option("--max-shard-size", o->shard, "Largest shard (e.g. 5GB, 200MB)");
  cmd->add_flag("--force", o->force,
                "Replace an earlier export in --out (its files are removed first)");
  cmd->callback([=] {
    const at::ScalarType dtype = o->dtype == "bf16"   ? at::kBFloat16
                                 : o->dtype == "fp16" ? at::kHalf
                                                      : at::kFloat;
    check_output_dir("--out", o->out, {o->src});
    if (comm::launched_world_size() > 1) {  // every rank writes its share in place: no gather
      auto comm = comm::make_mpi_communicator(/*timeout_s=*/6 * 3600.0);
      std::string error;
      if (comm->rank() == 0) try {
          read_hf_config(resolve_model_dir(o->src));  // a bad source deletes nothing
          clear_earlier_export(o->out, o->force);
        } catch (const std::exception& e) {
          error = e.what();
        }
      comm::agree_on_error(comm.get(), "preparing --out", error);  // before any rank writes
      const ExportStats st = export_hf_parallel(o->src, o->out, dtype, parse_size(o->shard), *comm);
      fmt::print(stderr, "rank {}: read {} bytes, wrote {} bytes\n", comm->rank(), st.bytes_read,
                 st.bytes_written);
      if (comm->rank() == 0)
        std::cout << "exported " << o->src << " -> " << o->out << " (" << o->dtype << ", "
                  << comm->size() << " ranks)\n";
      return;
    }
    // The source is read whole before anything in --out is removed: a bad source deletes nothing.
    const std::string dir = resolve_model_dir(o->src);
    LlamaForCausalLM model(read_hf_config(dir));
    load_hf_weights(dir, model);
    clear_earlier_export(o->out, o->force);
    save_hf_dir(o->out, model->config(), hf_named_tensors(model), dtype, parse_size(o->shard));
    std::cout << "exported " << dir << " -> " << o->out << " (" << o->dtype << ")\n";
  });
}

}  // namespace asc::cli
