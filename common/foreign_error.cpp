#include "common/foreign_error.h"

#include "common/error.h"

namespace asc {

void fail_library_call(const char* library, const char* version, const char* call,
                       const char* message, const char* hint, const char* file, int line) {
  throw Error(fmt::format("{} {}: {} failed: {}", library, version, call, message),
              hint ? hint : "", detail::origin(file, line));
}

void fail_at(const char* message, const char* file, int line) {
  throw Error(message, "", detail::origin(file, line));
}

}  // namespace asc
