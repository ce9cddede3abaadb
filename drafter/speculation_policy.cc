// Length-aware speculation budgets and the online step cost model; the rule is in the header.
#include "drafter/speculation_policy.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include <yaml-cpp/yaml.h>

namespace longtail::drafter {

const char* to_string(BudgetMode m) {
  switch (m) {
    case BudgetMode::kOff: return "off";
    case BudgetMode::kFixed: return "fixed";
    case BudgetMode::kLengthAware: return "length-aware";
  }
  return "?";
}

BudgetMode parse_budget_mode(std::string_view s) {
  if (s == "off" || s == "none") return BudgetMode::kOff;
  if (s == "fixed" || s == "uniform") return BudgetMode::kFixed;
  if (s == "length-aware" || s == "length_aware" || s == "das") return BudgetMode::kLengthAware;
  throw std::invalid_argument("unknown budget policy '" + std::string(s) +
                              "' (expected off, fixed or length-aware)");
}

double StepCostModel::token_us(double tokens) const {
  if (crossover_tokens <= 0 || tokens <= crossover_tokens) return per_token_us * tokens;
  return per_token_us * crossover_tokens + per_token_above_us * (tokens - crossover_tokens);
}

double StepCostModel::marginal_token_us(double tokens) const {
  return crossover_tokens > 0 && tokens >= crossover_tokens ? per_token_above_us : per_token_us;
}

double StepCostModel::max_tokens_within(double budget_us, double context_positions) const {
  const double left = budget_us - base_us - per_context_us * context_positions;
  if (left < 0) return left;
  if (crossover_tokens <= 0) return per_token_us > 0 ? left / per_token_us : INFINITY;
  const double below = per_token_us * crossover_tokens;  // the tokens up to the crossover
  if (left <= below && per_token_us > 0) return left / per_token_us;
  return per_token_above_us > 0 ? crossover_tokens + (left - below) / per_token_above_us : INFINITY;
}

namespace {

// The one reader of a step-cost map ({base_us, per_token_us[, crossover_tokens, per_token_above_us,
// per_context_us, verify_step_us]}); `file` and `path` name it in errors.
StepCostModel read_step_cost(const YAML::Node& sc, const std::string& file, const std::string& path) {
  StepCostModel m;
  // required: a missing key is an error; otherwise the key keeps its default (0: the term is off).
  auto read = [&](const char* key, double& v, bool required) {
    if (!sc[key]) {
      if (required) throw std::runtime_error(file + ": missing " + path + "." + key);
      v = 0;
      return;
    }
    try {
      v = sc[key].as<double>();
    } catch (const YAML::Exception&) {
      throw std::runtime_error(file + ": " + path + "." + key + " is not a number");
    }
    if (!(v >= 0) || !std::isfinite(v)) {
      throw std::runtime_error(file + ": " + path + "." + key + " must be a finite number >= 0");
    }
  };
  read("base_us", m.base_us, true);
  read("per_token_us", m.per_token_us, true);
  read("crossover_tokens", m.crossover_tokens, false);
  read("per_token_above_us", m.per_token_above_us, m.crossover_tokens > 0);
  read("per_context_us", m.per_context_us, false);
  read("verify_step_us", m.verify_step_us, false);
  if (m.crossover_tokens == 0 && sc["per_token_above_us"]) {
    throw std::runtime_error(file + ": " + path + ".per_token_above_us needs " + path + ".crossover_tokens > 0");
  }
  if (m.base_us + m.per_token_us <= 0) throw std::runtime_error(file + ": both constants are zero");
  return m;
}

}  // namespace

StepCostModel load_cost_model(const std::filesystem::path& yaml_file_or_spec, std::string_view entry_arg) {
  // "FILE#ENTRY" names an entry as the entry argument does (the option table's spelling).
  std::filesystem::path yaml_file = yaml_file_or_spec;
  std::string entry(entry_arg);
  if (const std::string spec = yaml_file_or_spec.string(); entry.empty() && spec.rfind('#') != std::string::npos) {
    yaml_file = spec.substr(0, spec.rfind('#'));
    entry = spec.substr(spec.rfind('#') + 1);
    if (entry.empty()) throw std::runtime_error("cost model " + spec + ": empty entry name after '#'");
  }
  const std::string file = "cost model " + yaml_file.string();
  YAML::Node root;
  try {
    root = YAML::LoadFile(yaml_file.string());
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(file + ": " + e.what());
  }
  // The map the constants are read from. (A yaml-cpp Node is bound once, at construction:
  // assigning to one writes into the node it refers to.)
  const std::string path = entry.empty() ? "step_cost" : "per_model." + entry;
  const YAML::Node sc = [&] {
    if (entry.empty()) {
      const YAML::Node n = root["step_cost"];
      if (!n || !n.IsMap()) throw std::runtime_error(file + ": missing map 'step_cost'");
      return n;
    }
    const YAML::Node pm = root["per_model"];
    if (!pm || !pm.IsMap()) {
      throw std::runtime_error(file + ": no 'per_model' map, so entry '" + entry + "' cannot be read");
    }
    const YAML::Node n = pm[entry];
    if (!n || !n.IsMap()) {
      std::string have;
      for (const auto& kv : pm) have += (have.empty() ? "" : ", ") + kv.first.as<std::string>();
      throw std::runtime_error(file + ": per_model has no entry '" + entry + "' (entries: " + have + ")");
    }
    return n;
  }();
  return read_step_cost(sc, file, path);
}

std::vector<MeasuredStepCost> read_measured_step_costs(std::string_view yaml_text, std::string_view origin) {
  const std::string file = "cost model " + std::string(origin);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(file + ": " + e.what());
  }
  std::vector<MeasuredStepCost> out;
  const YAML::Node device = root["device"];
  const YAML::Node pm = root["per_model"];
  if (!device || !pm || !pm.IsMap()) return out;  // not a measured file (e.g. the generic default)
  if (!device.IsScalar()) throw std::runtime_error(file + ": 'device' must be a string");
  for (const auto& kv : pm) {
    const std::string entry = kv.first.as<std::string>();
    const std::string path = "per_model." + entry;
    const YAML::Node shape = kv.second["shape"];
    if (!shape) continue;  // an entry without its model shape cannot be matched to a checkpoint
    if (!shape.IsMap()) throw std::runtime_error(file + ": " + path + ".shape must be a map");
    MeasuredStepCost m;
    m.device = device.as<std::string>();
    m.entry = entry;
    for (const auto& f : shape) {
      const std::string key = f.first.as<std::string>();
      try {
        m.shape[key] = f.second.as<int64_t>();
      } catch (const YAML::Exception&) {
        throw std::runtime_error(file + ": " + path + ".shape." + key + " is not an integer");
      }
    }
    m.cost = read_step_cost(kv.second, file, path);
    out.push_back(std::move(m));
  }
  return out;
}

