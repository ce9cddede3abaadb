// Suffix automata against brute force on random small-alphabet strings: occurrence counts of every
// context and of each continuation, live matching, own-context repeats and greedy drafts.
#include "drafter/suffix_automaton.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace longtail::drafter {
namespace {

using Str = std::vector<int32_t>;

std::vector<Str> random_strings(std::mt19937& rng, int n, int max_len, int alphabet) {
  std::uniform_int_distribution<int> len(1, max_len), tok(0, alphabet - 1);
  std::vector<Str> out(static_cast<size_t>(n));
  for (auto& s : out) {
    s.resize(static_cast<size_t>(len(rng)));
    for (auto& t : s) t = tok(rng);
  }
  return out;
}

// Number of (string, end position) pairs where ctx occurs.
int64_t occurrences(const std::vector<Str>& strings, const Str& ctx) {
  int64_t n = 0;
  for (const auto& s : strings) {
    for (size_t i = 0; i + ctx.size() <= s.size(); ++i) {
      if (std::equal(ctx.begin(), ctx.end(), s.begin() + static_cast<std::ptrdiff_t>(i))) ++n;
    }
  }
  return n;
}

int32_t walk(const FrozenSam& sam, const Str& ctx) {
  int32_t v = 0;
  for (const int32_t t : ctx) {
    v = sam.find(v, t);
    if (v < 0) return -1;
  }
  return v;
}

TEST(SuffixAutomaton, CountsMatchBruteForceForEveryContext) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    const auto strings = random_strings(rng, 1 + trial % 5, 30, 2 + trial % 3);
    SamBuilder b;
    for (const auto& s : strings) b.add_string(s);
    const FrozenSam sam(b);
    // Every substring of every string (all contexts that occur) and one extra token after it.
    std::map<Str, bool> seen;
    for (const auto& s : strings) {
      for (size_t i = 0; i < s.size(); ++i) {
        for (size_t j = i; j <= s.size() && j - i <= 12; ++j) {
          const Str ctx(s.begin() + static_cast<std::ptrdiff_t>(i), s.begin() + static_cast<std::ptrdiff_t>(j));
          if (!seen.emplace(ctx, true).second) continue;
          const int32_t v = walk(sam, ctx);
          ASSERT_GE(v, 0);
          if (!ctx.empty()) {
            ASSERT_EQ(sam.count(v), occurrences(strings, ctx)) << "trial " << trial;
          }
          for (int32_t t = 0; t < 5; ++t) {
            Str next = ctx;
            next.push_back(t);
            const int64_t want = occurrences(strings, next);
            const int32_t u = sam.find(v, t);
            if (want == 0) {
              ASSERT_EQ(u, -1);
            } else {
              ASSERT_GE(u, 0);
              ASSERT_EQ(sam.count(u), want);
            }
          }
        }
      }
    }
    EXPECT_EQ(sam.check(), "");
    // A context that occurs nowhere has no path.
    EXPECT_EQ(walk(sam, Str{99}), -1);
    EXPECT_LE(sam.states(), 2 * 31 * static_cast<int64_t>(strings.size()) + 1);
  }
}

// Large enough for every escape of the compact layout: a root with more than 65535 edges (edge
// offsets past 16 bits), counts past 255, high-degree states (binary search), far edge targets.
TEST(SuffixAutomaton, LargeAutomatonPassesIntegrityCheckAndCountsMatch) {
  std::mt19937 rng(11);
  std::vector<Str> strings;
  Str wide(70000);
  for (size_t i = 0; i < wide.size(); ++i) wide[i] = static_cast<int32_t>(i);
  strings.push_back(wide);
  std::uniform_int_distribution<int> tok(0, 3000);
  for (int i = 0; i < 400; ++i) {
    Str s = {5, 6, 7};  // a context seen 400+ times
    for (int j = 0; j < 60; ++j) s.push_back(tok(rng));
    strings.push_back(s);
  }
  SamBuilder b;
  for (const auto& s : strings) b.add_string(s);
  const FrozenSam sam(b);
  EXPECT_EQ(sam.check(), "");
  EXPECT_EQ(sam.degree(0), 70000u);
  EXPECT_GE(sam.count(walk(sam, Str{5, 6, 7})), 400u);
  std::uniform_int_distribution<size_t> pick(1, strings.size() - 1), len(1, 6);
  for (int trial = 0; trial < 300; ++trial) {
    const Str& s = strings[trial % 7 == 0 ? 0 : pick(rng)];
    const size_t l = len(rng);
    std::uniform_int_distribution<size_t> at(0, s.size() - l);
    const size_t i = at(rng);
    const Str ctx(s.begin() + static_cast<std::ptrdiff_t>(i), s.begin() + static_cast<std::ptrdiff_t>(i + l));
    const int32_t v = walk(sam, ctx);
    ASSERT_GE(v, 0);
    ASSERT_EQ(sam.count(v), occurrences(strings, ctx)) << "trial " << trial;
  }
  EXPECT_EQ(walk(sam, Str{69999, 0}), -1);
}

