#include "data/hf_bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <atomic>
#include <string_view>
#include <queue>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_limits.h"

namespace asc {

namespace {

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

// GPT-2: the printable bytes stand for themselves, the others (controls, space, DEL, NBSP,
// soft hyphen) for U+0100 onwards in byte order.
uint32_t byte_to_codepoint(uint8_t b) {
  auto printable = [](int c) {
    return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
  };
  if (printable(b)) return b;
  uint32_t n = 0;
  for (int c = 0; c < b; ++c) n += !printable(c);
  return 256 + n;
}

// Length of the valid UTF-8 sequence at s[i], or 0 (Unicode's well-formed byte sequences:
// no overlongs, no surrogates, nothing above U+10FFFF).
size_t utf8_valid_len(const std::string& s, size_t i) {
  const auto at = [&](size_t k) -> int { return k < s.size() ? uint8_t(s[k]) : -1; };
  const int b0 = at(i);
  if (b0 < 0x80) return 1;
  auto cont = [&](size_t k, int lo = 0x80, int hi = 0xBF) {
    int b = at(k);
    return b >= lo && b <= hi;
  };
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    const int lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    return cont(i + 1, lo, hi) && cont(i + 2) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    const int lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    return cont(i + 1, lo, hi) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

// Rust's from_utf8_lossy: each maximal prefix of a valid sequence that cannot be completed,
// or each byte that cannot start one, becomes one U+FFFD.
std::string utf8_lossy(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (size_t n = utf8_valid_len(s, i)) {
      out.append(s, i, n);
      i += n;
      continue;
    }
    const int b0 = uint8_t(s[i]);
    size_t n = 1;
    auto cont = [&](size_t k, int lo, int hi) {
      return k < s.size() && uint8_t(s[k]) >= lo && uint8_t(s[k]) <= hi;
    };
    if (b0 >= 0xE0 && b0 <= 0xEF) {
      const int lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
      if (cont(i + 1, lo, hi)) n = 2;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      const int lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
      if (cont(i + 1, lo, hi)) n = cont(i + 2, 0x80, 0xBF) ? 3 : 2;
    }
    out += "\xEF\xBF\xBD";
    i += n;
  }
  return out;
}

// GPT-2's own split, used by a ByteLevel pre-tokenizer with use_regex.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct PerThread {
  const void* owner = nullptr;
  uint64_t generation = 0;
  std::unordered_map<std::string, std::vector<int32_t>> cache;
  std::vector<pcre2_match_data*> match;  // one per pre-tokenizer step (recursion depth)
  // JIT matching of a long piece can need more than PCRE2's default 32 KB JIT stack.
  pcre2_jit_stack* jit_stack = nullptr;
  pcre2_match_context* context = nullptr;
  ~PerThread() {
    for (auto* m : match) pcre2_match_data_free(m);
    if (context) pcre2_match_context_free(context);
    if (jit_stack) pcre2_jit_stack_free(jit_stack);
  }
};

// Onig's \s (what `tokenizers` runs) is Unicode's White_Space; PCRE2's, with UCP, also takes
// U+180E. Unescaped \s / \S become \p{White_Space} / \P{White_Space}; a literal pattern
// (Split "String") has its metacharacters escaped.
std::string onig_compatible(const std::string& re) {
  std::string out;
  for (size_t i = 0; i < re.size(); ++i) {
    if (re[i] == '\\' && i + 1 < re.size()) {
      const char c = re[++i];
      out += c == 's' ? "\\p{White_Space}" : c == 'S' ? "\\P{White_Space}" : std::string{'\\', c};
      continue;
    }
    out += re[i];
  }
  return out;
}
std::string regex_quote(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}
thread_local PerThread t_state;
std::atomic<uint64_t> g_generation{0};

}  // namespace

std::string byte_level_char(uint8_t b) {
  return utf8(byte_to_codepoint(b));
}

struct HfBpeTokenizer::Regex {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
};

HfBpeTokenizer::HfBpeTokenizer(const std::string& json, const std::string& where,
                               const Options& o) {
  try {
    load(json, where, o);
  } catch (const nlohmann::json::exception& e) {
    ASC_FAIL("{}: malformed tokenizer.json: {}", where, e.what());
  }
  generation_ = ++g_generation;
}