SpeculationPolicy::SpeculationPolicy(SpeculationPolicyOptions options) : options_(options) {
  if (options_.max_budget < 0 || options_.medium_budget < 0) {
    throw std::invalid_argument("speculation policy: budgets must be >= 0");
  }
  if (!(options_.rls_forgetting > 0 && options_.rls_forgetting <= 1)) {
    throw std::invalid_argument("speculation policy: rls_forgetting must be in (0, 1]");
  }
  if (options_.length_history < 1) options_.length_history = 1;
  auto in_unit = [](double v) { return v > 0 && v <= 1; };
  if (!in_unit(options_.acceptance_decay) || !in_unit(options_.prompt_acceptance_decay)) {
    throw std::invalid_argument("speculation policy: acceptance decays must be in (0, 1]");
  }
  if (!(options_.acceptance_prior >= 0 && options_.acceptance_prior <= 1)) {
    throw std::invalid_argument("speculation policy: acceptance_prior must be in [0, 1]");
  }
  if (!(options_.acceptance_prior_weight > 0) || !std::isfinite(options_.acceptance_prior_weight)) {
    throw std::invalid_argument("speculation policy: acceptance_prior_weight must be > 0");
  }
  if (!(options_.acceptance_cost_margin >= 0) || !std::isfinite(options_.acceptance_cost_margin)) {
    throw std::invalid_argument("speculation policy: acceptance_cost_margin must be >= 0");
  }
  if (options_.probe_interval < 1 || options_.probe_budget < 0) {
    throw std::invalid_argument("speculation policy: probe_interval must be >= 1, probe_budget >= 0");
  }
  // RLS prior: uncertainty of about 10 ms on c_base and 10 us on c_tok.
  p00_ = 1e8;
  p11_ = 1e2;
  p01_ = 0;
}