TEST(SuffixAutomaton, MatchTracksLongestSuffixThatOccurs) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    const auto strings = random_strings(rng, 3, 40, 3);
    SamBuilder b;
    for (const auto& s : strings) b.add_string(s);
    const FrozenSam sam(b);
    const auto feed = random_strings(rng, 1, 60, 3)[0];
    SamMatch m;
    for (size_t n = 1; n <= feed.size(); ++n) {
      sam.advance(m, feed[n - 1]);
      int32_t want = 0;
      for (size_t l = n; l >= 1; --l) {
        const Str suffix(feed.begin() + static_cast<std::ptrdiff_t>(n - l), feed.begin() + static_cast<std::ptrdiff_t>(n));
        if (occurrences(strings, suffix) > 0) {
          want = static_cast<int32_t>(l);
          break;
        }
      }
      ASSERT_EQ(m.length, want) << "trial " << trial << " after " << n << " tokens";
      ASSERT_LE(m.length, sam.length(m.state));
    }
  }
}

TEST(SuffixAutomaton, OwnContextLongestRepeatAndEarliestEnd) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 10; ++trial) {
    const auto text = random_strings(rng, 1, 80, 2 + trial % 2)[0];
    SamBuilder b;
    for (size_t n = 1; n <= text.size(); ++n) {
      b.append(text[n - 1]);
      // brute force: longest suffix of text[0..n) that also ends before n - 1
      int32_t want = 0;
      int64_t want_end = -1;
      for (size_t l = n - 1; l >= 1 && !want; --l) {
        for (size_t e = l - 1; e + 1 < n; ++e) {
          if (std::equal(text.begin() + static_cast<std::ptrdiff_t>(e + 1 - l), text.begin() + static_cast<std::ptrdiff_t>(e + 1),
                         text.begin() + static_cast<std::ptrdiff_t>(n - l))) {
            want = static_cast<int32_t>(l);
            want_end = static_cast<int64_t>(e);
            break;
          }
        }
      }
      int64_t end = -1;
      const int32_t got = b.longest_repeat(end);
      ASSERT_EQ(got, want) << "trial " << trial << " n " << n;
      if (want) {
        ASSERT_EQ(end, want_end);
      }
      // recent_repeat: same length, and its end is a true earlier occurrence of the repeat.
      int64_t recent = -1;
      ASSERT_EQ(b.recent_repeat(recent), want);
      if (want) {
        ASSERT_GE(recent, want_end);
        ASSERT_LT(recent, static_cast<int64_t>(n) - 1);
        ASSERT_TRUE(std::equal(text.begin() + static_cast<std::ptrdiff_t>(recent + 1 - want),
                               text.begin() + static_cast<std::ptrdiff_t>(recent + 1),
                               text.begin() + static_cast<std::ptrdiff_t>(n - static_cast<size_t>(want))))
            << "trial " << trial << " n " << n;
      }
    }
  }
}

TEST(SuffixAutomaton, DraftFollowsMostFrequentPathAboveMinProb) {
  // "1 2 3" x3, "1 2 4" x1, "1 5" x1: after "1", continuation 2 has 4/5, then 3 has 3/5.
  SamBuilder b;
  for (int i = 0; i < 3; ++i) b.add_string(Str{1, 2, 3});
  b.add_string(Str{1, 2, 4});
  b.add_string(Str{1, 5});
  const FrozenSam sam(b);
  SamMatch m;
  sam.advance(m, 1);
  Str tokens;
  std::vector<float> probs;
  sam.draft(m, 8, 0.1, tokens, probs);
  EXPECT_EQ(tokens, (Str{2, 3}));
  ASSERT_EQ(probs.size(), 2u);
  EXPECT_FLOAT_EQ(probs[0], 0.8f);
  EXPECT_FLOAT_EQ(probs[1], 0.6f);
  tokens.clear();
  probs.clear();
  sam.draft(m, 8, 0.7, tokens, probs);  // 3 has path probability 0.6 < 0.7
  EXPECT_EQ(tokens, (Str{2}));
  tokens.clear();
  probs.clear();
  sam.draft(m, 1, 0.1, tokens, probs);  // budget
  EXPECT_EQ(tokens, (Str{2}));
  tokens.clear();
  sam.draft(SamMatch{}, 8, 0.1, tokens, probs);  // no context: nothing
  EXPECT_TRUE(tokens.empty());
}

}  // namespace
}  // namespace longtail::drafter
