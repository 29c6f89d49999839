// Parity with Hugging Face transformers: a tiny random LlamaForCausalLM saved by transformers,
// loaded by us, gives the same fp32 logits and loss; our export loads in transformers and gives
// the same logits again. Configs: grouped-query attention, tied embeddings, sharded checkpoint,
// Llama 3.1 (rotary scaling rope_type llama3, a list of eos ids), Mistral v0.3.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <optional>
#include <string>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "checkpoint/hf_io.h"
#include "common/error.h"
#include "data/collate.h"
#include "generate/generate.h"
#include "model/llama.h"
#include "test_util.h"

using namespace asc;

class HfParity : public testing::TestWithParam<std::string> {};

TEST_P(HfParity, LogitsAndLossMatchTransformersAndExportLoadsBack) {
  const std::string dir = test::hf_fixtures() + "/" + GetParam();
  const std::string ref_dir =
      test::hf_fixtures() + "/" + (GetParam() == "gqa_sharded" ? "gqa" : GetParam());
  auto expected = st::SafetensorsFile::open(ref_dir + "/expected.safetensors");
  at::Tensor ids = test::load_tensor(*expected, "input_ids");
  at::Tensor labels = test::load_tensor(*expected, "labels");
  at::Tensor want_logits = test::load_tensor(*expected, "logits");
  const double want_loss = test::load_tensor(*expected, "loss").item<double>();

  LlamaForCausalLM model(read_hf_config(dir));
  load_hf_weights(dir, model);
  torch::NoGradGuard no_grad;
  // The rotary frequencies are transformers' to the bit (the same fp32 operations in order).
  const LlamaConfig& c = model->config();
  EXPECT_TRUE(at::equal(rotary_inv_freq(c.head_dim(), c.rope_theta, c.rope_scaling),
                        test::load_tensor(*expected, "inv_freq")));
  at::Tensor logits = model(ids);
  const double diff = (logits - want_logits).abs().max().item<double>();
  EXPECT_LT(diff, 1e-4) << "max |logits - transformers|";
  const double loss =
      causal_lm_loss_sum(logits, labels).item<double>() / double(count_targets(labels));
  EXPECT_NEAR(loss, want_loss, 1e-4);

  // Our export (fp32) loads in transformers and reproduces our logits.
  const std::string out = test::temp_dir("export_" + GetParam());
  save_hf_dir(out, model->config(), hf_named_tensors(model), at::kFloat,
              /*max_shard_bytes=*/60'000);
  test::save_tensors(out + "/../ours_" + GetParam() + ".safetensors",
                     {{"input_ids", ids}, {"logits", logits}});
  EXPECT_EQ(test::run_oracle("check_export.py",
                             out + " " + out + "/../ours_" + GetParam() + ".safetensors 1e-4"),
            0);
  // What the export's config.json says is what was read.
  const LlamaConfig back = read_hf_config(out);
  EXPECT_EQ(back.model_type, c.model_type);
  EXPECT_EQ(back.rope_scaling, c.rope_scaling);
  EXPECT_EQ(back.eos_token_ids, c.eos_token_ids);
  EXPECT_EQ(back.sliding_window, c.sliding_window);
  EXPECT_EQ(back.tie_word_embeddings, c.tie_word_embeddings);
}

INSTANTIATE_TEST_SUITE_P(Configs, HfParity,
                         testing::Values("gqa", "tied", "gqa_sharded", "llama31", "mistral"));

// The fixtures are the architectures they are meant to be (a transformers default changing
// would otherwise silently drop what the parity above checks).
// data.upstream_compat: upstream's attention_mask = ids != pad (pad = BOS) hides every BOS as a
// key (data/collate.h, Packing::key_visible_BT), a BOS in the middle of a row included; the
// logits at every position the mask keeps, the BOS-in-the-middle's own prediction among them,
// and the loss equal transformers' with that attention_mask.
TEST(HfParity, HiddenBosEqualsTransformersAttentionMask) {
  const std::string dir = test::hf_fixtures() + "/gqa";
  auto f = st::SafetensorsFile::open(dir + "/upstream_compat.safetensors");
  at::Tensor ids = test::load_tensor(*f, "input_ids"),
             mask = test::load_tensor(*f, "attention_mask");
  at::Tensor labels = test::load_tensor(*f, "labels"), want = test::load_tensor(*f, "logits");
  LlamaForCausalLM model(read_hf_config(dir));
  load_hf_weights(dir, model);
  const int32_t bos = int32_t(model->config().bos_token_id);
  std::vector<Example> ex;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    int64_t n = ids.size(1);
    while (n > 0 && ids[b][n - 1].item<int64_t>() == bos) --n;  // right padding (= BOS)
    Example e;
    for (int64_t t = 0; t < n; ++t) e.ids.push_back(int32_t(ids[b][t].item<int64_t>()));
    e.mask.assign(e.ids.size(), 1);
    ex.push_back(e);
  }
  const Rows r = collate_padded(ex, bos, bos);
  auto tensor = [&](const std::vector<int64_t>& v) {
    return torch::tensor(v, torch::kInt64).view({r.rows, r.len});
  };
  ASSERT_EQ(r.len, ids.size(1));
  ASSERT_TRUE(torch::equal(tensor(r.ids), ids));
  Packing p{tensor(r.positions), tensor(r.segments), tensor(r.visible)};
  torch::NoGradGuard no_grad;
  at::Tensor logits = model(ids, &p);
  const at::Tensor keep = mask.to(torch::kBool);
  const double diff = (logits - want).abs().amax(-1).masked_select(keep).max().item<double>();
  EXPECT_LT(diff, 1e-4) << "max |logits - transformers| where the attention mask is 1";
  // Without hiding BOS the logits after it differ: the test can tell.
  at::Tensor plain = model(ids);
  EXPECT_GT((plain - want).abs().amax(-1).masked_select(keep).max().item<double>(), 1e-3);
  const double loss =
      causal_lm_loss_sum(logits, labels).item<double>() / double(count_targets(labels));
  EXPECT_NEAR(loss, test::load_tensor(*f, "loss").item<double>(), 1e-4);
}