double SpeculationPolicy::conditional_remaining(const std::deque<int32_t>& lengths, int32_t g,
                                                bool& found) const {
  double sum = 0;
  int64_t n = 0;
  for (const int32_t l : lengths) {
    if (l > g) {
      sum += l - g;
      ++n;
    }
  }
  found = n > 0;
  return n ? sum / static_cast<double>(n) : 0.0;
}

double SpeculationPolicy::predict_remaining(std::string_view prompt_id, int32_t g,
                                            int32_t max_new_tokens) const {
  bool found = false;
  double r = 0;
  if (const auto it = lengths_by_prompt_.find(std::string(prompt_id)); it != lengths_by_prompt_.end()) {
    r = conditional_remaining(it->second, g, found);
  }
  if (!found) r = conditional_remaining(all_lengths_, g, found);
  if (!found) r = std::max(g * options_.overshoot_factor, options_.min_remaining);
  if (max_new_tokens > 0) r = std::min(r, static_cast<double>(std::max(0, max_new_tokens - g)));
  return r;
}

std::vector<int32_t> SpeculationPolicy::budgets(std::span<const SequenceView> seqs) const {
  std::vector<int32_t> out;
  budgets(seqs, out);
  return out;
}

void SpeculationPolicy::uncapped_budgets(std::span<const SequenceView> seqs, std::vector<int32_t>& out,
                                         std::vector<double>& weight, std::vector<double>& remaining,
                                         bool& critical) const {
  const size_t n = seqs.size();
  out.assign(n, 0);
  weight.clear();  // stays empty without rule 4
  critical = false;
  if (options_.mode == BudgetMode::kOff || n == 0) return;
  remaining.assign(n, 0.0);
  double r_max = 0;
  for (size_t i = 0; i < n; ++i) {
    remaining[i] = predict_remaining(seqs[i].prompt_id, seqs[i].generated_len, seqs[i].max_new_tokens);
    r_max = std::max(r_max, remaining[i]);
  }
  const bool length_aware = options_.mode == BudgetMode::kLengthAware && !all_lengths_.empty();
  critical = length_aware && options_.critical_path;
  if (critical) critical_probabilities(seqs, weight);
  for (size_t i = 0; i < n; ++i) {
    int32_t b = options_.max_budget;
    if (length_aware && !critical) {
      if (remaining[i] >= options_.long_frac * r_max) {
        b = options_.max_budget;
      } else if (remaining[i] >= options_.short_frac * r_max) {
        b = options_.medium_budget;
      } else {
        b = 0;
      }
    }
    // Never draft past the sequence's own limit.
    if (seqs[i].max_new_tokens > 0) {
      b = std::min(b, std::max(0, seqs[i].max_new_tokens - seqs[i].generated_len - 1));
    }
    out[i] = b;
  }
}

void SpeculationPolicy::budgets(std::span<const SequenceView> seqs, std::vector<int32_t>& out) const {
  budgets_and_floors(seqs, out, nullptr);
}

void SpeculationPolicy::tree_budgets(std::span<const SequenceView> seqs, std::vector<int32_t>& out,
                                     std::vector<double>& node_floor) const {
  budgets_and_floors(seqs, out, &node_floor);
}