HfBpeTokenizer::~HfBpeTokenizer() = default;

namespace {
std::string type_of(const nlohmann::json& o) {
  return o.is_object() && o.contains("type") && o["type"].is_string() ? o["type"].get<std::string>()
                                                                      : std::string("?");
}

[[noreturn]] void unsupported(const std::string& where, const std::string& what,
                              const std::string& value) {
  ASC_FAIL_HINT(
      "byte-level BPE tokenizers (Llama 3, GPT-2 style) are read from tokenizer.json; "
      "SentencePiece models (LLaMA-1/2, Mistral) from their tokenizer.model",
      "{}: {} {} is not supported", where, what, value);
}

int32_t check_id(const std::string& where, const nlohmann::json& v, const std::string& token) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= (int64_t(1) << 24))
    ASC_FAIL("{}: token {} has id {} (ids are integers in 0..2^24)", where,
             nlohmann::json(token).dump(), v.dump());
  return int32_t(v.get<int64_t>());
}

// A pre-tokenizer or post-processor: its stages, whether one or a "Sequence" of them.
std::vector<nlohmann::json> stages(const nlohmann::json& j, const char* key, const char* list_key) {
  std::vector<nlohmann::json> out;
  if (!j.contains(key) || j[key].is_null()) return out;
  const auto& p = j[key];
  if (type_of(p) == "Sequence")
    for (const auto& q : p.at(list_key)) out.push_back(q);
  else
    out.push_back(p);
  return out;
}
}  // namespace

void HfBpeTokenizer::load(const std::string& text, const std::string& where, const Options& o) {
  const nlohmann::json j = parse_json_bounded(text, where);
  if (!j.is_object()) ASC_FAIL("{}: not a tokenizer.json (the top level is not an object)", where);
  if (!j.contains("model") || !j["model"].is_object()) ASC_FAIL("{}: no \"model\" object", where);
  load_vocabulary(j["model"], j, where);
  load_pre_tokenizer(j, where, o);
  const int32_t template_bos = bos_of_template(j, where);
  // --- decoder -------------------------------------------------------------------------------
  if (j.contains("decoder") && !j["decoder"].is_null() && type_of(j["decoder"]) != "ByteLevel")
    unsupported(where, "decoder", type_of(j["decoder"]));

  set_special_ids(template_bos, o, where);
}