TEST(HfParity, FixturesHoldLlama31AndMistralV03) {
  const LlamaConfig l = read_hf_config(test::hf_fixtures() + "/llama31");
  ASSERT_TRUE(l.rope_scaling.has_value());
  EXPECT_EQ(*l.rope_scaling, (RopeScaling{8.0, 0.25, 4.0, 256}));
  EXPECT_EQ(l.eos_token_ids, (std::vector<int64_t>{2, 5, 7}));
  EXPECT_EQ(l.eos_token_id, 2);
  EXPECT_LT(l.num_key_value_heads, l.num_attention_heads);
  EXPECT_FALSE(l.tie_word_embeddings);
  const LlamaConfig m = read_hf_config(test::hf_fixtures() + "/mistral");
  EXPECT_EQ(m.model_type, "mistral");
  EXPECT_FALSE(m.sliding_window.has_value());
  EXPECT_FALSE(m.rope_scaling.has_value());
  EXPECT_LT(m.num_key_value_heads, m.num_attention_heads);
  EXPECT_TRUE(m.tie_word_embeddings);
}

TEST(HfParity, RotaryTablesFollowTheHalfSplitConvention) {
  // Independent check of the rotary table against its definition.
  auto [cos, sin] = rotary_tables(5, 8, 10000.0, std::nullopt, at::kFloat, at::kCPU);
  for (int64_t t = 0; t < 5; ++t)
    for (int64_t i = 0; i < 4; ++i) {
      double ang = double(t) * std::pow(10000.0, -2.0 * double(i) / 8.0);
      EXPECT_NEAR(cos[t][i].item<double>(), std::cos(ang), 1e-6);
      EXPECT_NEAR(cos[t][i + 4].item<double>(), std::cos(ang), 1e-6);
      EXPECT_NEAR(sin[t][i + 4].item<double>(), std::sin(ang), 1e-6);
    }
}

