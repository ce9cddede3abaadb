// CPU backend invariances the engine relies on: a sequence's outputs do not depend on what else is
// in the batch, on how its tokens are chunked, on the thread count, or on a rollback (forward k then
// truncate equals forward fewer); KV capacity is accounted in blocks and a refused forward changes
// nothing; bad requests and bad replacement weights leave the backend as it was. Token trees: every
// node's logits, sample and logprobs are bitwise those of the chain of its root path, a chain
// written as a tree is the chain, and an accepted path compacted in place equals feeding the path
// from scratch.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "checkpoint_writer.h"
#include "policy/cpu_backend.h"
#include "policy/plain_decode.h"
#include "policy/thread_pool.h"

namespace lp = longtail::policy;
namespace lt = longtail::test;
namespace fs = std::filesystem;

namespace {

const fs::path kQwen3 = fs::path(LONGTAIL_GOLDEN_DIR) / "qwen3_qknorm_bf16";
const fs::path kLlama = fs::path(LONGTAIL_GOLDEN_DIR) / "llama_rope_llama3";

lp::BackendOptions opts(int threads = 2, int64_t max_kv = 0, int32_t block = 16) {
  lp::BackendOptions o;
  o.num_threads = threads;
  o.max_kv_tokens = max_kv;
  o.kv_block_size = block;
  return o;
}

lp::SamplingParams sampled(uint64_t seed = 3) {
  lp::SamplingParams s;
  s.temperature = 1.0f;
  s.top_k = 50;
  s.seed = seed;
  return s;
}

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * 37 + salt * 101 + 5) % 500);
  return p;
}

lp::SequenceChunk chunk(int64_t seq, uint64_t uid, std::span<const int32_t> toks, int32_t first_output,
                        lp::SamplingParams s = sampled()) {
  lp::SequenceChunk c;
  c.seq = seq;
  c.uid = uid;
  c.tokens = toks;
  c.first_output = first_output;
  c.sampling = s;
  return c;
}

TEST(CpuBackendTest, BatchCompositionDoesNotChangeSamples) {
  lp::CpuBackend be(kQwen3, opts());
  lp::DecodeOptions d;
  d.sampling = sampled();
  d.max_new_tokens = 12;
  const std::vector<lp::DecodeRequest> alone = {{prompt(7, 0), lp::sample_uid(0, 0)}};
  std::vector<lp::DecodeRequest> batch;
  for (int i = 0; i < 5; ++i) batch.push_back({prompt(3 + 2 * i, i + 1), lp::sample_uid(i + 1, 0)});
  batch.insert(batch.begin() + 2, alone[0]);
  const auto a = lp::plain_decode(be, alone, d);
  const auto b = lp::plain_decode(be, batch, d);
  EXPECT_EQ(a[0].tokens, b[2].tokens);
  EXPECT_EQ(a[0].logprobs, b[2].logprobs);  // bit-identical, not merely close
}

TEST(CpuBackendTest, ChunkingAndThreadsDoNotChangeOutputs) {
  const auto p = prompt(13, 4);
  std::vector<std::vector<float>> logits_by_run;
  std::vector<int32_t> tokens_by_run;
  for (int run = 0; run < 3; ++run) {
    lp::CpuBackend be(kLlama, opts(run == 2 ? 1 : 2));
    const int64_t s = be.create_sequence();
    const int step = run == 0 ? 13 : (run == 1 ? 1 : 5);  // one chunk / token by token / chunks of 5
    std::vector<lp::TokenOutput> out;
    std::vector<float> logits;
    for (int i = 0; i < 13; i += step) {
      const int n = std::min(step, 13 - i);
      const bool last = i + n == 13;
      auto c = chunk(s, 99, std::span<const int32_t>(p.data() + i, n), last ? n - 1 : n);
      out = be.forward_with_logits(std::span(&c, 1), &logits);
    }
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(be.sequence_length(s), 13);
    logits_by_run.push_back(logits);
    tokens_by_run.push_back(out[0].sampled);
  }
  EXPECT_EQ(logits_by_run[0], logits_by_run[1]);
  EXPECT_EQ(logits_by_run[0], logits_by_run[2]);
  EXPECT_EQ(tokens_by_run[0], tokens_by_run[1]);
  EXPECT_EQ(tokens_by_run[0], tokens_by_run[2]);
}