void SpeculationPolicy::budgets_and_floors(std::span<const SequenceView> seqs, std::vector<int32_t>& out,
                                           std::vector<double>* node_floor) const {
  thread_local std::vector<double> weight, remaining;
  bool critical = false;
  uncapped_budgets(seqs, out, weight, remaining, critical);
  if (node_floor) node_floor->assign(out.size(), 0.0);
  if (options_.mode == BudgetMode::kOff || out.empty()) return;
  const double top = critical ? *std::max_element(weight.begin(), weight.end()) : 0.0;
  const double context = context_positions(seqs);
  if (!critical) apply_cap(remaining, context, out);
  if (node_floor) {
    // Rule b's weights: 1 / P_i (1 on the critical path) under rule 4, else the contender factor
    // when acceptance_aware, else 1.
    if (critical) {
      const double floor = std::max(options_.critical_floor,
                                    options_.critical_share / static_cast<double>(seqs.size()));
      for (size_t i = 0; i < seqs.size(); ++i) {
        (*node_floor)[i] = token_threshold(seqs.size(), weight[i] >= top ? 1.0 : 1.0 / std::max(weight[i], floor),
                                            context);
      }
    } else {
      double w = 1.0;
      if (options_.acceptance_aware) {
        const auto contenders = std::count_if(out.begin(), out.end(), [](int32_t b) { return b > 0; });
        w = std::pow(static_cast<double>(std::max<int64_t>(contenders, 1)), options_.contender_exponent);
      }
      for (size_t i = 0; i < seqs.size(); ++i) (*node_floor)[i] = token_threshold(seqs.size(), w, context);
    }
  }
  if (critical) {
    // Rule 4 always weighs drafts by P_i, but not on the critical path: the sequence most likely to
    // finish last (all of them on a tie) keeps its budget whatever its acceptance, since its saved
    // steps shorten the round one for one. The cap comes after: it shares the step's allowance
    // among the budgets worth verifying. Capping max_budget first handed a batch of 256 its
    // allowance in max_budget-sized pieces to the longest predictions, whose acceptance then cut
    // most of them, so the allowance went unused and a larger max_budget drafted less
    // (bench/results/budgets_2026-12-04.md).
    thread_local std::vector<int32_t> kept;
    kept = out;
    apply_acceptance(seqs, weight, out);
    for (size_t i = 0; i < seqs.size(); ++i) {
      if (weight[i] >= top) out[i] = kept[i];
    }
    apply_cap(remaining, context, out);
  } else if (options_.acceptance_aware) {
    // After the cap, so the allowance a rejected sequence gives up is not handed to sequences with
    // shorter predictions (measured with the contender factor: re-distributing it lost 5-9% on
    // tot_text).
    apply_acceptance(seqs, {}, out);
  }
}

namespace {
// Remaining-length grid of rule 4: 1, 1.25, 1.25^2, ... tokens (56 points, up to ~2e5).
constexpr int kGrid = 56;
const std::array<double, kGrid>& grid() {
  static const std::array<double, kGrid> g = [] {
    std::array<double, kGrid> x{};
    for (int k = 0; k < kGrid; ++k) x[static_cast<size_t>(k)] = std::pow(1.25, k);
    return x;
  }();
  return g;
}
}  // namespace

