// A fresh directory under the system temp dir for one test, removed with everything in it when the
// test's TempDir goes out of scope. The name carries the process id and a counter, so tests of
// several processes (ctest -j) and several TempDirs of one test never share a directory.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace longtail::test {

class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "longtail-test") {
    static std::atomic<int> n{0};
    path = std::filesystem::temp_directory_path() /
           (std::string(prefix) + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;  // a destructor must not throw; a leftover directory is harmless
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `text` to `name` inside the directory and returns its path.
  std::filesystem::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return path / name;
  }

  std::filesystem::path path;
};

}  // namespace longtail::test