TEST(CpuBackendTest, RollbackEqualsShorterForward) {
  const auto p = prompt(9, 1);
  const std::vector<int32_t> draft = {11, 22, 33, 44, 55};
  const std::vector<int32_t> next = {77, 88};
  for (int j = 1; j <= 5; ++j) {
    lp::CpuBackend be(kQwen3, opts());
    const int64_t a = be.create_sequence(), b = be.create_sequence();
    for (int64_t s : {a, b}) {
      auto c = chunk(s, 5, p, static_cast<int32_t>(p.size()));
      be.forward(std::span(&c, 1));
    }
    // a: verify all k = 5 drafts then roll back j of them; b: only the k - j accepted ones.
    auto ca = chunk(a, 5, draft, 0);
    be.forward(std::span(&ca, 1));
    be.truncate(a, static_cast<int32_t>(p.size() + 5 - j));
    if (5 - j > 0) {
      auto cb = chunk(b, 5, std::span<const int32_t>(draft.data(), 5 - j), 0);
      be.forward(std::span(&cb, 1));
    }
    ASSERT_EQ(be.sequence_length(a), be.sequence_length(b));
    std::vector<float> la, lb;
    auto na = chunk(a, 5, next, 0), nb = chunk(b, 5, next, 0);
    const auto oa = be.forward_with_logits(std::span(&na, 1), &la);
    const auto ob = be.forward_with_logits(std::span(&nb, 1), &lb);
    EXPECT_EQ(la, lb) << "j = " << j;
    ASSERT_EQ(oa.size(), 2u);
    EXPECT_EQ(oa[0].sampled, ob[0].sampled);
    EXPECT_EQ(oa[0].next_input_logprob, ob[0].next_input_logprob);
    EXPECT_TRUE(std::isnan(oa[1].next_input_logprob));
  }
}

TEST(CpuBackendTest, OutputsMatchTheSamplerOnTheirLogits) {
  lp::CpuBackend be(kQwen3, opts());
  const auto p = prompt(6, 2);
  const int64_t s = be.create_sequence();
  auto c = chunk(s, 31, p, 2);
  std::vector<float> logits;
  const auto out = be.forward_with_logits(std::span(&c, 1), &logits);
  ASSERT_EQ(out.size(), 4u);
  const size_t V = be.config().vocab_size;
  for (size_t o = 0; o < out.size(); ++o) {
    std::span<const float> row(logits.data() + o * V, V);
    const auto ref = lp::sample_token(row, c.sampling, 31, static_cast<int64_t>(2 + o + 1));
    EXPECT_EQ(out[o].sampled, ref.token);
    EXPECT_EQ(out[o].sampled_logprob, ref.logprob);
    if (o + 1 < out.size()) EXPECT_EQ(out[o].next_input_logprob, lp::token_logprob(row, 1.0f, p[2 + o + 1]));
  }
}

TEST(CpuBackendTest, KvCapacityIsAccountedInBlocks) {
  lp::CpuBackend be(kQwen3, opts(2, 40, 8));  // 5 blocks of 8
  EXPECT_EQ(be.kv_capacity().total_tokens, 40);
  EXPECT_EQ(be.kv_capacity().block_size, 8);
  const int64_t a = be.create_sequence(), b = be.create_sequence();
  const auto p = prompt(17, 3);  // 3 blocks
  auto ca = chunk(a, 1, p, 17);
  be.forward(std::span(&ca, 1));
  EXPECT_EQ(be.kv_capacity().free_tokens, 16);
  // b needs 3 blocks, only 2 free: refused before anything changes, a included.
  const std::vector<int32_t> one = {3};
  lp::SequenceChunk both[2] = {chunk(a, 1, one, 1), chunk(b, 2, p, 17)};
  EXPECT_THROW(be.forward(both), lp::KvCapacityError);
  EXPECT_EQ(be.sequence_length(a), 17);
  EXPECT_EQ(be.sequence_length(b), 0);
  EXPECT_EQ(be.kv_capacity().free_tokens, 16);
  be.truncate(a, 16);  // frees the third block
  EXPECT_EQ(be.kv_capacity().free_tokens, 24);
  be.truncate(a, 9);  // still two blocks
  EXPECT_EQ(be.kv_capacity().free_tokens, 24);
  auto cb = chunk(b, 2, p, 17);
  be.forward(std::span(&cb, 1));
  EXPECT_EQ(be.kv_capacity().free_tokens, 0);
  be.release_sequence(b);
  EXPECT_EQ(be.kv_capacity().free_tokens, 24);
}

