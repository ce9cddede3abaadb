// Engine flags from the option table; see engine_flags.h.
#include "tools/engine_flags.h"

#include <algorithm>

#include "policy/accounting_backend.h"
#include "tools/cli_main.h"

namespace longtail::tools {

namespace po = boost::program_options;

std::string flag_of(const std::string& key) {
  std::string f = key;
  std::replace(f.begin(), f.end(), '.', '-');
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

std::vector<FlagAlias> common_engine_aliases() {
  return {{"backend", "backend.kind", "", "cpu | cuda (same as --backend-kind)"},
          {"threads", "backend.threads", "", "cpu backend threads, 0 = all cores (same as --backend-threads)"},
          {"deterministic", "backend.deterministic", "true",
           "batch-invariant kernels: the same logits whatever the batch (same as --backend-deterministic)"}};
}

EngineFlags::EngineFlags(std::vector<FlagAlias> aliases, std::vector<std::string> prefixes,
                         std::vector<std::string> excluded, rollout::OptionScope scope)
    : aliases_(std::move(aliases)), prefixes_(std::move(prefixes)), excluded_(std::move(excluded)), scope_(scope) {}

bool EngineFlags::exposed(const std::string& key) const {
  if (std::find(excluded_.begin(), excluded_.end(), key) != excluded_.end()) return false;
  if (prefixes_.empty()) return true;
  return std::any_of(prefixes_.begin(), prefixes_.end(), [&](const std::string& p) { return key.starts_with(p); });
}

po::options_description EngineFlags::options(const rollout::EngineSettings& defaults) const {
  po::options_description d("Engine options (rollout/engine_options_io.h; the worker YAML takes the same keys)");
  for (const rollout::OptionSpec& s : rollout::engine_option_table()) {
    if (!exposed(s.key)) continue;
    std::string help = s.help + " [" + s.key + ": " + rollout::describe_expected(s, scope_);
    const std::string def = s.get(defaults);
    if (!def.empty()) help += ", default " + def;
    help += "]";
    auto* v = po::value<std::string>()->value_name(s.type == rollout::OptionType::kBool ? "BOOL" : "VALUE");
    if (s.type == rollout::OptionType::kBool) v->implicit_value("true");
    d.add_options()(flag_of(s.key).c_str(), v, help.c_str());
  }
  for (const FlagAlias& a : aliases_) {
    const std::string help = a.help.empty() ? "same as --" + flag_of(a.key) : a.help;
    if (!a.value.empty()) {
      d.add_options()(a.flag.c_str(), po::bool_switch(), help.c_str());
    } else {
      d.add_options()(a.flag.c_str(), po::value<std::string>(), help.c_str());
    }
  }
  return d;
}

void EngineFlags::apply(const po::variables_map& vm, rollout::EngineSettings& settings) const {
  auto set = [&](const std::string& flag, const std::string& key, const std::string& value) {
    try {
      rollout::set_option(settings, key, value, scope_);
    } catch (const rollout::OptionError& e) {
      throw InputError("--" + flag + ": " + e.what());
    }
  };
  for (const FlagAlias& a : aliases_) {
    if (!vm.count(a.flag)) continue;
    if (!a.value.empty()) {
      if (vm[a.flag].as<bool>()) set(a.flag, a.key, a.value);
    } else {
      set(a.flag, a.key, vm[a.flag].as<std::string>());
    }
  }
  for (const rollout::OptionSpec& s : rollout::engine_option_table()) {
    const std::string f = flag_of(s.key);
    if (exposed(s.key) && vm.count(f)) set(f, s.key, vm[f].as<std::string>());
  }
  try {
    rollout::validate_settings(settings);
  } catch (const std::invalid_argument& e) {
    throw InputError(e.what());
  }
}

std::unique_ptr<policy::Backend> make_engine_backend(const std::filesystem::path& model,
                                                     const policy::BackendOptions& options) {
  if (options.kind == "accounting") return policy::make_accounting_backend(model, options);
  return policy::make_backend(model, options);
}

}  // namespace longtail::tools
