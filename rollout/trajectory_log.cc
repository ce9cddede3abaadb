// Trajectory log writer and reader; the format is documented in the header.
#include "rollout/trajectory_log.h"

#include <bit>
#include <cstring>
#include <type_traits>

namespace longtail::rollout {
namespace {
static_assert(std::endian::native == std::endian::little, "the log codec assumes a little-endian host");
constexpr uint32_t kMaxRecordBytes = 1u << 30;
constexpr uint8_t kKindTrajectory = 1;
constexpr uint8_t kKindRound = 2;

template <class T>
void put(std::string& s, T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}
void put_str(std::string& s, const std::string& v) {
  put<uint32_t>(s, static_cast<uint32_t>(v.size()));
  s.append(v);
}
template <class T>
void put_vec(std::string& s, const std::vector<T>& v) {
  put<uint32_t>(s, static_cast<uint32_t>(v.size()));
  if (!v.empty()) s.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Bounds-checked cursor over one payload.
struct Cursor {
  const std::string& s;
  size_t pos = 0;
  void need(size_t n, const char* what) {
    if (s.size() - pos < n) {
      throw std::runtime_error(std::string("payload ends inside ") + what);
    }
  }
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, s.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string get_str(const char* what) {
    const auto n = get<uint32_t>(what);
    need(n, what);
    std::string v = s.substr(pos, n);
    pos += n;
    return v;
  }
  template <class T>
  std::vector<T> get_vec(const char* what) {
    const auto n = get<uint32_t>(what);
    if (n > (s.size() - pos) / sizeof(T)) {
      throw std::runtime_error(std::string("element count of ") + what + " exceeds the record");
    }
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), s.data() + pos, n * sizeof(T));
    pos += n * sizeof(T);
    return v;
  }
};
}  // namespace

std::string encode_trajectory(const Trajectory& t) {
  std::string s;
  s.reserve(64 + t.group_id.size() + t.prompt_id.size() + t.metadata.size() +
            4 * (t.prompt_tokens.size() + t.response_tokens.size() + t.behaviour_logprobs.size() +
                 t.current_logprobs.size() + t.token_tis.size()) +
            8 * t.policy_versions.size());
  put<uint64_t>(s, t.uid);
  put_str(s, t.group_id);
  put_str(s, t.prompt_id);
  put<int32_t>(s, t.sample_index);
  put_vec(s, t.prompt_tokens);
  put_vec(s, t.response_tokens);
  put_vec(s, t.behaviour_logprobs);
  put_vec(s, t.policy_versions);
  put_vec(s, t.current_logprobs);
  put<uint8_t>(s, static_cast<uint8_t>(t.finish_reason));
  put_str(s, t.metadata);
  put<double>(s, t.reward);
  put<uint8_t>(s, t.has_reward ? 1 : 0);
  put<double>(s, t.log_ratio);
  put<double>(s, t.weight);
  put<double>(s, t.truncated_weight);
  put_vec(s, t.token_tis);
  return s;
}

Trajectory decode_trajectory(const std::string& payload) {
  Cursor c{payload};
  Trajectory t;
  t.uid = c.get<uint64_t>("uid");
  t.group_id = c.get_str("group_id");
  t.prompt_id = c.get_str("prompt_id");
  t.sample_index = c.get<int32_t>("sample_index");
  t.prompt_tokens = c.get_vec<int32_t>("prompt_tokens");
  t.response_tokens = c.get_vec<int32_t>("response_tokens");
  t.behaviour_logprobs = c.get_vec<float>("behaviour_logprobs");
  t.policy_versions = c.get_vec<int64_t>("policy_versions");
  t.current_logprobs = c.get_vec<float>("current_logprobs");
  const auto reason = c.get<uint8_t>("finish_reason");
  if (reason > static_cast<uint8_t>(FinishReason::kAborted)) {
    throw std::runtime_error("finish_reason " + std::to_string(reason) + " is not a known value");
  }
  t.finish_reason = static_cast<FinishReason>(reason);
  t.metadata = c.get_str("metadata");
  t.reward = c.get<double>("reward");
  t.has_reward = c.get<uint8_t>("has_reward") != 0;
  t.log_ratio = c.get<double>("log_ratio");
  t.weight = c.get<double>("weight");
  t.truncated_weight = c.get<double>("truncated_weight");
  t.token_tis = c.get_vec<float>("token_tis");
  if (c.pos != payload.size()) {
    throw std::runtime_error(std::to_string(payload.size() - c.pos) +
                             " bytes left over after the trajectory fields");
  }
  return t;
}