TEST(CpuBackendTest, BadRequestsChangeNothing) {
  lp::CpuBackend be(kQwen3, opts());
  const int64_t s = be.create_sequence();
  const auto p = prompt(4, 0);
  auto c = chunk(s, 1, p, 4);
  be.forward(std::span(&c, 1));
  const std::vector<int32_t> bad = {1, 512};
  auto cb = chunk(s, 1, bad, 0);
  EXPECT_THROW(be.forward(std::span(&cb, 1)), std::invalid_argument);
  auto cu = chunk(12345, 1, p, 0);
  EXPECT_THROW(be.forward(std::span(&cu, 1)), std::invalid_argument);
  const std::vector<int32_t> long_one(253, 1);  // 4 + 253 > max_position_embeddings 256
  auto cl = chunk(s, 1, long_one, 0);
  EXPECT_THROW(be.forward(std::span(&cl, 1)), std::invalid_argument);
  lp::SequenceChunk dup[2] = {chunk(s, 1, p, 0), chunk(s, 1, p, 0)};
  EXPECT_THROW(be.forward(dup), std::invalid_argument);
  EXPECT_THROW(be.truncate(s, 5), std::invalid_argument);
  EXPECT_EQ(be.sequence_length(s), 4);
}

// A random token tree under the last committed token: node 0 continues the context (parent -1),
// every other node hangs under an earlier one, siblings may share tokens (the backend does not care).
struct Tree {
  std::vector<int32_t> tokens, parents;
  std::vector<int32_t> path_to(int32_t node) const {
    std::vector<int32_t> p;
    for (int32_t a = node; a >= 0; a = parents[a]) p.push_back(a);
    std::reverse(p.begin(), p.end());
    return p;
  }
};

Tree random_tree(int nodes, uint32_t seed) {
  std::mt19937 rng(seed);
  Tree t;
  for (int i = 0; i < nodes; ++i) {
    t.tokens.push_back(static_cast<int32_t>(rng() % 500));
    t.parents.push_back(i == 0 ? -1 : static_cast<int32_t>(rng() % i));
  }
  return t;
}

lp::SequenceChunk tree_chunk(int64_t seq, uint64_t uid, const Tree& t, lp::SamplingParams s = sampled()) {
  lp::SequenceChunk c = chunk(seq, uid, t.tokens, 0, s);
  c.parents = t.parents;
  return c;
}