void SpeculationPolicy::remaining_cdf(const SequenceView& s, double tokens_per_step, std::vector<double>& cdf) const {
  const auto& x = grid();
  cdf.assign(kGrid, 0.0);
  const int32_t g = s.generated_len;
  // Conditional CDF of L - g given L > g over a sample of n lengths, count(g < L <= g + x) /
  // count(L > g), from up_to(limit) = count(L <= limit) asked at increasing limits.
  auto add = [&](int64_t n, int64_t at_most_g, auto&& up_to, double weight) {
    const auto above = static_cast<double>(n - at_most_g);
    if (above <= 0 || weight <= 0) return false;
    for (int k = 0; k < kGrid; ++k) {
      const int64_t upto = up_to(g + x[static_cast<size_t>(k)] * tokens_per_step);
      const double c = weight * static_cast<double>(upto - at_most_g) / above;
      if (upto == n) {  // every cell past the longest length is full
        for (int j = k; j < kGrid; ++j) cdf[static_cast<size_t>(j)] += c;
        break;
      }
      cdf[static_cast<size_t>(k)] += c;
    }
    return true;
  };
  // A prompt's few lengths: galloping from the last cell's position (a linear walk cost the whole
  // length history per sequence and step).
  auto add_sorted = [&](const std::vector<int32_t>& sorted, double weight) {
    const auto first = std::upper_bound(sorted.begin(), sorted.end(), g);
    const auto end = sorted.end();
    const auto past = [](double l, int32_t v) { return l < v; };
    auto it = first;
    auto up_to = [&](double limit) -> int64_t {
      if (it != end && *it <= limit) {
        auto lo = it;  // *lo <= limit
        for (ptrdiff_t step = 1;; step *= 2) {
          if (step >= end - lo) {
            it = std::upper_bound(lo + 1, end, limit, past);
            break;
          }
          if (lo[step] > limit) {
            it = std::upper_bound(lo + 1, lo + step, limit, past);
            break;
          }
          lo += step;
        }
      }
      return it - sorted.begin();
    };
    return add(static_cast<int64_t>(sorted.size()), first - sorted.begin(), up_to, weight);
  };
  // All prompts' lengths: a lookup in their cumulative counts.
  auto add_all = [&](double weight) {
    if (all_sorted_.empty()) return false;
    const auto n = static_cast<int64_t>(all_sorted_.size());
    const auto longest = static_cast<double>(all_sorted_.back());
    auto up_to = [&](double limit) -> int64_t {
      if (limit >= longest) return n;
      return limit < 0 ? 0 : all_count_le_[static_cast<size_t>(limit)];  // lengths are integers
    };
    return add(n, up_to(g), up_to, weight);
  };
  double total = 0;
  const auto pit = sorted_by_prompt_.find(std::string(s.prompt_id));
  if (pit != sorted_by_prompt_.end()) {
    const auto n_above = static_cast<double>(pit->second.end() - std::upper_bound(pit->second.begin(), pit->second.end(), g));
    if (add_sorted(pit->second, n_above)) total += n_above;
  }
  const double gw = total > 0 ? options_.global_length_weight : 1.0;
  if (add_all(gw)) total += gw;
  if (total <= 0) {  // past every recorded length: the overshoot guess as a point mass
    const double r = std::max(g * options_.overshoot_factor, options_.min_remaining);
    for (int k = 0; k < kGrid; ++k) {
      cdf[static_cast<size_t>(k)] = x[static_cast<size_t>(k)] * tokens_per_step >= r ? 1.0 : 0.0;
    }
  } else {
    for (double& c : cdf) c /= total;
  }
  if (s.max_new_tokens > 0) {  // the sequence stops at its own limit
    const double cap = std::max(1, s.max_new_tokens - g);
    for (int k = 0; k < kGrid; ++k) {
      if (x[static_cast<size_t>(k)] * tokens_per_step >= cap) cdf[static_cast<size_t>(k)] = 1.0;
    }
  }
}