// Llama 3.1's scaling against its definition evaluated in double, for frequencies of each regime
// (head_dim 16, theta 500000: wavelengths 6.3, 32, 167, 862, 4443, ...; with these factors the
// thresholds are 64 and 1024: two kept, two interpolated, four divided by the factor).
TEST(HfParity, Llama3RotaryScalingFollowsItsDefinition) {
  const RopeScaling s{8.0, 0.25, 4.0, 256};
  const int64_t E = 16, T = 100;
  const double theta = 500000.0;
  const auto inv = rotary_inv_freq(E, theta, s);
  const auto plain = rotary_inv_freq(E, theta, std::nullopt);
  auto [cos, sin] = rotary_tables(T, E, theta, s, at::kFloat, at::kCPU);
  const double high_wavelen = 256 / 4.0, low_wavelen = 256 / 0.25;
  int kept = 0, interpolated = 0, divided = 0;
  for (int64_t i = 0; i < E / 2; ++i) {
    const double f = std::pow(theta, -2.0 * double(i) / double(E));
    const double wavelen = 2 * M_PI / f;
    double want;
    if (wavelen < high_wavelen) {
      want = f, ++kept;
      EXPECT_EQ(inv[i].item<float>(), plain[i].item<float>()) << i;  // untouched
    } else if (wavelen > low_wavelen) {
      want = f / 8.0, ++divided;
    } else {  // smooth = (old_context / wavelen - low) / (high - low), in (0, 1)
      const double smooth = (256.0 / wavelen - 0.25) / (4.0 - 0.25);
      EXPECT_GT(smooth, 0.0);
      EXPECT_LT(smooth, 1.0);
      want = (1 - smooth) * f / 8.0 + smooth * f, ++interpolated;
      EXPECT_GT(want, f / 8.0 * 1.01) << i;  // strictly between the two
      EXPECT_LT(want, f * 0.99) << i;
    }
    EXPECT_NEAR(inv[i].item<double>(), want, 1e-6 * want) << "frequency " << i;
    for (int64_t t : {0, 1, 5, 37, 64, 99}) {
      const double ang = double(t) * want;
      for (int64_t col : {i, i + E / 2}) {  // both halves (rotate_half convention)
        EXPECT_NEAR(cos[t][col].item<double>(), std::cos(ang), 1e-5) << t << " " << col;
        EXPECT_NEAR(sin[t][col].item<double>(), std::sin(ang), 1e-5) << t << " " << col;
      }
    }
  }
  EXPECT_EQ(kept, 2);
  EXPECT_EQ(interpolated, 2);
  EXPECT_EQ(divided, 4);
  // The model's tables come from its config's scaling.
  LlamaConfig c = llama_preset("tiny");
  c.hidden_size = 64, c.num_attention_heads = 4, c.rope_theta = theta, c.rope_scaling = s;
  auto [mcos, msin] = rotary_tables(T, c, at::kFloat, at::kCPU);
  EXPECT_TRUE(at::equal(mcos, cos));
  EXPECT_TRUE(at::equal(msin, sin));
}

namespace {
// A tiny random model with grouped-query attention and a vocabulary of `vocab` ids.
LlamaForCausalLM tiny_gqa_model(int64_t vocab, uint64_t seed,
                                std::optional<int64_t> sliding_window = std::nullopt) {
  LlamaConfig c = llama_preset("tiny-gqa");
  c.vocab_size = vocab, c.sliding_window = sliding_window;
  torch::manual_seed(0);
  LlamaForCausalLM model(c);
  model->init_weights_seeded(seed, 0.3);
  return model;
}

// Greedy ids of `prompt` by the full forward pass, one token at a time (no cache).
std::vector<int32_t> greedy_by_forward(LlamaForCausalLM& model, const std::vector<int32_t>& prompt,
                                       int n) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> seq(prompt.begin(), prompt.end());
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const int64_t next =
        model(torch::tensor(seq, torch::kLong).view({1, -1}))[0][-1].argmax().item<int64_t>();
    out.push_back(int32_t(next));
    seq.push_back(next);
  }
  return out;
}
}  // namespace

// Sliding-window attention is not implemented: up to the window it is full causal attention
// (exact), past it the forward pass and decoding both refuse, before any work for decoding.
TEST(SlidingWindow, DecodingRunsWithinTheWindowAndRefusesPastIt) {
  LlamaForCausalLM model = tiny_gqa_model(32, 3, 8);
  EXPECT_EQ(generation_context(model->config()), 8);
  GenerationOptions o;
  o.max_new_tokens = 4, o.eos_id = -1;
  // 4 + 4 <= 8: greedy equals argmax of the full forward pass, token by token.
  const std::vector<int32_t> prompt = {1, 3, 4, 5};
  const auto got = generate(model, {prompt}, o);
  ASSERT_EQ(got.size(), 1u);
  const auto want = greedy_by_forward(model, prompt, 4);
  EXPECT_EQ(got[0].ids, want);
  // Continuous batching stays within the window too (each slot its own length): the same ids.
  GenerationOptions oc = o;
  oc.continuous = true, oc.continuous_slots = 2;
  const auto cont = generate(model, {prompt, {1, 3}, prompt}, oc);
  EXPECT_EQ(cont[0].ids, want);
  EXPECT_EQ(cont[2].ids, want);
  // 5 + 4 > 8: refused up front, naming the window.
  try {
    generate(model, {{1, 3, 4, 5, 6}}, o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the model's context of 8 tokens (its "
                                         "sliding_window"),
              std::string::npos)
        << e.what();
  }
  // The cached decoder itself refuses to attend past the window.
  CachedDecoder dec(model, 1, 12);
  auto ids = torch::ones({1, 9}, torch::kLong);
  auto pos = torch::arange(9, torch::kLong).view({1, 9});
  auto valid = torch::ones({1, 12}, torch::kBool);
  EXPECT_THROW(dec.step(ids, pos, valid), Error);
  EXPECT_THROW(model(torch::ones({1, 9}, torch::kLong)), Error);
}