// The BPE model (vocabulary, merges) and the added tokens.
void HfBpeTokenizer::load_vocabulary(const nlohmann::json& m, const nlohmann::json& j,
                                     const std::string& where) {
  // --- model: BPE over byte-level characters -------------------------------------------
  if (type_of(m) != "BPE") unsupported(where, "model type", type_of(m));
  if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"].get<double>() != 0.0)
    unsupported(where, "BPE dropout", m["dropout"].dump());
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m[k].is_null() && !m[k].get<std::string>().empty())
      unsupported(where, std::string("model.") + k, m[k].dump());
  if (m.value("byte_fallback", false)) unsupported(where, "model.byte_fallback", "true");
  ignore_merges_ = m.value("ignore_merges", false);
  if (!m.contains("vocab") || !m["vocab"].is_object())
    ASC_FAIL("{}: model.vocab is not an object", where);
  int32_t max_id = -1;
  for (const auto& [tok, v] : m["vocab"].items()) {
    const int32_t id = check_id(where, v, tok);
    vocab_.emplace(tok, id);
    max_id = std::max(max_id, id);
  }

  // --- added tokens (matched in the raw text before anything else) -----------------------
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    for (const auto& a : j["added_tokens"]) {
      AddedToken t{a.at("content").get<std::string>(), check_id(where, a.at("id"), "added"),
                   a.value("special", false), false};
      t.normalized = a.value("normalized", !t.special);  // tokenizers' default
      // tokenizers keeps the model's id for content the vocabulary already has.
      if (auto it = vocab_.find(t.content); it != vocab_.end()) t.id = it->second;
      if (t.content.empty()) ASC_FAIL("{}: an added token (id {}) is empty", where, t.id);
      for (const char* k : {"lstrip", "rstrip", "single_word"})
        if (a.value(k, false))
          unsupported(where,
                      fmt::format("added token {} with {}", nlohmann::json(t.content).dump(), k),
                      "true");
      max_id = std::max(max_id, t.id);
      added_.push_back(std::move(t));
    }
  }
  vocab_size_ = max_id + 1;
  id_to_token_.assign(size_t(vocab_size_), {});
  kind_.assign(size_t(vocab_size_), kModel);
  for (const auto& [tok, id] : vocab_) id_to_token_[size_t(id)] = tok;
  for (const auto& a : added_) {
    id_to_token_[size_t(a.id)] = a.content;
    kind_[size_t(a.id)] = a.special ? kSpecial : kAdded;
  }
  std::stable_sort(added_.begin(), added_.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  for (auto& pass : added_by_byte_) pass.assign(256, {});
  for (uint32_t i = 0; i < added_.size(); ++i)
    added_by_byte_[added_[i].normalized ? 1 : 0][uint8_t(added_[i].content[0])].push_back(i);

  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(byte_level_char(uint8_t(b)));
    if (it == vocab_.end())
      ASC_FAIL_HINT("a byte-level BPE vocabulary holds all 256 byte characters",
                    "{}: model.vocab lacks the byte-level character {} (byte 0x{:02x})", where,
                    nlohmann::json(byte_level_char(uint8_t(b))).dump(), b);
    byte_id_[b] = it->second;
  }

  // Merges: "left right" strings (older files) or [left, right] pairs (newer).
  if (!m.contains("merges") || !m["merges"].is_array())
    ASC_FAIL("{}: model.merges is not a list", where);
  int32_t rank = 0;
  for (const auto& mg : m["merges"]) {
    std::string l, r;
    if (mg.is_string()) {
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        ASC_FAIL("{}: merge {} (number {}) is not two tokens separated by one space", where,
                 mg.dump(), rank);
      l = s.substr(0, sp), r = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      l = mg[0].get<std::string>(), r = mg[1].get<std::string>();
    } else {
      ASC_FAIL("{}: merge number {} is {}, not \"a b\" or [\"a\", \"b\"]", where, rank, mg.dump());
    }
    auto find = [&](const std::string& t) {
      auto it = vocab_.find(t);
      if (it == vocab_.end())
        ASC_FAIL("{}: merge number {} ({}) names {}, which is not in model.vocab", where, rank,
                 mg.dump(), nlohmann::json(t).dump());
      return it->second;
    };
    const int32_t a = find(l), b = find(r), c = find(l + r);
    merges_[uint64_t(uint32_t(a)) << 32 | uint32_t(b)] = Merge{rank, c};  // the last wins, as HF
    ++rank;
  }
}

void HfBpeTokenizer::load_pre_tokenizer(const nlohmann::json& j, const std::string& where,
                                        const Options& o) {
  // --- normalizer, pre-tokenizer ----------------------------------------------------------
  if (j.contains("normalizer") && !j["normalizer"].is_null())
    unsupported(where, "normalizer", type_of(j["normalizer"]));
  const std::vector<nlohmann::json> pres = stages(j, "pre_tokenizer", "pretokenizers");
  auto compile = [&](const std::string& pattern) {
    auto re = std::make_unique<Regex>();
    int err = 0;
    PCRE2_SIZE off = 0;
    re->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                             // \C (one byte) could end a piece inside a character
                             PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C, &err, &off, nullptr);
    if (!re->code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      ASC_FAIL("{}: the pre-tokenizer's regex {} does not compile (PCRE2, at offset {}): {}", where,
               nlohmann::json(pattern).dump(), size_t(off), reinterpret_cast<const char*>(msg));
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    return re;
  };
  bool byte_level = false;
  for (const auto& p : pres) {
    const std::string t = type_of(p);
    if (byte_level) unsupported(where, "a pre-tokenizer after ByteLevel:", t);
    if (t == "Split") {
      if (p.value("behavior", std::string()) != "Isolated")
        unsupported(where, "Split behavior", p.value("behavior", std::string("(none)")));
      if (p.value("invert", false)) unsupported(where, "Split with invert", "true");
      const auto& pat = p.at("pattern");
      std::string re;
      if (pat.contains("Regex")) {
        re = onig_compatible(pat["Regex"].get<std::string>());
      } else if (pat.contains("String")) {  // a literal: quote it
        re = regex_quote(pat["String"].get<std::string>());
      } else {
        unsupported(where, "Split pattern", pat.dump());
      }
      steps_.push_back({compile(re), false});
    } else if (t == "ByteLevel") {
      byte_level = true;
      Step s;
      s.prefix_space = pres.size() == 1 && type_of(j["pre_tokenizer"]) == "ByteLevel" &&
                               o.add_prefix_space.has_value()
                           ? *o.add_prefix_space  // transformers' override (see hf_bpe.h)
                           : p.value("add_prefix_space", false);
      if (p.value("use_regex", true)) s.re = compile(onig_compatible(kGpt2Pattern));
      steps_.push_back(std::move(s));
    } else {
      unsupported(where, "pre-tokenizer", t);
    }
  }
  if (!byte_level)
    unsupported(where, "a pre-tokenizer without ByteLevel:",
                j.contains("pre_tokenizer") ? j["pre_tokenizer"].dump().substr(0, 80) : "null");
}

