// libFuzzer target: any bytes given as a recipe produce a Recipe or an asc::Error; never a crash
// or another exception type. The first line may carry dotted overrides separated by spaces.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  if (text.rfind("#!", 0) == 0) {  // "#! a.b=1 c.d=2\n" then the YAML
    size_t nl = text.find('\n');
    std::istringstream ov(text.substr(2, nl == std::string::npos ? std::string::npos : nl - 2));
    for (std::string o; ov >> o;) overrides.push_back(o);
    text = nl == std::string::npos ? "" : text.substr(nl + 1);
  }
  try {
    asc::Recipe r = asc::load_recipe_text(text, "fuzz.yaml", overrides, 1 + int64_t(size % 3));
    (void)asc::recipe_to_yaml(r);
  } catch (const asc::Error&) {
  }
  return 0;
}
