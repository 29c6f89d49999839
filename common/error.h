// error.h — the one error policy of asclepius-cpp.
//
// Everything that can go wrong because of the user's input (a recipe, a file, a flag) throws
// asc::Error with a message that names *what* and *where* (file:line of the input when there
// is one) and, when we know it, a hint for the fix. The CLI catches it once at the edge and
// prints one line. ASC_CHECK / ASC_FAIL add the source location of the check (file:line in
// our code) so a report from a user points straight at the test that fired.
// Thread-safety: none needed; exceptions are values.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace asc {

class Error : public std::runtime_error {
 public:
  Error(std::string message, std::string hint = {}, std::string origin = {})
      : std::runtime_error(compose(message, hint, origin)),
        message_(std::move(message)),
        hint_(std::move(hint)),
        origin_(std::move(origin)) {}
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }
  const std::string& origin() const { return origin_; }

 private:
  static std::string compose(const std::string& m, const std::string& h, const std::string& o) {
    std::string s = m;
    if (!h.empty()) s += " (hint: " + h + ")";
    if (!o.empty()) s += " [" + o + "]";
    return s;
  }
  std::string message_, hint_, origin_;
};

namespace detail {
inline std::string origin(const char* file, int line) {
  std::string f = file;
  // Keep the path relative to the project (trainer/..., data/...), not the build machine's.
  for (const char* top : {"/trainer/", "/data/", "/comm/", "/common/", "/tools/", "/tests/"}) {
    auto p = f.rfind(top);
    if (p != std::string::npos) return f.substr(p + 1) + ":" + std::to_string(line);
  }
  return f + ":" + std::to_string(line);
}
}  // namespace detail

}  // namespace asc

// ASC_FAIL(hint, fmt, args...) — throw asc::Error with a formatted message.
#define ASC_FAIL_HINT(hint, ...) \
  throw ::asc::Error(fmt::format(__VA_ARGS__), (hint), ::asc::detail::origin(__FILE__, __LINE__))
#define ASC_FAIL(...) ASC_FAIL_HINT(std::string(), __VA_ARGS__)
// ASC_CHECK(cond, fmt, args...) — throw when cond is false.
#define ASC_CHECK(cond, ...)            \
  do {                                  \
    if (!(cond)) ASC_FAIL(__VA_ARGS__); \
  } while (0)