bool is_trajectory_log(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  char magic[sizeof(kTrajectoryLogMagic)] = {};
  in.read(magic, sizeof(magic));
  return in.gcount() == sizeof(magic) && std::memcmp(magic, kTrajectoryLogMagic, sizeof(magic)) == 0;
}

namespace {

// What an appending writer needs to know of an existing log, from its framing alone (payloads of
// trajectories are skipped, not decoded).
struct LogTail {
  uint64_t complete_bytes = 0;        // end of the last complete record
  bool has_round = false;
  RoundBoundary last_round;
  bool trajectories_after_last_round = false;
};

LogTail scan_log(const std::filesystem::path& file) {
  TrajectoryLogReader check(file);  // throws when the existing file is not a log
  std::ifstream in(file, std::ios::binary);
  LogTail tail;
  in.seekg(static_cast<std::streamoff>(check.offset()));
  tail.complete_bytes = check.offset();
  for (;;) {
    char head[5];
    in.read(head, sizeof(head));
    if (in.gcount() != sizeof(head)) break;
    uint32_t len;
    std::memcpy(&len, head, 4);
    if (len < 1 || len > kMaxRecordBytes) break;
    const auto kind = static_cast<uint8_t>(head[4]);
    std::string payload;
    if (kind == kKindRound && len == 17) {
      payload.resize(16);
      in.read(payload.data(), 16);
      if (in.gcount() != 16) break;
      std::memcpy(&tail.last_round.round, payload.data(), 8);
      std::memcpy(&tail.last_round.policy_version, payload.data() + 8, 8);
      tail.has_round = true;
      tail.trajectories_after_last_round = false;
    } else {
      in.seekg(len - 1, std::ios::cur);
      if (!in || static_cast<uint64_t>(in.tellg()) > std::filesystem::file_size(file)) break;
      if (kind == kKindTrajectory) tail.trajectories_after_last_round = true;
    }
    tail.complete_bytes += 4 + len;
  }
  return tail;
}

}  // namespace

TrajectoryLogWriter::TrajectoryLogWriter(const std::filesystem::path& file, bool append)
    : path_(file) {
  const bool existing = append && std::filesystem::exists(file) && std::filesystem::file_size(file) > 0;
  if (existing) {
    const LogTail tail = scan_log(file);
    if (tail.complete_bytes < std::filesystem::file_size(file)) {
      std::filesystem::resize_file(file, tail.complete_bytes);  // a partial record cannot be framed
    }
    out_.open(file, std::ios::binary | std::ios::app);
    if (!out_) throw std::runtime_error("trajectory log " + file.string() + ": cannot open for writing");
    round_offset_ = tail.has_round ? tail.last_round.round + 1 : 0;
    if (tail.trajectories_after_last_round) {
      // The crashed run's last round: closed on its own, not merged into this run's first round.
      put_round(round_offset_, tail.has_round ? tail.last_round.policy_version : 0);
      ++round_offset_;
    }
    return;
  } else {
    out_.open(file, std::ios::binary | std::ios::trunc);
  }
  if (!out_) throw std::runtime_error("trajectory log " + file.string() + ": cannot open for writing");
  if (!existing) {
    std::string h(kTrajectoryLogMagic, sizeof(kTrajectoryLogMagic));
    put<uint32_t>(h, kTrajectoryLogVersion);
    put<uint32_t>(h, 0);
    out_.write(h.data(), static_cast<std::streamsize>(h.size()));
    bytes_ += h.size();
    flush();
  }
}

