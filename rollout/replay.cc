// Replay of recorded rollouts through the drafter: input readers, the step simulation and the
// reports; see replay.h.
#include "rollout/replay.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "rollout/trajectory_log.h"

namespace longtail::rollout {
namespace {

using json = nlohmann::json;

std::vector<int32_t> token_array(const json& j, const char* field, int64_t line_no) {
  const auto it = j.find(field);
  auto fail = [&](const std::string& why) {
    return ReplayInputError("line " + std::to_string(line_no) + ": " + why, line_no);
  };
  if (it == j.end()) throw fail(std::string("missing field '") + field + "'");
  if (!it->is_array()) throw fail(std::string("field '") + field + "' is not an array");
  std::vector<int32_t> out;
  out.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& v = (*it)[i];
    if (!v.is_number_integer()) {
      throw fail(std::string(field) + "[" + std::to_string(i) + "] is not an integer");
    }
    const int64_t x = v.get<int64_t>();
    if (x < 0) {
      throw fail(std::string(field) + "[" + std::to_string(i) + "] = " + std::to_string(x) +
                 " is a negative token id");
    }
    if (x > std::numeric_limits<int32_t>::max()) {
      throw fail(std::string(field) + "[" + std::to_string(i) + "] = " + std::to_string(x) +
                 " does not fit a token id");
    }
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}

void check_tokens(const std::vector<int32_t>& v, const char* field, int64_t record) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < 0) {
      throw ReplayInputError("record " + std::to_string(record) + ": " + field + "[" +
                                 std::to_string(i) + "] = " + std::to_string(v[i]) +
                                 " is a negative token id",
                             record);
    }
  }
}

ReplayInput read_log(const std::filesystem::path& file, OnError on_error) {
  ReplayInput in;
  TrajectoryLogReader reader(file);
  LogRecord rec;
  ReplayRound current;
  int64_t record_no = 0;
  int64_t next_round = 0;
  auto close_round = [&](int64_t round) {
    current.round = round;
    if (!current.rollouts.empty()) in.rounds.push_back(std::move(current));
    current = ReplayRound{};
    next_round = round + 1;
  };
  try {
    while (reader.next(rec)) {
      ++record_no;
      if (const auto* b = std::get_if<RoundBoundary>(&rec)) {
        close_round(b->round);
        continue;
      }
      auto& t = std::get<Trajectory>(rec);
      try {
        check_tokens(t.prompt_tokens, "prompt_tokens", record_no);
        check_tokens(t.response_tokens, "response_tokens", record_no);
      } catch (const ReplayInputError& e) {
        if (on_error == OnError::kStop) throw ReplayInputError(file.string() + ": " + e.what(), e.line());
        spdlog::warn("{}: {} (skipped)", file.string(), e.what());
        in.errors.push_back(e.what());
        continue;
      }
      ReplayRollout r;
      r.prompt_id = t.prompt_id.empty() ? t.group_id : t.prompt_id;
      r.sample = t.sample_index;
      r.prompt_tokens = std::move(t.prompt_tokens);
      r.response_tokens = std::move(t.response_tokens);
      r.source_line = record_no;
      current.rollouts.push_back(std::move(r));
    }
  } catch (const TrajectoryLogError& e) {
    // A corrupt record ends the readable part of the log: nothing after it can be framed.
    if (on_error == OnError::kStop) throw ReplayInputError(e.what(), static_cast<int64_t>(e.offset()));
    spdlog::warn("{} (the rest of the log is ignored)", e.what());
    in.errors.push_back(e.what());
  }
  close_round(next_round);
  return in;
}

}  // namespace

ReplayRollout parse_replay_line(const std::string& line, int64_t line_no, bool& has_step, int64_t& step) {
  auto fail = [&](const std::string& why) {
    return ReplayInputError("line " + std::to_string(line_no) + ": " + why, line_no);
  };
  json j;
  try {
    j = json::parse(line);
  } catch (const json::parse_error& e) {
    throw fail(std::string("malformed JSON (") + e.what() + ")");
  }
  if (!j.is_object()) throw fail("not a JSON object");
  ReplayRollout r;
  const auto pid = j.find("prompt_id");
  if (pid == j.end()) throw fail("missing field 'prompt_id'");
  if (pid->is_string()) {
    r.prompt_id = pid->get<std::string>();
  } else if (pid->is_number_integer()) {
    r.prompt_id = std::to_string(pid->get<int64_t>());
  } else {
    throw fail("field 'prompt_id' is not a string");
  }
  const auto sample = j.find("sample");
  if (sample == j.end()) throw fail("missing field 'sample'");
  if (!sample->is_number_integer()) throw fail("field 'sample' is not an integer");
  r.sample = sample->get<int64_t>();
  has_step = false;
  if (const auto st = j.find("step"); st != j.end() && !st->is_null()) {
    if (!st->is_number_integer()) throw fail("field 'step' is not an integer");
    has_step = true;
    step = st->get<int64_t>();
  }
  r.prompt_tokens = token_array(j, "prompt_tokens", line_no);
  r.response_tokens = token_array(j, "response_tokens", line_no);
  r.source_line = line_no;
  if (const auto h = j.find("history_only"); h != j.end() && !h->is_null()) {
    if (!h->is_boolean()) throw fail("field 'history_only' is not a boolean");
    r.history_only = h->get<bool>();
  }
  return r;
}

