// Running the same groups in several engine modes; see mode_comparison.h.
#include "tools/mode_comparison.h"

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "tools/engine_flags.h"

#ifdef LONGTAIL_HAVE_CUDA
#include "policy/cuda_backend.h"
#endif

namespace longtail::tools {

rollout::EngineSettings mode_settings(const rollout::EngineSettings& base, const Mode& mode) {
  rollout::EngineSettings s = base;
  if (!mode.speculation) s.engine.budgets.mode = drafter::BudgetMode::kOff;
  s.engine.overprovision = mode.overprovision;
  if (!s.engine.trajectory_log.empty()) {
    std::string suffix = mode.name;
    for (char& c : suffix) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("+=._-").find(c) == std::string_view::npos) c = '_';
    }
    s.engine.trajectory_log += "." + suffix;
  }
  return s;
}

ModeRun run_mode(const Mode& mode, const rollout::EngineSettings& base, const std::vector<rollout::GroupRequest>& groups,
                 const ModeRunOptions& o) {
  const rollout::EngineSettings s = mode_settings(base, mode);
  std::unique_ptr<policy::Backend> backend = make_engine_backend(o.model, s.backend);
  [[maybe_unused]] const policy::Backend* backend_view = backend.get();  // the engine owns it from here on
  rollout::Engine engine(std::move(backend), s.engine);
  if (o.prepare) o.prepare(engine);
  for (const rollout::GroupRequest& g : groups) engine.submit(g);
  ModeRun run;
  run.mode = mode;
  if (o.progress) o.progress(mode, 0, o.rounds);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t last_reported = engine.stats().steps - 1;  // on_step: each step once
  while (static_cast<int32_t>(run.rounds.size()) < o.rounds) {
    std::optional<rollout::RoundBatch> b = engine.step();
    if (o.on_step) {
      const rollout::StepStats& last = engine.last_step();
      if (last.step != last_reported && last.sequences > 0) o.on_step(mode, last);
      last_reported = last.step;
    }
    if (!b && engine.idle()) b = engine.flush_round();
    if (!b) {
      if (engine.idle()) throw std::runtime_error("mode " + mode.name + ": the engine went idle before every round finished");
      continue;
    }
    for (rollout::Trajectory& t : b->trajectories) run.trajectories[t.uid] = std::move(t);
    run.rounds.push_back(b->stats);
    const auto done = static_cast<int32_t>(run.rounds.size());
    if (o.progress) o.progress(mode, done, o.rounds);
    if (o.update_weights && done < o.rounds) engine.update_weights(o.model, done);
  }
  run.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  run.stats = engine.stats();
#ifdef LONGTAIL_HAVE_CUDA
  if (backend_view->name() == "cuda") {
    const policy::CudaBackendStats st = policy::cuda_backend_stats(*backend_view);
    run.graph_replays = st.graph_replays;
    run.graphs_captured = st.graphs_captured;
    run.graph_capture_s = st.graph_capture_s;
    run.graph_eager = st.graphable_eager_passes;
    run.ungraphable = st.ungraphable_passes;
  }
#endif
  return run;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

namespace {
bool same_where_both_scored(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) continue;
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
  }
  return true;
}
}  // namespace

int64_t mismatches(const ModeRun& base, const ModeRun& m, LogprobRule rule) {
  const auto same_logprobs = rule == LogprobRule::kBitwise ? same_bits : same_where_both_scored;
  int64_t bad = 0;
  for (const auto& [uid, t] : base.trajectories) {
    const auto it = m.trajectories.find(uid);
    if (it == m.trajectories.end() || it->second.response_tokens != t.response_tokens ||
        !same_logprobs(it->second.behaviour_logprobs, t.behaviour_logprobs) || it->second.finish_reason != t.finish_reason) {
      ++bad;
    }
  }
  for (const auto& [uid, t] : m.trajectories) bad += base.trajectories.count(uid) ? 0 : 1;
  return bad;
}

Divergence divergence(const ModeRun& base, const ModeRun& r) {
  Divergence d;
  for (const auto& [uid, ta] : base.trajectories) {
    const auto it = r.trajectories.find(uid);
    if (it == r.trajectories.end()) continue;
    ++d.sequences;
    const auto& a = ta.response_tokens;
    const auto& b = it->second.response_tokens;
    const auto& la = ta.behaviour_logprobs;
    const auto& lb = it->second.behaviour_logprobs;
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    for (size_t j = 0; j < i && j < la.size() && j < lb.size(); ++j) {
      if (std::isfinite(la[j]) && std::isfinite(lb[j])) {
        d.max_logprob_diff_before = std::max(d.max_logprob_diff_before, std::fabs(double(la[j]) - lb[j]));
      }
    }
    if (i == a.size() && i == b.size()) {
      d.logprobs_only += !same_bits(la, lb);
      continue;
    }
    ++d.differing;
    d.first_position.push_back(static_cast<int64_t>(i));
    if (i < n && i < la.size() && i < lb.size()) d.logprob_gap.push_back(std::fabs(double(la[i]) - lb[i]));
  }
  return d;
}

}  // namespace longtail::tools