TEST(CpuBackendTest, TreeNodesEqualTheChainsOfTheirPaths) {
  const auto p = prompt(11, 6);
  for (const lp::SamplingParams& s : {lp::SamplingParams{}, sampled(9)}) {  // greedy, then T = 1
    for (uint32_t seed : {1u, 2u, 3u}) {
      lp::CpuBackend be(kQwen3, opts());
      const Tree t = random_tree(14, seed);
      const int64_t a = be.create_sequence();
      auto ca = chunk(a, 7, p, static_cast<int32_t>(p.size()), s);
      be.forward(std::span(&ca, 1));
      auto ct = tree_chunk(a, 7, t, s);
      std::vector<float> lt;
      const auto ot = be.forward_with_logits(std::span(&ct, 1), &lt);
      ASSERT_EQ(ot.size(), t.tokens.size());
      ASSERT_EQ(be.sequence_length(a), static_cast<int32_t>(p.size() + t.tokens.size()));
      const size_t V = be.config().vocab_size;
      for (int32_t node = 0; node < static_cast<int32_t>(t.tokens.size()); ++node) {
        const std::vector<int32_t> path = t.path_to(node);
        std::vector<int32_t> chain;
        for (int32_t n : path) chain.push_back(t.tokens[n]);
        const int64_t b = be.create_sequence();
        auto cb = chunk(b, 7, p, static_cast<int32_t>(p.size()), s);
        be.forward(std::span(&cb, 1));
        auto cc = chunk(b, 7, chain, 0, s);
        std::vector<float> lc;
        const auto oc = be.forward_with_logits(std::span(&cc, 1), &lc);
        be.release_sequence(b);
        const std::vector<float> tree_row(lt.begin() + node * V, lt.begin() + (node + 1) * V);
        const std::vector<float> chain_row(lc.end() - V, lc.end());
        EXPECT_EQ(tree_row, chain_row) << "node " << node << " seed " << seed;
        EXPECT_EQ(ot[node].sampled, oc.back().sampled) << node;
        EXPECT_EQ(ot[node].sampled_logprob, oc.back().sampled_logprob) << node;
        // The next given input of a tree node is its first child.
        const auto child = std::find(t.parents.begin(), t.parents.end(), node);
        if (child == t.parents.end()) {
          EXPECT_TRUE(std::isnan(ot[node].next_input_logprob)) << node;
        } else {
          const int32_t c = static_cast<int32_t>(child - t.parents.begin());
          EXPECT_EQ(ot[node].next_input_logprob, lp::token_logprob(tree_row, s.temperature, t.tokens[c])) << node;
        }
      }
    }
  }
}

TEST(CpuBackendTest, ChainWrittenAsTreeIsTheChain) {
  const auto p = prompt(8, 2);
  const std::vector<int32_t> draft = {4, 40, 400, 41, 14};
  const std::vector<int32_t> as_tree = {-1, 0, 1, 2, 3};
  lp::CpuBackend be(kLlama, opts());
  std::vector<std::vector<float>> logits(2);
  std::vector<std::vector<lp::TokenOutput>> outs(2);
  for (int run = 0; run < 2; ++run) {
    const int64_t s = be.create_sequence();
    auto c = chunk(s, 3, p, static_cast<int32_t>(p.size()));
    be.forward(std::span(&c, 1));
    auto d = chunk(s, 3, draft, 0);
    if (run == 1) d.parents = as_tree;
    outs[run] = be.forward_with_logits(std::span(&d, 1), &logits[run]);
  }
  EXPECT_EQ(logits[0], logits[1]);
  ASSERT_EQ(outs[0].size(), outs[1].size());
  for (size_t i = 0; i < outs[0].size(); ++i) {
    EXPECT_EQ(outs[0][i].sampled, outs[1][i].sampled);
    EXPECT_EQ(outs[0][i].sampled_logprob, outs[1][i].sampled_logprob);
    EXPECT_EQ(std::isnan(outs[0][i].next_input_logprob), std::isnan(outs[1][i].next_input_logprob));
    if (!std::isnan(outs[0][i].next_input_logprob)) EXPECT_EQ(outs[0][i].next_input_logprob, outs[1][i].next_input_logprob);
  }
}

