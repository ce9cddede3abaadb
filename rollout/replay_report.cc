// The replay's reports: one JSON object, a table for people, an SVG of acceptance and tokens per
// step by response-length bucket; see replay_report.h.
#include "rollout/replay_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

namespace longtail::rollout {

using json = nlohmann::json;

std::string report_json(const ReplayReport& r) {
  json j;
  j["rollouts"] = r.rollouts;
  j["response_tokens"] = r.response_tokens;
  j["verify_steps"] = r.verify_steps;
  j["drafted_tokens"] = r.drafted_tokens;
  j["accepted_tokens"] = r.accepted_tokens;
  j["tokens_per_step"] = r.tokens_per_step();
  j["acceptance_rate"] = r.acceptance_rate();
  j["projected_speedup"] = r.projected_speedup();
  j["drafter_us_per_step"] = r.drafter_us_per_step();
  j["bytes_per_indexed_token"] = r.bytes_per_indexed_token;
  j["tokens_per_step_after_first_round"] = r.later_tokens_per_step();
  j["engine_steps"] = r.engine_steps;
  j["verified_tokens"] = r.verified_tokens;
  j["makespan_us"] = r.makespan_us;
  j["plain_makespan_us"] = r.plain_makespan_us;
  j["indexed_tokens"] = r.indexed_tokens;
  j["skipped_lines"] = r.skipped_lines;
  j["budget_policy"] = r.budget_policy;
  j["simulation"] = r.simulation;
  if (r.simulation == "engine") {
    j["engine"] = {{"round_groups", r.round_groups}, {"max_running_sequences", r.max_running_sequences},
                   {"overprovision", r.overprovision}, {"max_new_tokens", r.max_new_tokens}};
  }
  j["cost_model"] = {{"base_us", r.cost.base_us}, {"per_token_us", r.cost.per_token_us},
                     {"crossover_tokens", r.cost.crossover_tokens},
                     {"per_token_above_us", r.cost.per_token_above_us},
                     {"per_context_us", r.cost.per_context_us},
                     {"verify_step_us", r.cost.verify_step_us}};
  json buckets = json::array();
  for (const auto& b : r.buckets) {
    buckets.push_back({{"lo", b.lo},
                       {"hi", b.hi},
                       {"rollouts", b.rollouts},
                       {"response_tokens", b.response_tokens},
                       {"verify_steps", b.verify_steps},
                       {"drafted_tokens", b.drafted_tokens},
                       {"accepted_tokens", b.accepted_tokens}});
  }
  j["length_buckets"] = buckets;
  json rounds = json::array();
  for (const auto& s : r.rounds) {
    rounds.push_back({{"round", s.round},
                      {"rollouts", s.rollouts},
                      {"engine_steps", s.engine_steps},
                      {"plain_steps", s.plain_steps},
                      {"makespan_us", s.makespan_us},
                      {"plain_makespan_us", s.plain_makespan_us}});
  }
  j["rounds"] = rounds;
  return j.dump();
}

namespace {
std::string bucket_label(const ReplayBucket& b) {
  auto k = [](int64_t v) { return v >= 1024 ? std::to_string(v / 1024) + "K" : std::to_string(v); };
  return b.hi ? k(b.lo) + "-" + k(b.hi) : ">=" + k(b.lo);
}
std::string fmt(double v, int prec = 2) {
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(prec);
  o << v;
  return o.str();
}
}  // namespace

std::string report_table(const ReplayReport& r) {
  std::ostringstream o;
  o << "longtail-replay: " << r.rollouts << " rollouts in " << r.rounds.size() << " rounds, budget policy "
    << r.budget_policy << " (" << r.simulation << " model), cost model t = " << fmt(r.cost.base_us, 0) << " + "
    << fmt(r.cost.per_token_us, 2) << " us/token";
  if (r.cost.crossover_tokens > 0) {
    o << " (" << fmt(r.cost.per_token_above_us, 2) << " above " << fmt(r.cost.crossover_tokens, 0) << " tokens)";
  }
  if (r.cost.per_context_us > 0) o << " + " << fmt(r.cost.per_context_us * 1e3, 2) << " ns/cached position";
  if (r.cost.verify_step_us > 0) o << " + " << fmt(r.cost.verify_step_us, 0) << " us a step with drafts";
  o << "\n";
  if (r.simulation == "engine") {
    o << "  engine                 batches of " << r.round_groups << " groups, at most " << r.max_running_sequences
      << " running, over-provision " << fmt(r.overprovision, 2) << ", max_new_tokens " << r.max_new_tokens << "\n";
  }
  o << "  response tokens        " << r.response_tokens << "\n";
  o << "  verification steps     " << r.verify_steps << "  (engine steps " << r.engine_steps << ")\n";
  o << "  drafted / accepted     " << r.drafted_tokens << " / " << r.accepted_tokens << "  (verified "
    << r.verified_tokens << ")\n";
  o << "  tokens per step        " << fmt(r.tokens_per_step(), 3) << "  (rounds after the first: "
    << fmt(r.later_tokens_per_step(), 3) << ")\n";
  o << "  acceptance rate        " << fmt(r.acceptance_rate(), 3) << "\n";
  o << "  makespan (projected)   " << fmt(r.makespan_us / 1e6, 3) << " s vs " << fmt(r.plain_makespan_us / 1e6, 3)
    << " s without speculation: speedup " << fmt(r.projected_speedup(), 3) << "x\n";
  o << "  drafter time per step  " << fmt(r.drafter_us_per_step(), 1) << " us\n";
  o << "  history memory         " << fmt(r.bytes_per_indexed_token, 1) << " bytes per indexed token ("
    << r.indexed_tokens << " tokens)\n";
  if (r.skipped_lines) o << "  skipped input lines    " << r.skipped_lines << "\n";
  o << "\n  length bucket   rollouts   tokens    steps  tok/step  accept\n";
  for (const auto& b : r.buckets) {
    if (!b.rollouts) continue;
    char line[160];
    std::snprintf(line, sizeof(line), "  %-13s %10lld %8lld %8lld %9.3f %7.3f\n", bucket_label(b).c_str(),
                  static_cast<long long>(b.rollouts), static_cast<long long>(b.response_tokens),
                  static_cast<long long>(b.verify_steps),
                  b.verify_steps ? double(b.response_tokens) / b.verify_steps : 0.0,
                  b.drafted_tokens ? double(b.accepted_tokens) / b.drafted_tokens : 0.0);
    o << line;
  }
  return o.str();
}

std::string report_svg(const ReplayReport& r) {
  // Two bar charts side by side: acceptance rate and tokens per step (step speedup) per bucket.
  std::vector<const ReplayBucket*> bs;
  for (const auto& b : r.buckets) {
    if (b.rollouts) bs.push_back(&b);
  }
  const int W = 760, H = 320, pad = 50, panel = (W - 3 * pad) / 2, ph = H - 2 * pad - 20;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  auto chart = [&](int x0, const std::string& title, auto value, double vmax, const char* color) {
    const int y0 = pad + 10;
    o << "<text x=\"" << x0 + panel / 2 << "\" y=\"" << pad - 15 << "\" text-anchor=\"middle\" font-size=\"13\">"
      << title << "</text>\n";
    o << "<line x1=\"" << x0 << "\" y1=\"" << y0 + ph << "\" x2=\"" << x0 + panel << "\" y2=\"" << y0 + ph
      << "\" stroke=\"black\"/>\n";
    o << "<line x1=\"" << x0 << "\" y1=\"" << y0 << "\" x2=\"" << x0 << "\" y2=\"" << y0 + ph
      << "\" stroke=\"black\"/>\n";
    for (int t = 0; t <= 4; ++t) {
      const double v = vmax * t / 4;
      const double y = y0 + ph - ph * t / 4.0;
      o << "<text x=\"" << x0 - 4 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">" << fmt(v, 2) << "</text>\n";
    }
    const int n = static_cast<int>(bs.size());
    for (int i = 0; i < n; ++i) {
      const double v = value(*bs[static_cast<size_t>(i)]);
      const double bw = panel / std::max(1, n) * 0.7;
      const double x = x0 + (i + 0.15) * panel / std::max(1, n);
      const double h = vmax > 0 ? ph * std::min(1.0, v / vmax) : 0;
      o << "<rect x=\"" << x << "\" y=\"" << y0 + ph - h << "\" width=\"" << bw << "\" height=\"" << h
        << "\" fill=\"" << color << "\"/>\n";
      o << "<text x=\"" << x + bw / 2 << "\" y=\"" << y0 + ph - h - 3 << "\" text-anchor=\"middle\">"
        << fmt(v, 2) << "</text>\n";
      o << "<text x=\"" << x + bw / 2 << "\" y=\"" << y0 + ph + 14 << "\" text-anchor=\"middle\">"
        << bucket_label(*bs[static_cast<size_t>(i)]) << "</text>\n";
    }
    o << "<text x=\"" << x0 + panel / 2 << "\" y=\"" << y0 + ph + 30
      << "\" text-anchor=\"middle\">response length (tokens)</text>\n";
  };
  chart(pad, "acceptance rate",
        [](const ReplayBucket& b) { return b.drafted_tokens ? double(b.accepted_tokens) / b.drafted_tokens : 0.0; },
        1.0, "#4477aa");
  double smax = 1;
  for (const auto* b : bs) {
    if (b->verify_steps) smax = std::max(smax, double(b->response_tokens) / b->verify_steps);
  }
  chart(2 * pad + panel, "tokens per step (step speedup), overall " + fmt(r.tokens_per_step(), 2),
        [](const ReplayBucket& b) { return b.verify_steps ? double(b.response_tokens) / b.verify_steps : 0.0; },
        std::ceil(smax), "#ee6677");
  o << "</svg>\n";
  return o.str();
}

}  // namespace longtail::rollout