void SpeculationPolicy::critical_probabilities(std::span<const SequenceView> seqs, std::vector<double>& out) const {
  const size_t n = seqs.size();
  out.assign(n, 0.0);
  if (n == 0) return;
  // H[i][k] = P(R_i <= grid cell k), cell midpoints (ties within a cell count half).
  thread_local std::vector<double> h, log_h, cdf;  // every cell is written below
  h.resize(n * kGrid);
  log_h.resize(n * kGrid);
  std::array<double, kGrid> log_sum{};
  std::array<int32_t, kGrid> zeros{};
  for (size_t i = 0; i < n; ++i) {
    double tps = 1;
    if (options_.critical_in_steps && acceptance_reported_) {
      // Expected tokens per step with a full budget: 1 + a + ... + a^B.
      const double a = std::min(acceptance_estimate(seqs[i].uid, seqs[i].prompt_id), 0.999);
      tps = (1 - std::pow(a, options_.max_budget + 1)) / (1 - a);
    }
    remaining_cdf(seqs[i], tps, cdf);
    double prev = 0;
    for (int k = 0; k < kGrid; ++k) {
      const double v = 0.5 * (prev + cdf[static_cast<size_t>(k)]);
      prev = cdf[static_cast<size_t>(k)];
      h[i * kGrid + static_cast<size_t>(k)] = v;
      log_h[i * kGrid + static_cast<size_t>(k)] = 0.0;
      if (v > 0) {
        if (v != 1.0) {  // log(1) = 0: saturated cells
          const double l = std::log(v);
          log_h[i * kGrid + static_cast<size_t>(k)] = l;
          log_sum[static_cast<size_t>(k)] += l;
        }
      } else {
        ++zeros[static_cast<size_t>(k)];
      }
    }
  }
  // P_i = sum_k P(R_i in cell k) * prod_{j != i} P(R_j <= cell k); the mass of cell k is read back
  // from the midpoints: (H_k - H_{k-1}) * 2 telescopes to the CDF differences.
  for (size_t i = 0; i < n; ++i) {
    double p = 0, cdf_prev = 0;
    for (int k = 0; k < kGrid; ++k) {
      const double hv = h[i * kGrid + static_cast<size_t>(k)];
      const double cdf_k = 2 * hv - cdf_prev;
      const double mass = cdf_k - cdf_prev;
      cdf_prev = cdf_k;
      if (mass <= 0) continue;
      const int32_t z = zeros[static_cast<size_t>(k)] - (hv > 0 ? 0 : 1);
      if (z > 0) continue;
      p += mass * std::exp(log_sum[static_cast<size_t>(k)] - log_h[i * kGrid + static_cast<size_t>(k)]);
    }
    out[i] = std::clamp(p, 0.0, 1.0);
  }
}

double SpeculationPolicy::context_positions(std::span<const SequenceView> seqs) {
  double sum = 0;
  for (const SequenceView& s : seqs) sum += std::max(0, s.context_len);
  return sum;
}

void SpeculationPolicy::apply_cap(const std::vector<double>& remaining, double context,
                                  std::vector<int32_t>& out) const {
  const size_t n = out.size();
  // Cap on tokens verified per step: hand out the allowance to the longest predictions first.
  double cap = options_.max_tokens_per_step;
  if (cap <= 0) {
    const auto& c = options_.cost;
    const double plain = c.step_us(static_cast<double>(n), context);
    // Tokens only: charging a step's verify_step_us to the cap as well made 7B skythought DAS
    // 4.8% slower in replay (bench/results/cost_model_2026-12-06.md).
    cap = c.max_tokens_within((1.0 + options_.max_step_overhead) * plain, context);
    if (!std::isfinite(cap)) return;  // tokens cost nothing: no cap
    cap = std::floor(cap);
  }
  auto allowance = static_cast<int64_t>(cap) - static_cast<int64_t>(n);
  const int64_t wanted = std::accumulate(out.begin(), out.end(), int64_t{0});
  if (wanted <= allowance) return;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return remaining[a] > remaining[b]; });
  for (const size_t i : order) {
    const int64_t give = std::clamp<int64_t>(allowance, 0, out[i]);
    out[i] = static_cast<int32_t>(give);
    allowance -= give;
  }
}

