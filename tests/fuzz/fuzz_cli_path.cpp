// libFuzzer target: the CLI's output-path rule (tools/cli/output_path.h, issue 23). Once, it
// builds a scratch directory under /tmp (unique per process; removed at exit) holding every kind
// of entry the rule tells apart:
//   file, hardlink (a second link to file), fifo, filelink -> file, loop -> loop,
//   dangling -> missing, dir (empty), nonempty/a.txt, run/latest ("step-0000002\n"),
//   run/step-0000002/{manifest.pb,config.json}, hf/{config.json,model.safetensors} (a Hugging
//   Face export), runlink -> run.
// Every call runs with the scratch directory as the working directory (entered for the call
// and left after it, so libFuzzer's relative corpus and artifact paths stay where they were).
//
// An input is read front to back (missing bytes read as 0):
//   byte 0: bits 0-1 the function (check_output_file, check_output_dir, is_step_checkpoint_dir,
//           is_run_dir), bits 2-3 the option name, bits 5-6 the number of inputs (0-3);
//   the output path: a piece count byte (1-8 pieces, joined by '/'), a trailing-'/' byte, then
//           per piece a kind byte: 0 a scratch entry (index byte), 1 "..", 2 ".", 3 "" (so "//"),
//           4 fuzzed bytes (length byte, then the bytes: '/', NUL, anything), 5 a long component
//           (length byte * 5 + 1 copies of a char byte), 6 the previous piece repeated (count
//           byte, 1-64 times), 7 NUL then fuzzed bytes (length byte); pieces stop at 8 KiB;
//   each input: a mode byte: 0 a scratch entry (index byte), 1 a path as above (1-4 pieces),
//           2 the output path itself.
// Paths that are absolute or climb above the scratch directory ('..' lexically, NULs included)
// are skipped: the fuzzer touches no other file.
//
// Checked after every call: no crash; nothing but asc::Error is thrown (anything else aborts);
// the scratch directory is unchanged (names, types, sizes, mtimes, link targets, recursively);
// and the refusals output_path.h promises, with the truth taken from the file system here:
//   - check_output_file: an existing output that is not a regular file (FIFO, symlink, loop,
//     dangling link, directory) is refused;
//   - check_output_dir: an existing output that is not a directory (a link to one counts as
//     one) is refused, and so is the run directory;
//   - both: an output that is the same file as an input (device and inode, so the hard link
//     too) is refused; for a directory, an input inside it (real paths); an output that lies
//     inside run/step-0000002 (resolved component by component, the scratch's links followed)
//     is refused;
//   - is_run_dir / is_step_checkpoint_dir say yes for a spelling of run / run/step-0000002.
// The path as the OS sees it ends at the first NUL (the rule passes c_str() on); the checks
// that compare real paths or resolve components take only NUL-free paths.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "cli/output_path.h"
#include "common/error.h"

namespace {

const char* const kEntries[] = {
    ".",
    "file",
    "hardlink",
    "fifo",
    "filelink",
    "loop",
    "dangling",
    "dir",
    "nonempty",
    "nonempty/a.txt",
    "run",
    "run/latest",
    "run/step-0000002",
    "run/step-0000002/manifest.pb",
    "run/step-0000002/config.json",
    "hf",
    "hf/config.json",
    "hf/model.safetensors",
    "runlink",
    "runlink/step-0000002",
    "missing",
};
constexpr size_t kNumEntries = sizeof(kEntries) / sizeof(kEntries[0]);
// The scratch's symbolic links (all at its top, all to names at its top).
const std::map<std::string, std::string> kLinks = {
    {"filelink", "file"}, {"loop", "loop"}, {"dangling", "missing"}, {"runlink", "run"}};

std::string g_scratch;  // absolute, real path
int g_scratch_fd = -1, g_home_fd = -1;
std::map<std::string, std::string> g_snapshot;

void die_setup(const char* what) {
  std::perror(what);
  std::abort();
}

void write_file(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0)
    die_setup(path.c_str());
}