// The id the post-processor's template puts before $A (BOS), or -1.
int32_t HfBpeTokenizer::bos_of_template(const nlohmann::json& j, const std::string& where) const {
  // --- post-processor: [BOS] $A --------------------------------------------------------------
  int32_t template_bos = -1;
  for (const auto& p : stages(j, "post_processor", "processors")) {
    const std::string t = type_of(p);
    if (t == "ByteLevel") continue;  // offsets only
    if (t != "TemplateProcessing") unsupported(where, "post-processor", t);
    const auto& single = p.at("single");
    std::vector<std::string> specials;
    bool seq_seen = false;
    for (const auto& piece : single) {
      if (piece.contains("Sequence")) {
        seq_seen = true;
      } else if (piece.contains("SpecialToken")) {
        if (seq_seen)
          unsupported(where, "a post-processor template with tokens after $A:", single.dump());
        specials.push_back(piece["SpecialToken"].at("id").get<std::string>());
      }
    }
    if (specials.size() > 1) unsupported(where, "a post-processor template of", single.dump());
    if (specials.size() == 1) {
      const auto& ids = p.at("special_tokens").at(specials[0]).at("ids");
      if (ids.size() != 1) unsupported(where, "a multi-id template token", specials[0]);
      template_bos = check_id(where, ids[0], specials[0]);
    }
  }
  return template_bos;
}

void HfBpeTokenizer::set_special_ids(int32_t template_bos, const Options& o,
                                     const std::string& where) {
  // --- BOS / EOS -----------------------------------------------------------------------------
  auto token_id = [&](const std::string& t) -> int32_t {
    for (const auto& a : added_)
      if (a.content == t) return a.id;
    auto it = vocab_.find(t);
    return it == vocab_.end() ? -1 : it->second;
  };
  const std::string& bos_token = o.bos_token;
  const std::string& eos_token = o.eos_token;
  if (!bos_token.empty()) {
    bos_ = token_id(bos_token);
    if (bos_ < 0) ASC_FAIL("{}: the bos token {} is not in the vocabulary", where, bos_token);
    if (template_bos >= 0 && template_bos != bos_)
      ASC_FAIL("{}: the post-processor adds id {}, but the bos token {} is id {}", where,
               template_bos, bos_token, bos_);
  } else {
    bos_ = template_bos;
  }
  if (bos_ < 0 || template_bos < 0)
    ASC_FAIL_HINT("LLaMA-style training starts every text with BOS",
                  "{}: the post-processor adds no BOS token (expected a TemplateProcessing "
                  "\"[BOS] $A\")",
                  where);
  if (!eos_token.empty()) {
    eos_ = token_id(eos_token);
    if (eos_ < 0) ASC_FAIL("{}: the eos token {} is not in the vocabulary", where, eos_token);
  } else {
    for (const char* t : {"<|end_of_text|>", "</s>", "<|endoftext|>"})
      if ((eos_ = token_id(t)) >= 0) break;
    if (eos_ < 0)
      ASC_FAIL_HINT("put the model's tokenizer_config.json (with eos_token) beside it",
                    "{}: cannot tell the eos token (none of <|end_of_text|>, </s>, "
                    "<|endoftext|>)",
                    where);
  }
}