void SpeculationPolicy::record_finished(std::string_view prompt_id, int32_t response_length) {
  if (response_length < 0) return;
  const std::string id(prompt_id);
  auto insert = [](std::vector<int32_t>& sorted, int32_t v) {
    sorted.insert(std::upper_bound(sorted.begin(), sorted.end(), v), v);
  };
  auto erase = [](std::vector<int32_t>& sorted, int32_t v) {
    const auto it = std::lower_bound(sorted.begin(), sorted.end(), v);
    if (it != sorted.end() && *it == v) sorted.erase(it);
  };
  auto& mine = lengths_by_prompt_[id];
  auto& mine_sorted = sorted_by_prompt_[id];
  mine.push_back(response_length);
  insert(mine_sorted, response_length);
  while (static_cast<int32_t>(mine.size()) > options_.length_history) {
    erase(mine_sorted, mine.front());
    mine.pop_front();
  }
  all_lengths_.push_back(response_length);
  insert(all_sorted_, response_length);
  while (static_cast<int64_t>(all_lengths_.size()) > 16LL * options_.length_history) {
    erase(all_sorted_, all_lengths_.front());
    all_lengths_.pop_front();
  }
  all_count_le_.assign(static_cast<size_t>(all_sorted_.back()) + 1, 0);
  for (const int32_t v : all_sorted_) ++all_count_le_[static_cast<size_t>(v)];
  for (size_t v = 1; v < all_count_le_.size(); ++v) all_count_le_[v] += all_count_le_[v - 1];
}

void SpeculationPolicy::observe_step_time(int32_t tokens_verified, double seconds, double context_positions,
                                          bool multi_token) {
  if (tokens_verified <= 0 || !(seconds > 0) || !std::isfinite(seconds)) return;
  auto& c = options_.cost;
  // Recursive least squares on y = c_base + c_tok * x with forgetting factor lambda, where x is
  // the token term in units of per_token_us (the tokens themselves without a crossover) and the
  // context term is taken as given.
  const double ratio = c.crossover_tokens > 0 && c.per_token_us > 0 ? c.per_token_above_us / c.per_token_us : 1.0;
  const double t = tokens_verified;
  const double x0 = 1.0,
               x1 = c.crossover_tokens > 0 && t > c.crossover_tokens ? c.crossover_tokens + ratio * (t - c.crossover_tokens) : t,
               y = seconds * 1e6 - c.per_context_us * std::max(0.0, context_positions) -
                   (multi_token ? c.verify_step_us : 0.0);
  const double lambda = options_.rls_forgetting;
  const double px0 = p00_ * x0 + p01_ * x1, px1 = p01_ * x0 + p11_ * x1;
  const double denom = lambda + x0 * px0 + x1 * px1;
  const double k0 = px0 / denom, k1 = px1 / denom;
  const double err = y - (c.base_us * x0 + c.per_token_us * x1);
  c.base_us = std::max(0.0, c.base_us + k0 * err);
  c.per_token_us = std::max(0.0, c.per_token_us + k1 * err);
  if (c.crossover_tokens > 0) c.per_token_above_us = ratio * c.per_token_us;
  const double n00 = (p00_ - k0 * px0) / lambda, n01 = (p01_ - k0 * px1) / lambda,
               n11 = (p11_ - k1 * px1) / lambda;
  // Without excitation in one direction P would grow without bound (wind-up): keep it bounded.
  const double limit = 1e12;
  p00_ = std::min(n00, limit);
  p11_ = std::min(n11, limit);
  p01_ = std::clamp(n01, -std::sqrt(p00_ * p11_), std::sqrt(p00_ * p11_));
}

void SpeculationPolicy::AcceptanceCounts::add(int32_t drafted, int32_t accepted_now, double decay) {
  accepted = decay * accepted + accepted_now;
  trials = decay * trials + accepted_now + (accepted_now < drafted ? 1 : 0);
}

