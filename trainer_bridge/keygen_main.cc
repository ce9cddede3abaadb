// longtail-keygen: writes a CURVE key pair for the worker or a trainer as two files, PREFIX.key
// (secret, mode 0600) and PREFIX.pub (public), in the Z85 text form the worker config and the
// Python client read. See SECURITY.md.
#include <sys/stat.h>

#include <fstream>
#include <iostream>

#include "trainer_bridge/transport.h"

int main(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::cerr << "usage: longtail-keygen PREFIX   (writes PREFIX.key and PREFIX.pub)\n";
    return 2;
  }
  const std::string prefix = argv[1];
  try {
    const auto kp = longtail::bridge::generate_curve_keypair();
    {
      std::ofstream sec(prefix + ".key");
      if (!sec) throw std::runtime_error("cannot write " + prefix + ".key");
      sec << kp.secret_key << "\n";
    }
    ::chmod((prefix + ".key").c_str(), 0600);
    std::ofstream pub(prefix + ".pub");
    if (!pub) throw std::runtime_error("cannot write " + prefix + ".pub");
    pub << kp.public_key << "\n";
    std::cout << kp.public_key << "\n";
  } catch (const std::exception& e) {
    std::cerr << "longtail-keygen: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
