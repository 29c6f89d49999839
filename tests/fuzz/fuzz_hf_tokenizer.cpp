// libFuzzer target: Hugging Face tokenizer.json (data/hf_bpe.h). The input is a tokenizer.json,
// a NUL byte, then a text; the tokenizer is built from the first part and, when it loads,
// encodes the text (cached and uncached: the same ids) and decodes them. Any input returns or
// throws asc::Error: no crash, leak, hang or other exception, whatever the vocabulary, merges,
// added tokens or regex hold.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/error.h"
#include "data/hf_bpe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const std::string json = in.substr(0, nul);
  const std::string text = nul == std::string::npos ? std::string("a b") : in.substr(nul + 1);
  try {
    asc::HfBpeTokenizer tok(json, "fuzz/tokenizer.json", {});
    try {
      const auto ids = tok.encode(text, true, true);
      if (ids != tok.encode(text, true, true, /*cached=*/false)) std::abort();
      for (int32_t id : ids)
        if (id < 0 || id >= tok.vocab_size()) std::abort();
      (void)tok.decode(ids);
    } catch (const asc::Error&) {
    }
  } catch (const asc::Error&) {
  }
  return 0;
}
