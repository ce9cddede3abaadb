// longtail-keygen: writes a CURVE key pair for the worker or a trainer as two files, PREFIX.key
// (secret, mode 0600 from the moment it exists) and PREFIX.pub (public), in the Z85 text form the
// worker config and the Python client read, and prints the public key. An existing key pair is
// never replaced silently (workers and trainers may already trust it): that takes --force. See
// SECURITY.md. Exit codes: 0 written, 1 failure, 2 bad command line or a key file already exists.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "tools/cli_main.h"
#include "trainer_bridge/transport.h"

namespace {

using longtail::tools::InputError;

constexpr const char* kUsage =
    "usage: longtail-keygen [--force] PREFIX   (writes PREFIX.key and PREFIX.pub)\n"
    "  --force    replace an existing PREFIX.key / PREFIX.pub\n"
    "  --version  print the version and exit\n";

struct Args {
  std::string prefix;
  bool force = false;
};

std::optional<Args> parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return std::nullopt;
    }
    if (arg == "--force") {
      a.force = true;
    } else if (arg.starts_with("-")) {
      throw InputError("unknown option '" + arg + "'\n" + kUsage);
    } else if (!a.prefix.empty()) {
      throw InputError("one PREFIX only, got '" + a.prefix + "' and '" + arg + "'\n" + kUsage);
    } else {
      a.prefix = arg;
    }
  }
  if (a.prefix.empty()) throw InputError(std::string("no PREFIX given\n") + kUsage);
  return a;
}

// Writes `text` to `path` created with `mode` (truncating only with --force).
void write_file(const std::string& path, const std::string& text, mode_t mode, bool force) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | (force ? O_TRUNC : O_EXCL), mode);
  if (fd < 0) {
    if (errno == EEXIST) throw InputError(path + " exists: not replacing a key pair (pass --force to replace it)");
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  }
  ::fchmod(fd, mode);  // an existing file keeps its old mode under O_CREAT
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  if (::close(fd) != 0 || !ok) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
}

int run(const Args& a) {
  const std::string secret = a.prefix + ".key", pub = a.prefix + ".pub";
  if (!a.force) {
    for (const std::string& f : {secret, pub}) {
      if (std::filesystem::exists(f)) {
        throw InputError(f + " exists: not replacing a key pair (pass --force to replace it)");
      }
    }
  }
  const auto kp = longtail::bridge::generate_curve_keypair();
  write_file(secret, kp.secret_key + "\n", 0600, a.force);
  write_file(pub, kp.public_key + "\n", 0644, a.force);
  std::cout << kp.public_key << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return longtail::tools::cli_main("longtail-keygen", argc, argv, parse, run); }