// name -> "type size mtime target", every entry under `dir` (relative names), recursively.
void list_into(const std::string& dir, const std::string& rel,
               std::map<std::string, std::string>* out) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) die_setup(dir.c_str());
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = dir + "/" + name, key = rel.empty() ? name : rel + "/" + name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) die_setup(path.c_str());
    std::string desc = std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " " +
                       std::to_string(st.st_mtim.tv_sec) + "." +
                       std::to_string(st.st_mtim.tv_nsec) + " " + std::to_string(st.st_nlink);
    if (S_ISLNK(st.st_mode)) {
      char buf[PATH_MAX];
      const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
      desc += " -> " + std::string(buf, n > 0 ? size_t(n) : 0);
    }
    (*out)[key] = desc;
    if (S_ISDIR(st.st_mode)) list_into(path, key, out);
  }
  ::closedir(d);
}

std::map<std::string, std::string> snapshot() {
  std::map<std::string, std::string> m;
  list_into(g_scratch, "", &m);
  return m;
}

void remove_scratch() {
  std::error_code ec;
  if (!g_scratch.empty()) std::filesystem::remove_all(g_scratch, ec);
}

bool setup() {
  char tmpl[] = "/tmp/asc_fuzz_cli_path.XXXXXX";
  if (!::mkdtemp(tmpl)) die_setup("mkdtemp");
  char real[PATH_MAX];
  if (!::realpath(tmpl, real)) die_setup("realpath");
  g_scratch = real;
  const std::string s = g_scratch + "/";
  write_file(s + "file", "some input\n");
  if (::link((s + "file").c_str(), (s + "hardlink").c_str()) != 0) die_setup("link");
  if (::mkfifo((s + "fifo").c_str(), 0600) != 0) die_setup("mkfifo");
  for (const auto& [name, target] : kLinks)
    if (::symlink(target.c_str(), (s + name).c_str()) != 0) die_setup("symlink");
  for (const char* d : {"dir", "nonempty", "run", "run/step-0000002", "hf"})
    if (::mkdir((s + d).c_str(), 0700) != 0) die_setup("mkdir");
  write_file(s + "nonempty/a.txt", "a\n");
  write_file(s + "run/latest", "step-0000002\n");
  write_file(s + "run/step-0000002/manifest.pb", std::string("\x08\x02\x10\x02", 4));
  write_file(s + "run/step-0000002/config.json", "{\"hidden_size\":64}\n");
  write_file(s + "hf/config.json", "{\"hidden_size\":64}\n");
  write_file(s + "hf/model.safetensors", std::string("\x02\0\0\0\0\0\0\0{}", 10));
  g_home_fd = ::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  g_scratch_fd = ::open(g_scratch.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (g_home_fd < 0 || g_scratch_fd < 0) die_setup("open");
  std::atexit(remove_scratch);
  g_snapshot = snapshot();
  return true;
}
const bool g_ready = setup();

// Enters the scratch directory for one call and leaves it after.
struct InScratch {
  InScratch() {
    if (::fchdir(g_scratch_fd) != 0) die_setup("fchdir scratch");
  }
  ~InScratch() {
    if (::fchdir(g_home_fd) != 0) die_setup("fchdir back");
  }
};

struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  std::string bytes(size_t len) {
    len = std::min(len, n);
    std::string s(reinterpret_cast<const char*>(p), len);
    p += len, n -= len;
    return s;
  }
};

// Paths grow to about twice PATH_MAX (enough to cross it, relative or absolute), no further:
// longer ones only slow the target down.
constexpr size_t kMaxPath = 8192;

