// The one entry point of every executable (tools/*_main.cc): logs go to stderr because stdout
// carries the results, `--version` anywhere prints the version and exits, user errors (flags,
// input files, configuration) exit 2 and every other failure exits 1 with its message, so no
// exception ever escapes main. Tools with more outcomes (longtail-stream: 3 = not every batch
// acked) return them from run(). stop_on_signals() is the one SIGINT/SIGTERM handler of the tools
// that serve until told to stop.
#pragma once

#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <iostream>
#include <stdexcept>
#include <string_view>

#include "tools/version.h"

namespace longtail::tools {

// Anything the user got wrong (flags, input files, configuration): exit code 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// SIGINT and SIGTERM as a flag that the serving tools (worker, stream, replay --stream) poll, so a
// run ends cleanly (drain, flush the journal, report what was acked) instead of dying mid-write.
// The first call installs the handlers (without SA_RESTART: a blocking call returns EINTR and the
// loop sees the flag); every call returns the same flag.
inline const std::atomic<bool>* stop_on_signals() {
  static std::atomic<bool> stop{false};
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) { stop.store(true); };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    return true;
  }();
  (void)installed;
  return &stop;
}

// parse(argc, argv) returns std::optional<Args> (empty after --help); when Args has a `verbose`
// flag, true raises the log level to info; run(args) returns the exit code.
template <typename Parse, typename Run>
int cli_main(const char* name, int argc, char** argv, Parse parse, Run run) {
  spdlog::set_default_logger(spdlog::stderr_color_mt(name));
  spdlog::set_level(spdlog::level::warn);
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--version") {
      std::cout << name << " " << version_string() << "\n";
      return 0;
    }
  }
  try {
    const auto args = parse(argc, argv);
    if (!args) return 0;
    if constexpr (requires { args->verbose; }) {
      if (args->verbose) spdlog::set_level(spdlog::level::info);
    }
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

}  // namespace longtail::tools
