// Synthetic long-tail rollout workload; see the header.
#include "testing/workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <stdexcept>

namespace longtail::workload {
namespace {
using Rng = std::mt19937_64;

std::vector<int32_t> random_tokens(Rng& rng, int32_t n, int32_t vocab) {
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& t : v) t = tok(rng);
  return v;
}
}  // namespace

std::vector<WorkloadRollout> generate_workload(const WorkloadOptions& o) {
  if (o.prompts < 1 || o.samples < 1 || o.rounds < 1 || o.vocab < 2 || o.min_segment < 1 ||
      o.max_segment < o.min_segment || o.max_len < 1) {
    throw std::invalid_argument("workload: invalid options");
  }
  Rng rng(o.seed);
  std::uniform_int_distribution<int32_t> seg_len(o.min_segment, o.max_segment);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::uniform_int_distribution<int32_t> tok(0, o.vocab - 1);
  std::normal_distribution<double> normal(0.0, 1.0);

  std::vector<std::vector<int32_t>> shared;
  for (int32_t i = 0; i < o.shared_segments; ++i) shared.push_back(random_tokens(rng, seg_len(rng), o.vocab));
  struct Prompt {
    std::vector<int32_t> tokens;
    double typical_len;
    std::vector<std::vector<int32_t>> segments;
  };
  std::vector<Prompt> prompts;
  for (int32_t p = 0; p < o.prompts; ++p) {
    Prompt pr;
    pr.tokens = random_tokens(rng, o.prompt_len, o.vocab);
    pr.typical_len = o.median_len * std::exp(o.prompt_len_sigma * normal(rng));
    for (int32_t s = 0; s < o.prompt_segments; ++s) pr.segments.push_back(random_tokens(rng, seg_len(rng), o.vocab));
    prompts.push_back(std::move(pr));
  }
  auto copy_segment = [&](const std::vector<int32_t>& seg, std::vector<int32_t>& out) {
    for (const int32_t t : seg) out.push_back(unit(rng) < o.mutation ? tok(rng) : t);
  };
  std::vector<WorkloadRollout> out;
  for (int32_t r = 0; r < o.rounds; ++r) {
    for (int32_t p = 0; p < o.prompts; ++p) {
      Prompt& pr = prompts[static_cast<size_t>(p)];
      if (r > 0) {
        for (auto& seg : pr.segments) {
          if (unit(rng) < o.drift) seg = random_tokens(rng, seg_len(rng), o.vocab);
        }
      }
      for (int32_t s = 0; s < o.samples; ++s) {
        WorkloadRollout w;
        w.prompt_id = "p" + std::to_string(p);
        w.sample = s;
        w.round = r;
        w.prompt_tokens = pr.tokens;
        const double len = pr.typical_len * std::exp(o.sample_len_sigma * normal(rng));
        const auto target = static_cast<size_t>(std::clamp(len, 1.0, static_cast<double>(o.max_len)));
        // Segments are chosen with a Zipf-like preference (earlier ones recur more), as reasoning
        // traces reuse a few phrases often and many rarely.
        while (w.response_tokens.size() < target) {
          const double u = unit(rng);
          if (u < o.p_prompt_segment) {
            const auto k = static_cast<size_t>(pr.segments.size() * std::pow(unit(rng), 2.0));
            copy_segment(pr.segments[std::min(k, pr.segments.size() - 1)], w.response_tokens);
          } else if (u < o.p_prompt_segment + o.p_shared_segment && !shared.empty()) {
            const auto k = static_cast<size_t>(shared.size() * std::pow(unit(rng), 2.0));
            copy_segment(shared[std::min(k, shared.size() - 1)], w.response_tokens);
          } else {
            const auto noise = random_tokens(rng, 1 + static_cast<int32_t>(unit(rng) * 8), o.vocab);
            w.response_tokens.insert(w.response_tokens.end(), noise.begin(), noise.end());
          }
        }
        w.response_tokens.resize(target);
        out.push_back(std::move(w));
      }
    }
  }
  return out;
}

void write_jsonl(const std::vector<WorkloadRollout>& rollouts, const std::filesystem::path& file) {
  std::ofstream f(file);
  if (!f) throw std::runtime_error("workload: cannot write " + file.string());
  auto arr = [&](const std::vector<int32_t>& v) {
    f << '[';
    for (size_t i = 0; i < v.size(); ++i) f << (i ? "," : "") << v[i];
    f << ']';
  };
  for (const auto& r : rollouts) {
    f << "{\"prompt_id\":\"" << r.prompt_id << "\",\"sample\":" << r.sample << ",\"step\":" << r.round
      << ",\"prompt_tokens\":";
    arr(r.prompt_tokens);
    f << ",\"response_tokens\":";
    arr(r.response_tokens);
    f << "}\n";
  }
  if (!f) throw std::runtime_error("workload: write to " + file.string() + " failed");
}

}  // namespace longtail::workload