// The accepted path moved into consecutive rows is what feeding the path itself writes: the next
// forwards see bitwise the same cache. Also with a prompt in the same chunk as the tree's root.
TEST(CpuBackendTest, CompactedTreePathEqualsRecompute) {
  const auto p = prompt(10, 3);
  const std::vector<int32_t> next = {9, 99, 199};
  for (uint32_t seed : {4u, 5u, 6u, 7u}) {
    const Tree t = random_tree(15, seed);
    for (int32_t leaf : {0, 6, 14}) {
      const std::vector<int32_t> path = t.path_to(leaf);
      lp::CpuBackend be(kQwen3, opts(2, 4096, 4));
      const int64_t a = be.create_sequence(), b = be.create_sequence();
      for (int64_t s : {a, b}) {
        auto c = chunk(s, 2, p, static_cast<int32_t>(p.size()));
        be.forward(std::span(&c, 1));
      }
      const int64_t free_before = be.kv_capacity().free_tokens;
      auto ct = tree_chunk(a, 2, t);
      be.forward(std::span(&ct, 1));
      be.compact_kv(a, static_cast<int32_t>(p.size()), path);
      ASSERT_EQ(be.sequence_length(a), static_cast<int32_t>(p.size() + path.size()));
      std::vector<int32_t> chain;
      for (int32_t n : path) chain.push_back(t.tokens[n]);
      auto cb = chunk(b, 2, chain, 0);
      be.forward(std::span(&cb, 1));
      // b's blocks are those a holds again after the compaction (free count back to b's share).
      EXPECT_EQ(be.kv_capacity().free_tokens, free_before - 2 * (((static_cast<int64_t>(p.size() + chain.size()) + 3) / 4) -
                                                                  ((static_cast<int64_t>(p.size()) + 3) / 4)) * 4);
      std::vector<float> la, lb;
      auto na = chunk(a, 2, next, 0), nb = chunk(b, 2, next, 0);
      const auto oa = be.forward_with_logits(std::span(&na, 1), &la);
      const auto ob = be.forward_with_logits(std::span(&nb, 1), &lb);
      EXPECT_EQ(la, lb) << "seed " << seed << " leaf " << leaf;
      for (size_t i = 0; i < oa.size(); ++i) EXPECT_EQ(oa[i].sampled, ob[i].sampled);
    }
  }
}

TEST(CpuBackendTest, BadTreesAndCompactionsChangeNothing) {
  lp::CpuBackend be(kQwen3, opts());
  EXPECT_TRUE(be.supports_token_trees());
  const int64_t s = be.create_sequence();
  const auto p = prompt(5, 1);
  auto c = chunk(s, 1, p, 5);
  be.forward(std::span(&c, 1));
  const std::vector<int32_t> toks = {1, 2, 3};
  for (const std::vector<int32_t>& parents :
       {std::vector<int32_t>{-1, 0}, std::vector<int32_t>{-1, 1, 0}, std::vector<int32_t>{-1, 0, -2},
        std::vector<int32_t>{0, 0, 1}}) {
    auto ct = chunk(s, 1, toks, 0);
    ct.parents = parents;
    EXPECT_THROW(be.forward(std::span(&ct, 1)), std::invalid_argument);
    EXPECT_EQ(be.sequence_length(s), 5);
  }
  const std::vector<int32_t> unsorted = {1, 0}, out_of_range = {0, 5}, fine = {0, 2};
  EXPECT_THROW(be.compact_kv(s, 2, unsorted), std::invalid_argument);
  EXPECT_THROW(be.compact_kv(s, 2, out_of_range), std::invalid_argument);  // row 2 + 5 >= 5
  EXPECT_THROW(be.compact_kv(s, 6, fine), std::invalid_argument);
  EXPECT_EQ(be.sequence_length(s), 5);
  be.compact_kv(s, 2, fine);
  EXPECT_EQ(be.sequence_length(s), 4);
}

// can_fit is forward's own capacity check, asked beforehand: it refuses exactly what forward refuses.
TEST(CpuBackendTest, CanFitAnswersAsForwardDoes) {
  lp::CpuBackend be(kQwen3, opts(2, 40, 8));  // 5 blocks of 8
  const int64_t a = be.create_sequence(), b = be.create_sequence();
  const auto p = prompt(17, 3);  // 3 blocks
  const lp::KvGrowth a17[] = {{a, 17}};
  EXPECT_TRUE(be.can_fit(a17));
  auto ca = chunk(a, 1, p, 17);
  be.forward(std::span(&ca, 1));
  const lp::KvGrowth grow[] = {{a, 7}, {b, 16}};  // a stays in 3 blocks, b takes 2
  EXPECT_TRUE(be.can_fit(grow));
  const lp::KvGrowth too_much[] = {{a, 8}, {b, 16}};  // a needs a 4th block: 6 > 5
  EXPECT_FALSE(be.can_fit(too_much));
  const lp::KvGrowth fresh[] = {{-1, 16}}, fresh_big[] = {{-1, 17}};  // not created yet
  EXPECT_TRUE(be.can_fit(fresh));
  EXPECT_FALSE(be.can_fit(fresh_big));
  const lp::KvGrowth unknown[] = {{12345, 1}};
  EXPECT_THROW(be.can_fit(unknown), std::invalid_argument);
  const std::vector<int32_t> one = {3};
  lp::SequenceChunk both[2] = {chunk(a, 1, one, 1), chunk(b, 2, p, 17)};
  const lp::KvGrowth asked[] = {{a, 1}, {b, 17}};
  EXPECT_FALSE(be.can_fit(asked));
  EXPECT_THROW(be.forward(both), lp::KvCapacityError);
  lp::CpuBackend unlimited(kQwen3, opts());
  const lp::KvGrowth huge[] = {{-1, 1 << 30}};
  EXPECT_TRUE(unlimited.can_fit(huge));
}