std::string make_path(Reader& r, int max_pieces) {
  const int pieces = 1 + r.byte() % max_pieces;
  const bool trailing = r.byte() & 1;
  std::string path, prev;
  for (int k = 0; k < pieces; ++k) {
    std::string piece;
    switch (r.byte() % 8) {
      case 0:
        piece = kEntries[r.byte() % kNumEntries];
        break;
      case 1:
        piece = "..";
        break;
      case 2:
        piece = ".";
        break;
      case 3:
        break;
      case 4:
        piece = r.bytes(r.byte());
        break;
      case 5: {
        const size_t len = size_t(r.byte()) * 5 + 1;
        piece.assign(len, char(r.byte()));
        break;
      }
      case 6: {
        const int times = 1 + r.byte() % 64;
        for (int t = 0; t < times && piece.size() < kMaxPath; ++t) piece += (t ? "/" : "") + prev;
        break;
      }
      default:
        piece = std::string(1, '\0') + r.bytes(r.byte());
        break;
    }
    if (k) path += '/';
    path += piece;
    prev = piece;
    if (path.size() >= kMaxPath) break;
  }
  if (trailing) path += '/';
  return path;
}

// Whether `path` (all of it, NULs included: std::filesystem normalises past them) stays inside
// the scratch directory: relative, and no '..' above its top.
bool stays_inside(const std::string& path) {
  if (!path.empty() && path[0] == '/') return false;
  int depth = 0;
  size_t b = 0;
  while (b <= path.size()) {
    size_t e = path.find('/', b);
    if (e == std::string::npos) e = path.size();
    const std::string c = path.substr(b, e - b);
    if (c == "..") {
      if (--depth < 0) return false;
    } else if (!c.empty() && c != ".") {
      ++depth;
    }
    b = e + 1;
  }
  return true;
}

std::string os_view(const std::string& path) {
  return path.substr(0, path.find('\0'));
}
bool has_nul(const std::string& path) {
  return path.find('\0') != std::string::npos;
}

// `path` (NUL-free) resolved in the scratch: "." components dropped, ".." popping, the scratch's
// links followed; the scratch-relative result ("" for its top). false when a link loop is in
// the way.
bool resolve(const std::string& path, std::string* out) {
  std::vector<std::string> stack;
  size_t b = 0;
  while (b <= path.size()) {
    size_t e = path.find('/', b);
    if (e == std::string::npos) e = path.size();
    const std::string c = path.substr(b, e - b);
    b = e + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      if (!stack.empty()) stack.pop_back();
      continue;
    }
    stack.push_back(c);
    if (stack.size() == 1) {
      auto it = kLinks.find(c);
      if (it != kLinks.end()) {
        if (it->first == it->second) return false;  // loop
        stack.back() = it->second;
      }
    }
  }
  std::string s;
  for (const auto& c : stack) s += (s.empty() ? "" : "/") + c;
  *out = s;
  return true;
}

bool inside_step(const std::string& rel) {
  const std::string step = "run/step-0000002";
  return rel == step || rel.rfind(step + "/", 0) == 0;
}

std::string real_or_empty(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) ? std::string(buf) : std::string();
}

std::string printable(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c >= 32 && c < 127 && c != '\\') {
      o += char(c);
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      o += b;
    }
  }
  return o.size() > 600 ? o.substr(0, 600) + "...(" + std::to_string(s.size()) + " bytes)" : o;
}

