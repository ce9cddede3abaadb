// Journal of un-acked batches: see journal.h for why each batch is its own atomically renamed file.
#include "trainer_bridge/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace longtail::bridge {
namespace {

constexpr char kMagic[4] = {'L', 'T', 'J', '1'};
constexpr const char* kSuffix = ".batch";
constexpr const char* kStateFile = "next_seq";
constexpr const char* kRunFile = "run";
constexpr uint64_t kRunMask = (uint64_t{1} << 24) - 1;

uint64_t fnv1a(const char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(p[i]);
    h *= 1099511628211ull;
  }
  return h;
}

void put_u64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }
uint64_t get_u64(const std::string& s, size_t& off) {
  if (off + 8 > s.size()) throw std::runtime_error("truncated at byte " + std::to_string(off));
  uint64_t v;
  std::memcpy(&v, s.data() + off, 8);
  off += 8;
  return v;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string serialize_frames(const Frames& f) {
  std::string s(kMagic, 4);
  put_u64(s, f.parts.size());
  for (const auto& p : f.parts) {
    put_u64(s, p.size());
    s.append(reinterpret_cast<const char*>(p.data()), p.size());
  }
  put_u64(s, fnv1a(s.data(), s.size()));
  return s;
}

Frames deserialize_frames(const std::string& s) {
  if (s.size() < 4 + 8 + 8 || std::memcmp(s.data(), kMagic, 4) != 0) throw std::runtime_error("not a journal entry (bad magic)");
  size_t off = s.size() - 8;
  const uint64_t sum = get_u64(s, off);
  if (sum != fnv1a(s.data(), s.size() - 8)) throw std::runtime_error("checksum mismatch");
  const size_t body_end = s.size() - 8;
  off = 4;
  const uint64_t n = get_u64(s, off);
  if (n == 0 || n > body_end) throw std::runtime_error("bad frame count " + std::to_string(n));
  Frames f;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t len = get_u64(s, off);
    if (len > body_end - off) throw std::runtime_error("frame " + std::to_string(i) + " runs past the end");
    f.parts.emplace_back(reinterpret_cast<const uint8_t*>(s.data() + off), reinterpret_cast<const uint8_t*>(s.data() + off + len));
    off += len;
  }
  if (off != body_end) throw std::runtime_error("trailing bytes");
  return f;
}

Journal::Journal(std::filesystem::path dir, bool fsync) : dir_(std::move(dir)), fsync_(fsync) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec || !std::filesystem::is_directory(dir_))
    throw std::runtime_error("journal directory " + dir_.string() + " cannot be created: " + ec.message());
  uint64_t max_seen = 0;
  bool any = false;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    const auto name = e.path().filename().string();
    if (e.path().extension() != kSuffix) continue;
    uint64_t seq = 0;
    try {
      size_t used = 0;
      seq = std::stoull(name, &used);
      if (used + std::strlen(kSuffix) != name.size()) throw std::invalid_argument("name");
    } catch (const std::exception&) {
      spdlog::warn("journal: ignoring {} (not a journal entry name)", e.path().string());
      continue;
    }
    try {
      recovered_.emplace(seq, deserialize_frames(read_file(e.path())));
      max_seen = std::max(max_seen, seq);
      any = true;
    } catch (const std::exception& ex) {
      auto aside = e.path();
      aside += ".corrupt";
      std::filesystem::rename(e.path(), aside, ec);
      spdlog::error("journal: entry {} is unreadable ({}); moved to {}", e.path().string(), ex.what(), aside.string());
    }
  }
  const auto state = dir_ / kStateFile;
  if (std::filesystem::exists(state)) {
    try {
      next_seq_ = std::stoull(read_file(state));
    } catch (const std::exception& ex) {
      spdlog::error("journal: state file {} is unreadable ({}); continuing from the entries", state.string(), ex.what());
    }
  }
  if (any) next_seq_ = std::max(next_seq_, max_seen + 1);
  uint64_t last_run = 0;
  if (const auto rf = dir_ / kRunFile; std::filesystem::exists(rf)) {
    try {
      last_run = std::stoull(read_file(rf));
    } catch (const std::exception& ex) {
      // A lost counter could repeat uids of an earlier run: refuse rather than guess.
      throw std::runtime_error("journal: run counter " + rf.string() + " is unreadable (" + ex.what() +
                               "); remove the journal directory or restore the file");
    }
  }
  run_ = (last_run & kRunMask) % kRunMask + 1;
  write_file_atomically(dir_ / kRunFile, std::to_string(run_));
  spdlog::info("journal {}: {} un-acked batches recovered, next seq {}, run {}", dir_.string(), recovered_.size(),
               next_seq_, run_);
}

std::map<uint64_t, Frames> Journal::take_recovered() { return std::exchange(recovered_, {}); }

std::filesystem::path Journal::entry_path(uint64_t seq) const {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu%s", static_cast<unsigned long long>(seq), kSuffix);
  return dir_ / name;
}

void Journal::write_file_atomically(const std::filesystem::path& path, const std::string& bytes) {
  auto tmp = path;
  tmp += ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("journal: cannot create " + tmp.string() + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      throw std::runtime_error("journal: cannot write " + tmp.string() + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(w);
  }
  if (fsync_ && ::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error("journal: fsync " + tmp.string() + ": " + std::strerror(err));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("journal: cannot rename " + tmp.string() + ": " + std::strerror(errno));
}

uint64_t Journal::allocate_seq() {
  const uint64_t seq = next_seq_;
  write_file_atomically(dir_ / kStateFile, std::to_string(seq + 1));
  next_seq_ = seq + 1;
  return seq;
}

void Journal::write(uint64_t seq, const Frames& frames) { write_file_atomically(entry_path(seq), serialize_frames(frames)); }

void Journal::remove(uint64_t seq) {
  std::error_code ec;
  std::filesystem::remove(entry_path(seq), ec);
  if (ec) spdlog::warn("journal: cannot remove entry {}: {}", seq, ec.message());
}

}  // namespace longtail::bridge
