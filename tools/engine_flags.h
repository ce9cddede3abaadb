// Engine flags for every tool that runs the engine (or, like longtail-replay, projects what it
// would do): one flag per key of rollout/engine_options_io.h, spelled --<key> with '.' and '_' as
// '-' (speculation.max_budget -> --speculation-max-budget), help and default from the table, plus
// each tool's older spellings as aliases of a key (--max-draft -> speculation.max_budget), so no
// tool re-maps options by hand and every option is reachable from every tool. make_engine_backend
// builds the backend those flags name, the one place a tool turns backend.kind into a backend.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "policy/backend.h"
#include "rollout/engine_options_io.h"

namespace longtail::tools {

struct FlagAlias {
  std::string flag;   // without "--", e.g. "max-draft"
  std::string key;    // table key it sets
  std::string value;  // non-empty: a switch that sets the key to this value (--no-speculation)
  std::string help;   // empty: "same as --<key flag>"
};

// The flag of a key: "speculation.max_budget" -> "speculation-max-budget".
std::string flag_of(const std::string& key);

// The short spellings every engine-running tool takes: --backend (backend.kind), --threads
// (backend.threads), --deterministic (backend.deterministic=true).
std::vector<FlagAlias> common_engine_aliases();

class EngineFlags {
 public:
  // `prefixes`: the keys this tool exposes (empty = all; {"speculation.", "drafter."} for replay);
  // `excluded`: keys the tool sets itself (the demo's modes set round_groups and overprovision);
  // `scope`: kTraceForced for tools whose emitted tokens are always a recording's (bench-rounds,
  // replay), which may then pick backend.kind accounting.
  explicit EngineFlags(std::vector<FlagAlias> aliases, std::vector<std::string> prefixes = {},
                       std::vector<std::string> excluded = {},
                       rollout::OptionScope scope = rollout::OptionScope::kServing);

  // The table's flags as one options group, plus the aliases.
  boost::program_options::options_description options(const rollout::EngineSettings& defaults) const;

  // Applies what the command line gave: aliases first, then the table's flags (which win), in table
  // order; then checks the cross-field rules. Throws InputError (cli_main.h) naming the flag.
  void apply(const boost::program_options::variables_map& vm, rollout::EngineSettings& settings) const;

 private:
  bool exposed(const std::string& key) const;
  std::vector<FlagAlias> aliases_;
  std::vector<std::string> prefixes_, excluded_;
  rollout::OptionScope scope_;
};

// The backend `options.kind` names for the checkpoint in `model`: cpu and cuda through
// policy::make_backend, accounting (which only EngineFlags of kTraceForced accept) through
// policy::make_accounting_backend. A checkpoint that does not load throws policy::LoadError.
std::unique_ptr<policy::Backend> make_engine_backend(const std::filesystem::path& model,
                                                     const policy::BackendOptions& options);

}  // namespace longtail::tools