bool HfBpeTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size_ && kind_[size_t(id)] == kSpecial;
}

std::string HfBpeTokenizer::id_to_token(int32_t id) const {
  return id >= 0 && id < vocab_size_ ? id_to_token_[size_t(id)] : std::string();
}

std::vector<int32_t> HfBpeTokenizer::encode(const std::string& text, bool add_bos, bool add_eos,
                                            bool cached) const {
  if (text.size() >= (size_t(1) << 31))
    ASC_FAIL("a text of {} bytes: at most 2 GiB is tokenised at once", text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_valid_len(text, i);
    if (n == 0)
      ASC_FAIL_HINT("convert the input to UTF-8 (Hugging Face tokenizers take only Unicode text)",
                    "text is not valid UTF-8 at byte {} (0x{:02x})", i, uint8_t(text[i]));
    i += n;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) out.push_back(bos_);
  split_added(text, 0, text.size(), 0, cached, &out);
  if (add_eos) out.push_back(eos_);
  return out;
}

void HfBpeTokenizer::split_added(const std::string& text, size_t b, size_t e, int pass, bool cached,
                                 std::vector<int32_t>* out) const {
  // At each position the longest added token that matches (leftmost-longest); the stretches
  // between go on to the next pass, then to the pre-tokenizer.
  auto rest = [&](size_t x, size_t y) {
    if (pass == 0)
      split_added(text, x, y, 1, cached, out);
    else
      pre_tokenize(0, x == 0 && y == text.size() ? text : text.substr(x, y - x), cached, out);
  };
  size_t seg = b;
  for (size_t i = b; i < e;) {
    const AddedToken* hit = nullptr;
    for (uint32_t k : added_by_byte_[pass][uint8_t(text[i])]) {
      const auto& a = added_[k];
      if (i + a.content.size() <= e && text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > seg) rest(seg, i);
    out->push_back(hit->id);
    i += hit->content.size();
    seg = i;
  }
  if (seg < e) rest(seg, e);
}

void HfBpeTokenizer::pre_tokenize(size_t step, const std::string& piece, bool cached,
                                  std::vector<int32_t>* out) const {
  if (step == steps_.size()) return bpe(piece, cached, out);
  const Step& s = steps_[step];
  if (s.prefix_space && (piece.empty() || piece[0] != ' '))
    return pre_tokenize(step, " " + piece, cached, out);
  if (!s.re) return pre_tokenize(step + 1, piece, cached, out);
  // Sized before anything is taken from it: a deeper step must never reallocate the vector
  // under a shallower step's pointer.
  if (t_state.match.size() < steps_.size()) t_state.match.resize(steps_.size(), nullptr);
  if (!t_state.match[step]) t_state.match[step] = pcre2_match_data_create(1, nullptr);
  pcre2_match_data* const md = t_state.match[step];
  if (!t_state.context) {
    t_state.jit_stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
    t_state.context = pcre2_match_context_create(nullptr);
    pcre2_jit_stack_assign(t_state.context, nullptr, t_state.jit_stack);
  }
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  size_t pos = 0, last = 0;
  while (pos <= piece.size()) {
    int rc = pcre2_match(s.re->code, subject, piece.size(), pos, PCRE2_NO_UTF_CHECK, md,
                         t_state.context);  // JIT when compiled, else the interpreter
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)   // beyond 64 MB of JIT stack: the interpreter
      rc = pcre2_match(s.re->code, subject, piece.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       md, t_state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      ASC_FAIL_HINT("the tokenizer.json's pre-tokenizer regex cannot split this text",
                    "the pre-tokenizer's regex failed on a {}-byte piece: {} (PCRE2 error {})",
                    piece.size(), reinterpret_cast<const char*>(msg), rc);
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {  // an empty match splits nothing: step over one character
      pos = b + (b < piece.size() ? std::max<size_t>(1, utf8_valid_len(piece, b)) : 1);
      continue;
    }
    if (b > last) pre_tokenize(step + 1, piece.substr(last, b - last), cached, out);
    pre_tokenize(step + 1, piece.substr(b, e - b), cached, out);
    last = pos = e;
  }
  if (last < piece.size()) pre_tokenize(step + 1, piece.substr(last), cached, out);
}

void HfBpeTokenizer::bpe(const std::string& piece, bool cached, std::vector<int32_t>* out) const {
  if (!cached) return bpe_uncached(piece, out);
  if (t_state.owner != this || t_state.generation != generation_) {
    t_state.owner = this, t_state.generation = generation_;
    t_state.cache.clear();
  }
  if (t_state.cache.size() > (1u << 20)) t_state.cache.clear();  // bound the memory per thread
  auto it = t_state.cache.find(piece);
  if (it == t_state.cache.end()) {
    std::vector<int32_t> ids;
    bpe_uncached(piece, &ids);
    it = t_state.cache.emplace(piece, std::move(ids)).first;
  }
  out->insert(out->end(), it->second.begin(), it->second.end());
}

void HfBpeTokenizer::bpe_uncached(const std::string& piece, std::vector<int32_t>* out) const {
  if (ignore_merges_) {  // a piece that is itself a token is taken whole
    std::string chars;
    for (unsigned char c : piece) chars += byte_level_char(c);
    if (auto it = vocab_.find(chars); it != vocab_.end()) return out->push_back(it->second);
  }
  // Symbols in a linked list; candidate merges in a heap by (rank, position). A popped
  // candidate is stale when either side has changed since it was pushed.
  struct Sym {
    int32_t id;
    int32_t prev, next;
  };
  const int32_t n = int32_t(piece.size());  // encode() bounds a text below 2^31 bytes
  std::vector<Sym> sym(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i)
    sym[size_t(i)] = {byte_id_[uint8_t(piece[size_t(i)])], i - 1, i + 1};
  if (n > 0) sym[size_t(n - 1)].next = -1;
  struct Cand {
    int32_t rank, pos, left_id, right_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = sym[size_t(l)].next;
    if (r < 0) return;
    auto it =
        merges_.find(uint64_t(uint32_t(sym[size_t(l)].id)) << 32 | uint32_t(sym[size_t(r)].id));
    if (it != merges_.end()) heap.push({it->second.rank, l, sym[size_t(l)].id, sym[size_t(r)].id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& l = sym[size_t(c.pos)];
    if (l.id != c.left_id || l.next < 0 || sym[size_t(l.next)].id != c.right_id) continue;
    if (l.id < 0) continue;
    const int32_t r = l.next;
    l.id = merges_.at(uint64_t(uint32_t(c.left_id)) << 32 | uint32_t(c.right_id)).id;
    l.next = sym[size_t(r)].next;
    sym[size_t(r)].id = -1;  // removed
    if (l.next >= 0) sym[size_t(l.next)].prev = c.pos;
    push(l.prev);
    push(c.pos);
  }
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = sym[size_t(i)].next)
    out->push_back(sym[size_t(i)].id);
}

std::string HfBpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  // Byte-level characters back to bytes; added tokens' text as it is.
  static const std::unordered_map<std::string, uint8_t> to_byte = [] {
    std::unordered_map<std::string, uint8_t> m;
    for (int b = 0; b < 256; ++b) m.emplace(byte_level_char(uint8_t(b)), uint8_t(b));
    return m;
  }();
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_ || kind_[size_t(id)] == kSpecial) continue;
    const std::string& t = id_to_token_[size_t(id)];
    if (kind_[size_t(id)] == kAdded) {
      bytes += t;
      continue;
    }
    for (size_t i = 0; i < t.size();) {
      const size_t n = std::max<size_t>(1, utf8_valid_len(t, i));
      auto it = to_byte.find(t.substr(i, n));
      if (it != to_byte.end())
        bytes += char(it->second);
      else
        bytes.append(t, i, n);
      i += n;
    }
  }
  return utf8_lossy(bytes);
}

}  // namespace asc
