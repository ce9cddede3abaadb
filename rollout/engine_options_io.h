// The one mapping from text to engine settings: a table of every EngineOptions and BackendOptions
// field under a dotted key ("round_groups", "speculation.max_budget", "drafter.window_rounds",
// "backend.kind", ...), each with its type, unit, default, range and help. The tools build their
// engine flags from it (tools/engine_flags.h), the worker walks its YAML `engine:` and `backend:`
// sections through it, so every engine option is reachable everywhere under one name and is checked
// by one rule. No YAML or flag library here: values arrive as text.
//
// Keys of EngineOptions are relative to the worker YAML's `engine:` section; backend keys start with
// "backend.". A few older spellings are accepted as aliases of a key (aliases below).
//
// Some values only make sense when every emitted token is a recording's (trace-forced runs:
// longtail-bench-rounds --trace, longtail-replay): backend.kind accounting runs no model and emits
// empty outputs. They are accepted only in OptionScope::kTraceForced, so the worker and the tools
// whose outputs are real samples refuse them as any other unknown value.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "policy/backend.h"
#include "rollout/types.h"

namespace longtail::rollout {

// What the table sets: the engine's options and the backend's.
struct EngineSettings {
  EngineOptions engine;
  policy::BackendOptions backend;
};

enum class OptionType { kBool, kInt, kFloat, kString, kPath, kChoice };

// Who sets the options: a process whose outputs are real samples (kServing: the worker, demo,
// generate), or a trace-forced tool (kTraceForced), which also takes OptionSpec::trace_forced_choices.
enum class OptionScope { kServing, kTraceForced };
const char* option_type_name(OptionType t);  // "bool", "integer", "number", "string", "path", "one of"

struct OptionSpec {
  std::string key;                   // "speculation.max_budget"
  OptionType type = OptionType::kInt;
  std::string unit;                  // "tokens", "us", "rounds", ...; empty when unitless
  std::string help;
  double min = 0, max = 0;           // numbers: allowed range, inclusive (min > max: unbounded)
  std::vector<std::string> choices;  // kChoice: the accepted words (first = canonical spelling)
  std::vector<std::string> trace_forced_choices;  // kChoice: also accepted in OptionScope::kTraceForced
  std::vector<std::string> aliases;  // other keys that mean this one
  std::function<void(EngineSettings&, std::string_view)> set;  // value already checked
  std::function<std::string(const EngineSettings&)> get;       // the value as text
};

// What set_option refused, with the parts a caller needs to say it in its own terms (the worker
// names the YAML path, the tools the flag):
//   kUnknownKey  what() = "unknown option '<key>'" (+ " (did you mean '<near>'?)"); expected() empty
//   kBadValue    what() = "option '<key>' expects <expected>, got '<value>'"
//   kFailed      a loader key (speculation.cost_model) could not load: "option '<key>': <why>"
class OptionError : public std::invalid_argument {
 public:
  enum class Kind { kUnknownKey, kBadValue, kFailed };
  OptionError(Kind kind, std::string key, std::string expected, std::string value, const std::string& what)
      : std::invalid_argument(what), kind_(kind), key_(std::move(key)), expected_(std::move(expected)),
        value_(std::move(value)) {}
  Kind kind() const { return kind_; }
  const std::string& key() const { return key_; }
  const std::string& expected() const { return expected_; }
  const std::string& value() const { return value_; }

 private:
  Kind kind_;
  std::string key_, expected_, value_;
};

// Every option, in documentation order.
std::span<const OptionSpec> engine_option_table();

// The option of a key or one of its aliases; nullptr when none.
const OptionSpec* find_option(std::string_view key);

// The key nearest to `key` (edit distance <= 3), for "did you mean"; empty when none is near.
std::string closest_option(std::string_view key);

// Parses `value` as the key's type ("true/false/on/off/yes/no/1/0" for bool; decimal integers;
// finite numbers; choices case-sensitive, trace_forced_choices only in kTraceForced), checks its range
// and sets it. Throws OptionError.
void set_option(EngineSettings& settings, std::string_view key, std::string_view value,
                OptionScope scope = OptionScope::kServing);

// The current value of a key as text (the default on a default-constructed EngineSettings).
std::string get_option(const EngineSettings& settings, std::string_view key);

// "integer in [0, 1024], tokens" -- what the key accepts in `scope`, for errors and help.
std::string describe_expected(const OptionSpec& spec, OptionScope scope = OptionScope::kServing);

// Checks what single keys cannot: the engine's cross-field rules (validate_engine_options) and the
// backend kind. Throws std::invalid_argument naming the keys.
void validate_settings(const EngineSettings& settings);

}  // namespace longtail::rollout