[[noreturn]] void fail(const std::string& why, int fn, const std::string& out,
                       const std::vector<std::string>& inputs) {
  std::fprintf(stderr, "fuzz_cli_path: %s\n  function %d, out \"%s\"\n", why.c_str(), fn,
               printable(out).c_str());
  for (const auto& in : inputs) std::fprintf(stderr, "  input \"%s\"\n", printable(in).c_str());
  if (::fchdir(g_home_fd) == 0) remove_scratch();  // abort() runs no atexit handler
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!g_ready) return 0;
  static const char* options[] = {"--out", "--json", "--output", "--stats-json"};
  Reader r{data, size};
  const uint8_t sel = r.byte();
  const int fn = sel & 3;
  const std::string option = options[(sel >> 2) & 3];
  const int n_inputs = (sel >> 5) & 3;
  const std::string out = make_path(r, 8);
  std::vector<std::string> inputs;
  for (int i = 0; i < n_inputs; ++i) {
    switch (r.byte() % 3) {
      case 0:
        inputs.push_back(kEntries[r.byte() % kNumEntries]);
        break;
      case 1:
        inputs.push_back(make_path(r, 4));
        break;
      default:
        inputs.push_back(out);
        break;
    }
  }
  if (!stays_inside(out)) return 0;
  for (const auto& in : inputs)
    if (!stays_inside(in)) return 0;

  InScratch in_scratch;
  bool threw = false, answer = false;
  try {
    switch (fn) {
      case 0:
        asc::check_output_file(option, out, inputs);
        break;
      case 1:
        asc::check_output_dir(option, out, inputs);
        break;
      case 2:
        answer = asc::is_step_checkpoint_dir(out);
        break;
      default:
        answer = asc::is_run_dir(out);
        break;
    }
  } catch (const asc::Error&) {
    threw = true;
  } catch (const std::exception& e) {
    fail(std::string("threw a non-asc::Error: ") + e.what(), fn, out, inputs);
  } catch (...) {
    fail("threw something that is no std::exception", fn, out, inputs);
  }

  if (snapshot() != g_snapshot) fail("the scratch directory changed", fn, out, inputs);

  const std::string os_out = os_view(out);
  struct stat lst {
  }, st{};
  const bool l_ok = ::lstat(os_out.c_str(), &lst) == 0;
  const bool s_ok = ::stat(os_out.c_str(), &st) == 0;
  std::string rel;
  const bool resolved = !has_nul(out) && resolve(out, &rel);
  const std::string real_out = has_nul(out) ? std::string() : real_or_empty(out);

  if (fn == 2 || fn == 3) {
    // Spellings of the step / run directory are recognised (short ones: a spelling too long
    // for the OS once "/manifest.pb" is added is not asserted on).
    if (os_out.size() < 1024 && !has_nul(out)) {
      if (fn == 2 && real_out == g_scratch + "/run/step-0000002" && !answer)
        fail("is_step_checkpoint_dir missed the step checkpoint", fn, out, inputs);
      if (fn == 3 && real_out == g_scratch + "/run" && !answer)
        fail("is_run_dir missed the run directory", fn, out, inputs);
    }
    return 0;
  }
  if (threw) return 0;
  // Not refused: none of the promised refusals may apply.
  if (fn == 0 && l_ok && !S_ISREG(lst.st_mode))
    fail("a file output that is no regular file was accepted", fn, out, inputs);
  if (fn == 1 && ((s_ok && !S_ISDIR(st.st_mode)) || (!s_ok && l_ok)))
    fail("a directory output that is no directory was accepted", fn, out, inputs);
  if (fn == 1 && s_ok && !real_out.empty() && real_out == g_scratch + "/run")
    fail("the run directory was accepted as an output directory", fn, out, inputs);
  if (resolved && inside_step(rel))
    fail("an output inside the step checkpoint was accepted", fn, out, inputs);
  for (const auto& in : inputs) {
    struct stat ist {};
    const std::string os_in = os_view(in);
    if (s_ok && !os_in.empty() && ::stat(os_in.c_str(), &ist) == 0 && ist.st_dev == st.st_dev &&
        ist.st_ino == st.st_ino)
      fail("an output that is one of the inputs was accepted", fn, out, inputs);
    if (fn == 1 && s_ok && !real_out.empty() && !has_nul(in)) {
      const std::string real_in = real_or_empty(in);
      if (!real_in.empty() && (real_in == real_out || real_in.rfind(real_out + "/", 0) == 0))
        fail("an output directory holding an input was accepted", fn, out, inputs);
    }
  }
  return 0;
}
