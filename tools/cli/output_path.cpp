#include "cli/output_path.h"

#include <limits.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "checkpoint/manifest.h"
#include "common/error.h"

namespace asc {
namespace fs = std::filesystem;

namespace {

const char* kind_of(const struct stat& st) {
  if (S_ISREG(st.st_mode)) return "a regular file";
  if (S_ISDIR(st.st_mode)) return "a directory";
  if (S_ISLNK(st.st_mode)) return "a symbolic link";
  if (S_ISCHR(st.st_mode)) return "a character device";
  if (S_ISBLK(st.st_mode)) return "a block device";
  if (S_ISFIFO(st.st_mode)) return "a FIFO";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  return "not a regular file";
}

// Refuses `out` when it, or any directory above it (absolute, normalised), is a step checkpoint.
void check_not_in_checkpoint(const std::string& option, const std::string& out) {
  std::error_code ec;
  const fs::path abs = fs::absolute(out, ec);
  fs::path p = fs::weakly_canonical(abs, ec);
  // weakly_canonical returns nothing when a component cannot be looked at (a name or an absolute
  // path too long for the OS, a link loop), and nothing was checked: fuzz_cli_path found a
  // relative --out under PATH_MAX, whose absolute form is over it, passing inside a checkpoint
  // that create_directories then writes into. Check the lexical form instead (a path the OS may
  // not take at all is refused too, harmlessly).
  if (ec || p.empty()) p = abs.lexically_normal();
  // A directory whose absolute path is PATH_MAX or longer cannot be looked at (is_directory says
  // no), so the walk starts below that: one parent_path per component is quadratic, and an --out
  // of 16,000 components took 30 s in the sanitizer build (found while fuzzing, fuzz_cli_path).
  std::string top = p.string();
  if (top.size() >= PATH_MAX) top.erase(std::max<size_t>(top.rfind('/', PATH_MAX - 1), 1));
  fs::path below;  // the component of the path just under d
  for (fs::path d = top; !d.empty(); below = d.filename(), d = d.parent_path()) {
    if (fs::is_directory(d, ec) && is_step_checkpoint_dir(d.string()))
      ASC_FAIL_HINT("write it somewhere outside the run's checkpoints",
                    "{} {}: lies inside the training checkpoint {}; writing there would damage it",
                    option, out, d.string());
    // A run directory's own entries: `latest`, its recipe, metrics, TensorBoard events, profiles
    // and step directories (partial ones included). Other names in a run directory are free.
    const std::string c = below.string();
    const bool run_entry = c == "latest" || c == "recipe.yaml" || c == "metrics.jsonl" ||
                           c == "tensorboard" || c == "profile" || c.rfind("step-", 0) == 0;
    if (run_entry && fs::is_directory(d, ec) && is_run_dir(d.string())) {
      ASC_FAIL_HINT("write it somewhere else (another name in the run directory will do)",
                    "{} {}: is {} of the training run {}; writing there would damage the run",
                    option, out, c.rfind("step-", 0) == 0 ? "a step directory" : "'" + c + "'",
                    d.string());
    }
    if (d == d.parent_path()) break;
  }
}

void check_not_an_input(const std::string& option, const std::string& out,
                        const std::vector<std::string>& inputs, bool out_is_dir) {
  std::error_code ec;
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    if (!fs::exists(in, ec)) {  // another output of the command, not written yet: same path?
      std::error_code e1, e2;
      const fs::path a = fs::weakly_canonical(out, e1), b = fs::weakly_canonical(in, e2);
      if (!e1 && !e2 && a == b)
        ASC_FAIL_HINT("give each output its own path",
                      "{} {}: is also another output of this command ({})", option, out, in);
      continue;
    }
    // A model directory: the files in it are inputs (a new name there is free). A run directory
    // given as the model is guarded by the run rule instead (its own entries, step directories).
    if (!out_is_dir && fs::exists(out, ec) && fs::is_directory(in, ec) && !is_run_dir(in)) {
      const fs::path o = fs::weakly_canonical(out, ec), i = fs::weakly_canonical(in, ec);
      const auto rel = o.lexically_relative(i);
      if (!rel.empty() && *rel.begin() != ".." && *rel.begin() != ".")
        ASC_FAIL_HINT("choose another output path",
                      "{} {}: lies inside {}, an input of this command; writing it would damage "
                      "it",
                      option, out, in);
    }
    if (fs::exists(out, ec) && fs::equivalent(out, in, ec))
      ASC_FAIL_HINT("choose another output path",
                    "{} {}: is also an input of this command ({}); writing it would destroy it",
                    option, out, in);
    if (out_is_dir && fs::exists(out, ec)) {
      const fs::path o = fs::weakly_canonical(out, ec), i = fs::weakly_canonical(in, ec);
      const auto rel = i.lexically_relative(o);
      if (!rel.empty() && *rel.begin() != "..")
        ASC_FAIL_HINT("choose another output directory",
                      "{} {}: holds the input {} of this command", option, out, in);
    }
  }
}

}  // namespace

bool is_step_checkpoint_dir(const std::string& dir) {
  std::error_code ec;
  const fs::path d(dir);
  if (fs::exists(d / "manifest.pb", ec)) return true;  // format 2
  // Format 1 holds trainer_state.json in a step-NNNNNNN directory; a Hugging Face Trainer output
  // directory also holds one at its top, and is no checkpoint of ours.
  fs::path name = d.lexically_normal();
  if (name.filename().empty()) name = name.parent_path();  // "run/step-0000002/"
  return fs::exists(d / "trainer_state.json", ec) && is_step_dir_name(name.filename().string());
}

bool is_run_dir(const std::string& dir) {
  return run_has_checkpoints(dir);  // the rule train uses to refuse a fresh start
}

void check_output_file(const std::string& option, const std::string& out,
                       const std::vector<std::string>& inputs) {
  ASC_CHECK(!out.empty(), "{}: an empty path", option);
  struct stat st {};
  if (::lstat(out.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    ASC_FAIL_HINT("give the path of a regular file (or a new one)",
                  "{} {}: is {}; refusing to replace it", option, out, kind_of(st));
  check_not_in_checkpoint(option, out);  // first: the more specific reason
  check_not_an_input(option, out, inputs, false);
}

void check_output_dir(const std::string& option, const std::string& out,
                      const std::vector<std::string>& inputs) {
  ASC_CHECK(!out.empty(), "{}: an empty path", option);
  struct stat st {};
  // A symbolic link to a directory is that directory (a common layout on clusters: out ->
  // /scratch/...); writing into it does not replace the link.
  if (::stat(out.c_str(), &st) == 0 || ::lstat(out.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      ASC_FAIL_HINT("give the path of a directory (or a new one)", "{} {}: is {}, not a directory",
                    option, out, kind_of(st));
    if (is_run_dir(out))
      ASC_FAIL_HINT("write it somewhere outside the run directory",
                    "{} {}: is a training run directory (it holds checkpoints)", option, out);
  }
  check_not_an_input(option, out, inputs, true);
  check_not_in_checkpoint(option, out);
}

}  // namespace asc