void TrajectoryLogWriter::put_record(uint8_t kind, const std::string& payload) {
  if (payload.size() + 1 > kMaxRecordBytes) {
    throw std::runtime_error("trajectory log " + path_.string() + ": record of " +
                             std::to_string(payload.size()) + " bytes exceeds the 1 GiB limit");
  }
  std::string head;
  put<uint32_t>(head, static_cast<uint32_t>(payload.size() + 1));
  put<uint8_t>(head, kind);
  out_.write(head.data(), static_cast<std::streamsize>(head.size()));
  out_.write(payload.data(), static_cast<std::streamsize>(payload.size()));
  if (!out_) throw std::runtime_error("trajectory log " + path_.string() + ": write failed");
  bytes_ += head.size() + payload.size();
}

void TrajectoryLogWriter::write(const Trajectory& t) { put_record(kKindTrajectory, encode_trajectory(t)); }

void TrajectoryLogWriter::write_round(int64_t round, int64_t policy_version) {
  put_round(round + round_offset_, policy_version);
}

void TrajectoryLogWriter::put_round(int64_t round, int64_t policy_version) {
  std::string p;
  put<int64_t>(p, round);
  put<int64_t>(p, policy_version);
  put_record(kKindRound, p);
  flush();
}

void TrajectoryLogWriter::flush() {
  out_.flush();
  if (!out_) throw std::runtime_error("trajectory log " + path_.string() + ": flush failed");
}

TrajectoryLogReader::TrajectoryLogReader(const std::filesystem::path& file)
    : path_(file), in_(file, std::ios::binary) {
  if (!in_) throw TrajectoryLogError("trajectory log " + file.string() + ": cannot open", 0);
  char h[16];
  in_.read(h, sizeof(h));
  if (in_.gcount() != sizeof(h) || std::memcmp(h, kTrajectoryLogMagic, 8) != 0) {
    throw TrajectoryLogError("trajectory log " + file.string() + ": missing LTTRJLOG header", 0);
  }
  uint32_t version;
  std::memcpy(&version, h + 8, 4);
  if (version != kTrajectoryLogVersion) {
    throw TrajectoryLogError("trajectory log " + file.string() + ": unsupported version " +
                                 std::to_string(version),
                             8);
  }
  offset_ = sizeof(h);
}

bool TrajectoryLogReader::next(LogRecord& record) {
  for (;;) {
    const uint64_t at = offset_;
    char lenb[4];
    in_.read(lenb, 4);
    if (in_.gcount() == 0) return false;
    auto fail = [&](const std::string& why) -> TrajectoryLogError {
      return TrajectoryLogError("trajectory log " + path_.string() + ": record at offset " +
                                    std::to_string(at) + ": " + why,
                                at);
    };
    if (in_.gcount() != 4) throw fail("truncated length field");
    uint32_t len;
    std::memcpy(&len, lenb, 4);
    if (len < 1 || len > kMaxRecordBytes) throw fail("invalid length " + std::to_string(len));
    buf_.resize(len);
    in_.read(buf_.data(), len);
    if (static_cast<uint32_t>(in_.gcount()) != len) {
      throw fail("truncated: " + std::to_string(len) + " bytes announced, " +
                 std::to_string(in_.gcount()) + " present");
    }
    offset_ += 4 + len;
    const auto kind = static_cast<uint8_t>(buf_[0]);
    const std::string payload = buf_.substr(1);
    try {
      if (kind == kKindTrajectory) {
        record = decode_trajectory(payload);
        return true;
      }
      if (kind == kKindRound) {
        if (payload.size() != 16) throw std::runtime_error("round boundary payload is not 16 bytes");
        RoundBoundary r;
        std::memcpy(&r.round, payload.data(), 8);
        std::memcpy(&r.policy_version, payload.data() + 8, 8);
        record = r;
        return true;
      }
    } catch (const std::runtime_error& e) {
      throw fail(e.what());
    }
    // unknown kind: skip (written by a newer version)
  }
}

}  // namespace longtail::rollout
