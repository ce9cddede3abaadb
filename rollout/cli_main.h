// The shared entry point of the rollout command-line tools (longtail-generate, longtail-demo):
// logs go to stderr because stdout carries the results, user errors exit 2 and every other failure
// exits 1 with its message, so no exception ever escapes main.
#pragma once

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

namespace longtail::rollout {

// Anything the user got wrong (flags, input files): exit code 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// parse(argc, argv) returns std::optional<Args> (empty after --help); Args has a `verbose` flag;
// run(args) returns the exit code.
template <typename Parse, typename Run>
int cli_main(const char* name, int argc, char** argv, Parse parse, Run run) {
  spdlog::set_default_logger(spdlog::stderr_color_mt(name));
  spdlog::set_level(spdlog::level::warn);
  try {
    const auto args = parse(argc, argv);
    if (!args) return 0;
    if (args->verbose) spdlog::set_level(spdlog::level::info);
    return run(*args);
  } catch (const InputError& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const std::invalid_argument& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}

}  // namespace longtail::rollout