// One input check for both backends (policy/backend.h): top_p in (0, 1], temperature finite >= 0.
TEST(CpuBackendTest, SamplingParametersOutsideTheirRangesAreRefused) {
  lp::CpuBackend be(kQwen3, opts());
  const int64_t s = be.create_sequence();
  const auto p = prompt(4, 0);
  for (float top_p : {0.0f, -1.0f, 1.5f, std::nanf("")}) {
    lp::SamplingParams sp = sampled();
    sp.top_p = top_p;
    auto c = chunk(s, 1, p, 4, sp);
    EXPECT_THROW(be.forward(std::span(&c, 1)), std::invalid_argument) << "top_p " << top_p;
    ASSERT_TRUE(lp::check_sampling_params(sp).has_value());
    EXPECT_EQ(lp::check_sampling_params(sp)->field, "top_p");
  }
  lp::SamplingParams sp = sampled();
  sp.temperature = std::numeric_limits<float>::infinity();
  EXPECT_EQ(lp::check_sampling_params(sp)->field, "temperature");
  EXPECT_EQ(be.sequence_length(s), 0);
  sp = sampled();
  sp.top_p = 1.0f;
  EXPECT_FALSE(lp::check_sampling_params(sp).has_value());
}

TEST(CpuBackendTest, ReplaceWeightsValidatesBeforeSwapping) {
  lp::CpuBackend be(kQwen3, opts());
  const auto p = prompt(5, 0);
  auto run = [&] {
    const int64_t s = be.create_sequence();
    auto c = chunk(s, 1, p, 4);
    std::vector<float> logits;
    be.forward_with_logits(std::span(&c, 1), &logits);
    be.release_sequence(s);
    return logits;
  };
  const auto before = run();
  EXPECT_THROW(be.replace_weights(kLlama), lp::LoadError);  // other architecture and shapes
  const fs::path broken = lt::fresh_dir("replace_broken");
  for (const auto& e : fs::directory_iterator(kQwen3)) fs::copy(e.path(), broken / e.path().filename());
  fs::resize_file(broken / "model.safetensors", fs::file_size(broken / "model.safetensors") - 100);
  EXPECT_THROW(be.replace_weights(broken), lp::LoadError);
  EXPECT_EQ(run(), before);
  be.replace_weights(kQwen3);
  EXPECT_EQ(run(), before);
  fs::remove_all(broken);
}

}  // namespace

namespace {

TEST(ThreadPoolTest, CoversTheRangeOnceAndPropagatesErrors) {
  lp::ThreadPool pool(3);
  for (int64_t n : {1, 2, 5, 1000}) {
    std::vector<int> hits(static_cast<size_t>(n), 0);
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i]++;
    });
    EXPECT_EQ(std::count(hits.begin(), hits.end(), 1), n);
  }
  EXPECT_THROW(pool.parallel_for(9, [](int64_t b, int64_t) {
                 if (b > 0) throw std::runtime_error("worker failed");
               }),
               std::runtime_error);
  int sum = 0;
  pool.parallel_for(3, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) __atomic_add_fetch(&sum, 1, __ATOMIC_RELAXED);
  });
  EXPECT_EQ(sum, 3);  // still usable after an error
}

}  // namespace
