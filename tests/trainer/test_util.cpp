#include "test_util.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include <ATen/ATen.h>

namespace asc::test {

std::string temp_dir(const std::string& name) {
  auto d =
      std::filesystem::temp_directory_path() / ("asc_test_" + std::to_string(::getpid())) / name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

int run_oracle(const std::string& script, const std::string& args) {
  std::string cmd = std::string(ASC_PYTHON) + " " + ASC_SOURCE_DIR + "/tests/oracle/" + script +
                    " " + args + " 1>&2";
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

const std::string& hf_fixtures() {
  // CTest runs each test in its own process, in parallel: the first to take the lock builds the
  // fixtures into a scratch directory and renames it into place; the others wait and reuse them.
  static const std::string dir = [] {
    const std::string root = std::string(ASC_BINARY_DIR) + "/test_fixtures";
    const std::string d = root + "/hf";
    std::filesystem::create_directories(root);
    int fd = ::open((root + "/hf.lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0 || ::flock(fd, LOCK_EX) != 0)
      throw std::runtime_error("cannot lock " + root + "/hf.lock");
    // Built again when make_hf_fixtures.py changed since (new configs in a build tree that has
    // the old fixtures).
    const std::string script = std::string(ASC_SOURCE_DIR) + "/tests/oracle/make_hf_fixtures.py";
    if (!std::filesystem::exists(d + "/schedules.json") ||
        std::filesystem::last_write_time(script) >
            std::filesystem::last_write_time(d + "/schedules.json")) {
      const std::string scratch = d + ".building";
      std::filesystem::remove_all(scratch);
      if (run_oracle("make_hf_fixtures.py", scratch) != 0) {
        ::close(fd);
        throw std::runtime_error(
            "make_hf_fixtures.py failed (is transformers in ASC_PYTHON's environment?)");
      }
      std::filesystem::remove_all(d);
      std::filesystem::rename(scratch, d);
    }
    ::close(fd);  // releases the lock
    return d;
  }();
  return dir;
}

at::Tensor load_tensor(const asc::st::SafetensorsFile& f, const std::string& name) {
  const auto& t = f.at(name);
  at::ScalarType dt = t.dtype == st::DType::I64 ? at::kLong : at::kFloat;
  if (t.dtype != st::DType::I64 && t.dtype != st::DType::F32) throw std::runtime_error("dtype");
  return at::from_blob(const_cast<uint8_t*>(f.data(t)), t.shape, dt).clone();
}

void save_tensors(const std::string& path,
                  const std::vector<std::pair<std::string, at::Tensor>>& ts) {
  std::vector<at::Tensor> keep;
  std::vector<st::TensorRef> refs;
  for (const auto& [n, t] : ts) {
    keep.push_back(t.contiguous());
    refs.push_back({n, t.scalar_type() == at::kLong ? st::DType::I64 : st::DType::F32,
                    std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                    keep.back().data_ptr()});
  }
  st::write_safetensors(path, refs);
}

Recipe tiny_recipe(const std::string& dir, std::vector<std::string> ov) {
  const char* base = R"(model:
  preset: tiny-gqa
data:
  seq_len: 32
  demo_samples: 64
train:
  global_batch_size: 8
  micro_batch_size: 8
  max_steps: 6
  lr: 3.0e-3
  warmup_ratio: 0.1
  seed: 7
  threads: 1
logging:
  progress: false
)";
  ov.insert(ov.begin(), "checkpoint.dir=" + dir);  // the caller's overrides come after
  return load_recipe_text(base, "test.yaml", ov);
}

LocalTrainer::LocalTrainer(LlamaForCausalLM& m, bool bf16, AdamWOptions o, OptimizerKind kind,
                           bool activation_checkpointing)
    : model(m),
      comm(comm::make_self_communicator()),
      engine(std::make_unique<ParallelEngine>(model, *comm, ParallelMode::kNone,
                                              activation_checkpointing,
                                              bf16 ? at::kBFloat16 : at::kFloat)),
      opt(o, kind),
      saved(*engine, opt) {}

OptimizerState LocalTrainer::state() const {
  OptimizerState s = engine->full_state();
  s.step = opt.steps();
  return s;
}

}  // namespace asc::test