void SpeculationPolicy::observe_acceptance(uint64_t uid, std::string_view prompt_id, int32_t drafted,
                                           int32_t accepted) {
  if (drafted < 0 || accepted < 0 || accepted > drafted) {
    throw std::invalid_argument("speculation policy: observe_acceptance(uid " + std::to_string(uid) +
                                ") got drafted=" + std::to_string(drafted) + ", accepted=" +
                                std::to_string(accepted) + " (need 0 <= accepted <= drafted)");
  }
  SequenceAcceptance& seq = acceptance_by_seq_[uid];
  if (drafted == 0) {
    ++seq.steps_without_draft;
    return;
  }
  seq.steps_without_draft = 0;
  seq.counts.add(drafted, accepted, options_.acceptance_decay);
  acceptance_by_prompt_[std::string(prompt_id)].add(drafted, accepted, options_.prompt_acceptance_decay);
  acceptance_global_.add(drafted, accepted, options_.prompt_acceptance_decay);
  acceptance_reported_ = true;
}

void SpeculationPolicy::end_sequence(uint64_t uid) { acceptance_by_seq_.erase(uid); }

double SpeculationPolicy::acceptance_estimate(uint64_t uid, std::string_view prompt_id) const {
  const double w = options_.acceptance_prior_weight;
  double a = acceptance_global_.estimate(options_.acceptance_prior, w);
  if (const auto it = acceptance_by_prompt_.find(std::string(prompt_id)); it != acceptance_by_prompt_.end()) {
    a = it->second.estimate(a, w);
  }
  if (const auto it = acceptance_by_seq_.find(uid); it != acceptance_by_seq_.end()) {
    a = it->second.counts.estimate(a, w);
  }
  return a;
}

double SpeculationPolicy::token_threshold(size_t batch_size, double weight, double context_positions) const {
  const auto& c = options_.cost;
  const double tokens = static_cast<double>(std::max<size_t>(batch_size, 1));
  const double plain = c.step_us(tokens, context_positions);
  const double price = c.marginal_token_us(tokens);
  if (price <= 0 || plain <= 0) return 0.0;  // verifying is free
  return options_.acceptance_cost_margin * price / plain * weight;
}

int32_t SpeculationPolicy::acceptance_budget(double a, int32_t class_budget, size_t batch_size,
                                             size_t contenders, double cost_factor,
                                             double context_positions) const {
  const auto& c = options_.cost;
  const double tokens = static_cast<double>(std::max<size_t>(batch_size, 1));
  const double plain = c.step_us(tokens, context_positions);
  if (c.marginal_token_us(tokens) <= 0 || plain <= 0) return class_budget;  // verifying is free
  const double weight = cost_factor > 0 ? cost_factor
                                        : std::pow(static_cast<double>(std::max<size_t>(contenders, 1)),
                                                   options_.contender_exponent);
  const double threshold = token_threshold(batch_size, weight, context_positions);
  // a^k decreases in k, so the budget is the largest k with a^k > threshold.
  int32_t k = 0;
  double p = 1;
  while (k < class_budget) {
    p *= a;
    if (!(p > threshold)) break;
    ++k;
  }
  return k;
}

void SpeculationPolicy::apply_acceptance(std::span<const SequenceView> seqs, const std::vector<double>& weight,
                                         std::vector<int32_t>& out) const {
  if (!acceptance_reported_) return;
  const auto contenders = static_cast<size_t>(std::count_if(out.begin(), out.end(), [](int32_t b) { return b > 0; }));
  const double floor = std::max(options_.critical_floor,
                                options_.critical_share / static_cast<double>(std::max<size_t>(seqs.size(), 1)));
  const double context = context_positions(seqs);
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (out[i] <= 0) continue;
    const double a = acceptance_estimate(seqs[i].uid, seqs[i].prompt_id);
    int32_t b = weight.empty() ? acceptance_budget(a, out[i], seqs.size(), contenders, 0, context)
                               : acceptance_budget(a, out[i], seqs.size(), 1,
                                                   1.0 / std::max(weight[i], floor), context);
    if (b == 0) {
      const auto it = acceptance_by_seq_.find(seqs[i].uid);
      if (it != acceptance_by_seq_.end() && it->second.steps_without_draft >= options_.probe_interval) {
        b = std::min(options_.probe_budget, out[i]);
      }
    }
    out[i] = b;
  }
}

}  // namespace longtail::drafter