ReplayInput read_replay_input(const std::filesystem::path& file, int32_t round_size, OnError on_error) {
  if (!std::filesystem::exists(file)) {
    throw ReplayInputError("input " + file.string() + " does not exist", 0);
  }
  if (is_trajectory_log(file)) return read_log(file, on_error);
  std::ifstream in(file);
  if (!in) throw ReplayInputError("input " + file.string() + ": cannot open", 0);
  ReplayInput out;
  std::map<int64_t, ReplayRound> rounds;
  std::unordered_map<std::string, int64_t> stepless_prompt_index;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    bool has_step = false;
    int64_t step = 0;
    ReplayRollout r;
    try {
      r = parse_replay_line(line, line_no, has_step, step);
    } catch (const ReplayInputError& e) {
      if (on_error == OnError::kStop) throw ReplayInputError(file.string() + ":" + (e.what() + 5), line_no);
      spdlog::warn("{}:{} (skipped)", file.string(), e.what() + 5);
      out.errors.push_back(file.string() + ":" + (e.what() + 5));
      continue;
    }
    int64_t round = step;
    if (!has_step) {
      const auto [it, fresh] = stepless_prompt_index.emplace(
          r.prompt_id, static_cast<int64_t>(stepless_prompt_index.size()));
      round = round_size > 0 ? it->second / round_size : 0;
    }
    auto& rr = rounds[round];
    rr.round = round;
    (r.history_only ? rr.history : rr.rollouts).push_back(std::move(r));
  }
  for (auto& [k, v] : rounds) out.rounds.push_back(std::move(v));
  return out;
}

namespace {
const std::vector<std::pair<int64_t, int64_t>> kBuckets = {
    {0, 256}, {256, 1024}, {1024, 4096}, {4096, 16384}, {16384, 0}};

size_t bucket_of(int64_t len) {
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (len >= kBuckets[i].first && (kBuckets[i].second == 0 || len < kBuckets[i].second)) return i;
  }
  return kBuckets.size() - 1;
}

double plain_makespan(std::vector<int64_t> lengths, const drafter::StepCostModel& cost) {
  // Without speculation every live sequence verifies one token per step; the batch shrinks as
  // sequences finish, and the round lasts as long as its longest sequence.
  std::sort(lengths.begin(), lengths.end());
  double t = 0;
  int64_t done_steps = 0;
  size_t i = 0;
  while (i < lengths.size()) {
    const int64_t live = static_cast<int64_t>(lengths.size() - i);
    const int64_t until = lengths[i];
    t += static_cast<double>(until - done_steps) * cost.step_us(static_cast<double>(live));
    done_steps = until;
    while (i < lengths.size() && lengths[i] == until) ++i;
  }
  return t;
}
}  // namespace

