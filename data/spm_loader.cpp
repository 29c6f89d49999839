// spm_loader.cpp — finds and opens libasclepius_spm.so (see spm_backend.h).
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "common/error.h"
#include "data/spm_backend.h"

namespace asc {
namespace {
using Factory = SpmBackend* (*)();

Factory load_factory() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("ASCLEPIUS_SPM_LIB")) candidates.push_back(env);
  char exe[PATH_MAX] = {0};
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0)
    candidates.push_back(
        (std::filesystem::path(std::string(exe, size_t(n))).parent_path() / "libasclepius_spm.so")
            .string());
  candidates.push_back("libasclepius_spm.so");  // LD_LIBRARY_PATH
  std::string errors;
  for (const auto& c : candidates) {
    // RTLD_DEEPBIND: sentencepiece must bind to its own protobuf copy, not the process's.
    void* h = ::dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
      errors += std::string("\n  ") + ::dlerror();
      continue;
    }
    if (auto f = reinterpret_cast<Factory>(::dlsym(h, "asclepius_spm_new_backend"))) return f;
    errors += "\n  " + c + ": no asclepius_spm_new_backend";
  }
  ASC_FAIL_HINT("it is built beside the asclepius binary; set ASCLEPIUS_SPM_LIB to its path",
                "cannot load the tokenizer library libasclepius_spm.so:{}", errors);
}
}  // namespace

SpmBackend* new_spm_backend() {
  static Factory factory = load_factory();
  return factory();
}

}  // namespace asc
