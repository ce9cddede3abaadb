// The command line of the tools that use boost::program_options: one parse for all, so --help and
// flag errors read the same everywhere. --help is answered before required flags are checked (so
// `longtail-generate --help` works without --model), and a flag error is an InputError (exit 2,
// cli_main.h) that ends in "(see --help)".
#pragma once

#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include <boost/program_options.hpp>

#include "tools/cli_main.h"

namespace longtail::tools {

// The parsed and notified flags; empty after --help, which prints `usage` (a line, or empty) and
// the options. `positional`: names for bare arguments (longtail-replay's input file).
inline std::optional<boost::program_options::variables_map> parse_flags(
    int argc, char** argv, const boost::program_options::options_description& desc, std::string_view usage = {},
    const boost::program_options::positional_options_description* positional = nullptr) {
  namespace po = boost::program_options;
  po::variables_map vm;
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(desc);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << usage << desc << "\n";
      return std::nullopt;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(std::string(e.what()) + " (see --help)");
  }
  return vm;
}

}  // namespace longtail::tools