ReplayReport run_replay(const ReplayInput& input, const ReplayOptions& options,
                        const std::function<void(size_t, size_t)>& progress) {
  using clock = std::chrono::steady_clock;
  drafter::Drafter drafter(options.drafter);
  drafter::SpeculationPolicyOptions popts = options.policy;
  if (!options.speculation) popts.mode = drafter::BudgetMode::kOff;
  drafter::SpeculationPolicy policy(popts);
  const drafter::StepCostModel cost = popts.cost;

  ReplayReport rep;
  rep.budget_policy = drafter::to_string(popts.mode);
  rep.cost = cost;
  rep.skipped_lines = static_cast<int64_t>(input.errors.size());
  for (const auto& [lo, hi] : kBuckets) rep.buckets.push_back({lo, hi});

  struct Live {
    const ReplayRollout* r;
    uint64_t uid;
    int64_t pos = 0, steps = 0, drafted = 0, accepted = 0;
  };
  uint64_t next_uid = 1;
  std::vector<drafter::SequenceView> views;
  std::vector<drafter::DraftRequest> requests;
  std::vector<drafter::Draft> drafts;
  std::vector<int32_t> budgets;

  for (size_t ri = 0; ri < input.rounds.size(); ++ri) {
    const ReplayRound& round = input.rounds[ri];
    std::vector<Live> all;
    all.reserve(round.rollouts.size());
    for (const auto& r : round.rollouts) {
      all.push_back({&r, next_uid++});
      drafter.begin_request(all.back().uid, r.prompt_id, r.prompt_tokens);
    }
    std::vector<size_t> live;
    for (size_t i = 0; i < all.size(); ++i) {
      if (all[i].r->response_tokens.empty()) {
        drafter.end_request(all[i].uid);
      } else {
        live.push_back(i);
      }
    }
    ReplayRoundStats rs;
    rs.round = round.round;
    rs.rollouts = static_cast<int64_t>(all.size());
    while (!live.empty()) {
      views.clear();
      requests.clear();
      for (const size_t i : live) {
        views.push_back({all[i].uid, all[i].r->prompt_id, static_cast<int32_t>(all[i].pos), 0});
      }
      policy.budgets(views, budgets);
      for (size_t k = 0; k < live.size(); ++k) requests.push_back({all[live[k]].uid, budgets[k]});
      drafts.resize(live.size());
      const auto t0 = clock::now();
      drafter.propose_batch(requests, drafts);
      int64_t verified = 0;
      std::vector<size_t> still;
      still.reserve(live.size());
      for (size_t k = 0; k < live.size(); ++k) {
        Live& s = all[live[k]];
        const auto& resp = s.r->response_tokens;
        const auto& d = drafts[k].tokens;
        const int64_t left = static_cast<int64_t>(resp.size()) - s.pos;
        int64_t acc = 0;
        while (acc < static_cast<int64_t>(d.size()) && acc < left &&
               d[static_cast<size_t>(acc)] == resp[static_cast<size_t>(s.pos + acc)]) {
          ++acc;
        }
        // Accepted drafts plus the verified token at the first mismatch; a sequence whose accepted
        // drafts reach its recorded end (the stop token) emits nothing more.
        const int64_t emit = std::min(acc + 1, left);
        drafter.observe(s.uid, std::span<const int32_t>(resp.data() + s.pos, static_cast<size_t>(emit)));
        s.pos += emit;
        ++s.steps;
        s.drafted += static_cast<int64_t>(d.size());
        s.accepted += acc;
        policy.observe_acceptance(s.uid, s.r->prompt_id, static_cast<int32_t>(d.size()),
                                  static_cast<int32_t>(acc));
        verified += 1 + static_cast<int64_t>(d.size());
        if (s.pos < static_cast<int64_t>(resp.size())) {
          still.push_back(live[k]);
        } else {
          drafter.end_request(s.uid);
          policy.end_sequence(s.uid);
        }
      }
      rep.drafter_us += std::chrono::duration<double, std::micro>(clock::now() - t0).count();
      rs.makespan_us += cost.step_us(static_cast<double>(verified));
      ++rs.engine_steps;
      live.swap(still);
    }
    std::vector<int64_t> lengths;
    for (const Live& s : all) {
      const auto len = static_cast<int64_t>(s.r->response_tokens.size());
      lengths.push_back(len);
      rs.plain_steps = std::max(rs.plain_steps, len);
      rep.rollouts += 1;
      rep.response_tokens += len;
      rep.verify_steps += s.steps;
      rep.drafted_tokens += s.drafted;
      rep.accepted_tokens += s.accepted;
      if (ri > 0) {
        rep.later_response_tokens += len;
        rep.later_verify_steps += s.steps;
      }
      auto& b = rep.buckets[bucket_of(len)];
      b.rollouts += 1;
      b.response_tokens += len;
      b.verify_steps += s.steps;
      b.drafted_tokens += s.drafted;
      b.accepted_tokens += s.accepted;
      drafter.add_rollout(s.r->prompt_id, s.r->prompt_tokens, s.r->response_tokens, round.round);
      policy.record_finished(s.r->prompt_id, static_cast<int32_t>(std::min<int64_t>(len, INT32_MAX)));
    }
    for (const ReplayRollout& h : round.history) {  // shared history: indexed, not replayed
      drafter.add_rollout(h.prompt_id, h.prompt_tokens, h.response_tokens, round.round);
      policy.record_finished(h.prompt_id, static_cast<int32_t>(std::min<size_t>(h.response_tokens.size(), INT32_MAX)));
    }
    rs.plain_makespan_us = plain_makespan(lengths, cost);
    rep.makespan_us += rs.makespan_us;
    rep.plain_makespan_us += rs.plain_makespan_us;
    rep.engine_steps += rs.engine_steps;
    rep.rounds.push_back(rs);
    drafter.end_round(round.round);
    const auto mem = drafter.memory();
    rep.bytes_per_indexed_token = mem.bytes_per_indexed_token();
    rep.indexed_tokens = mem.indexed_tokens;
    if (progress) progress(ri + 1, input.rounds.size());
  }
  return rep;
}

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
  j["makespan_us"] = r.makespan_us;
  j["plain_makespan_us"] = r.plain_makespan_us;
  j["indexed_tokens"] = r.indexed_tokens;
  j["skipped_lines"] = r.skipped_lines;
  j["budget_policy"] = r.budget_policy;
  j["cost_model"] = {{"base_us", r.cost.base_us}, {"per_token_us", r.cost.per_token_us}};
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
    << r.budget_policy << ", cost model t = " << fmt(r.cost.base_us, 0) << " + "
    << fmt(r.cost.per_token_us, 2) << " us/token\n";
  o << "  response tokens        " << r.response_tokens << "\n";
  o << "  verification steps     " << r.verify_steps << "  (engine steps " << r.engine_steps << ")\n";
  o << "  drafted / accepted     " << r.drafted_tokens << " / " << r.accepted_tokens << "\n";
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