// Several end ids (Llama 3): decoding stops at any of them.
TEST(Generate, StopsAtAnyOfTheEndIds) {
  LlamaForCausalLM model = tiny_gqa_model(32, 5);
  GenerationOptions o;
  o.max_new_tokens = 6, o.eos_id = -1;
  const auto free = generate(model, {{1, 3, 4}}, o);
  ASSERT_EQ(free[0].ids.size(), 6u);
  // The third token generated, named as a further end id, ends the answer there.
  o.more_eos_ids = {31, free[0].ids[2]};
  if (free[0].ids[0] == free[0].ids[2] || free[0].ids[1] == free[0].ids[2])
    GTEST_SKIP() << "the token repeats earlier";
  const auto stopped = generate(model, {{1, 3, 4}}, o);
  EXPECT_TRUE(stopped[0].ended_with_eos);
  EXPECT_EQ(stopped[0].ids, std::vector<int32_t>(free[0].ids.begin(), free[0].ids.begin() + 2));
}

// Decoding through the cache (static batches left-padded; continuous batching with each slot
// at its own length, a round's prompts prefilled in one packed pass) gives the ids
// of the full forward pass for prompts of different lengths, with grouped-query attention.
TEST(Generate, CachedDecodingEqualsTheFullForwardPass) {
  LlamaForCausalLM model = tiny_gqa_model(48, 11);
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 5}, {1, 7, 9, 11, 13, 2, 4, 6, 8}, {1, 3, 3}, {1, 40, 41, 42, 43, 44}, {1}};
  GenerationOptions o;
  o.max_new_tokens = 7, o.eos_id = -1;
  const auto plain = generate(model, prompts, o);
  GenerationOptions oc = o;
  oc.continuous = true, oc.continuous_slots = 3;
  const auto cont = generate(model, prompts, oc);
  ASSERT_EQ(plain.size(), prompts.size());
  ASSERT_EQ(cont.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto want = greedy_by_forward(model, prompts[i], 7);
    EXPECT_EQ(plain[i].ids, want) << "static batch, prompt " << i;
    EXPECT_EQ(cont[i].ids, want) << "continuous batching, prompt " << i;
  }
}

// The decoder makes q/k/v (and gate/up) views of one tensor per layer: the parameters keep their
// values, names and shapes, the model's logits do not change, and a second decoder copies
// nothing.
TEST(Generate, DecoderStacksTheProjectionWeightsWithoutChangingThem) {
  LlamaForCausalLM model = tiny_gqa_model(40, 4);
  torch::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> before;
  for (const auto& p : model->named_parameters()) before[p.key()] = p.value().clone();
  const auto ids = torch::tensor({1, 4, 9, 2, 7}, torch::kLong).view({1, 5});
  const auto logits = model(ids);
  CachedDecoder first(model, 2, 8);
  auto& layer = *model->model->layers->ptr<LlamaDecoderLayerImpl>(0);
  const auto& q = layer.self_attn->q_proj->weight;
  const auto& k = layer.self_attn->k_proj->weight;
  const auto& v = layer.self_attn->v_proj->weight;
  EXPECT_TRUE(k.storage().is_alias_of(q.storage()));
  EXPECT_EQ(k.data_ptr<float>(), q.data_ptr<float>() + q.numel());
  EXPECT_EQ(v.data_ptr<float>(), k.data_ptr<float>() + k.numel());
  EXPECT_EQ(layer.mlp->up_proj->weight.data_ptr<float>(),
            layer.mlp->gate_proj->weight.data_ptr<float>() + layer.mlp->gate_proj->weight.numel());
  const float* q_at = q.data_ptr<float>();
  CachedDecoder second(model, 1, 4);
  EXPECT_EQ(q.data_ptr<float>(), q_at) << "the second decoder copied the weights again";
  size_t n = 0;
  for (const auto& p : model->named_parameters()) {
    ++n;
    ASSERT_TRUE(before.count(p.key())) << p.key();
    EXPECT_TRUE(at::equal(p.value(), before[p.key()])) << p.key();
    EXPECT_EQ(p.value().sizes(), before[p.key()].sizes()) << p.key();
  }
  EXPECT_EQ(n, before.size());
  // (A GEMM may round differently on differently aligned data: close, not bit-equal.)
  EXPECT_TRUE(at::allclose(model(ids), logits, 1e-5, 1e-6));
}
