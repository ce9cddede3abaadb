// The trajectory log: an append-only binary file of every finished trajectory and every round
// boundary, written by the engine (EngineOptions::trajectory_log) and read by longtail-replay and the
// bridge. A simple self-describing format so that no serialisation library is needed outside
// trainer_bridge.
//
// Layout (all integers little-endian):
//   header   : 8 bytes magic "LTTRJLOG", u32 version (= 1), u32 reserved (= 0)
//   record*  : u32 length (bytes that follow: kind + payload), u8 kind, payload
//   kind 1 = trajectory, payload = the fields of rollout::Trajectory in declaration order:
//     u64 uid, str group_id, str prompt_id, i32 sample_index, vec<i32> prompt_tokens,
//     vec<i32> response_tokens, vec<f32> behaviour_logprobs, vec<i64> policy_versions,
//     vec<f32> current_logprobs, u8 finish_reason, str metadata, f64 reward, u8 has_reward,
//     f64 log_ratio, f64 weight, f64 truncated_weight, vec<f32> token_tis
//     where str = u32 byte count + bytes, vec<T> = u32 element count + elements.
//   kind 2 = round boundary, payload = i64 round, i64 policy_version (all trajectories of the round
//     precede it).
// Readers skip unknown kinds (forward compatibility) and reject a record whose payload is not
// consumed exactly. The writer flushes at every round boundary, so a crash loses at most the
// current round; a truncated tail is reported with its byte offset.
// Restarts: a writer appending to an existing log continues its round numbers, so rounds increase
// through the whole file and a reader (longtail-stream) delivers them in order. It writes round r
// as r + round_offset(), where round_offset() = 1 + the last round in the file; trajectories left
// after the file's last boundary (a crash inside a round) first get a boundary of their own, and a
// partial record at the end (a crash inside a write) is cut off, since nothing after it could be
// framed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "rollout/trajectory.h"

namespace longtail::rollout {

inline constexpr char kTrajectoryLogMagic[8] = {'L', 'T', 'T', 'R', 'J', 'L', 'O', 'G'};
inline constexpr uint32_t kTrajectoryLogVersion = 1;

// A corrupt or truncated log; offset = byte offset of the bad record (or header) in the file.
class TrajectoryLogError : public std::runtime_error {
 public:
  TrajectoryLogError(const std::string& what, uint64_t offset)
      : std::runtime_error(what), offset_(offset) {}
  uint64_t offset() const { return offset_; }

 private:
  uint64_t offset_;
};

struct RoundBoundary {
  int64_t round = 0;
  int64_t policy_version = 0;
};

using LogRecord = std::variant<Trajectory, RoundBoundary>;

// True when the file starts with the log magic (how the replay tool tells a log from JSONL).
bool is_trajectory_log(const std::filesystem::path& file);

class TrajectoryLogWriter {
 public:
  // Creates (or truncates) the file, or appends to an existing log after checking its header and
  // framing (see "Restarts" above). Throws TrajectoryLogError when the existing file is not a log.
  explicit TrajectoryLogWriter(const std::filesystem::path& file, bool append = false);
  void write(const Trajectory& t);
  void write_round(int64_t round, int64_t policy_version);  // writes round + round_offset(); flushes
  void flush();
  uint64_t bytes_written() const { return bytes_; }
  int64_t round_offset() const { return round_offset_; }  // 0 for a new file

 private:
  void put_record(uint8_t kind, const std::string& payload);
  void put_round(int64_t round, int64_t policy_version);
  std::filesystem::path path_;
  std::ofstream out_;
  uint64_t bytes_ = 0;
  int64_t round_offset_ = 0;
};

class TrajectoryLogReader {
 public:
  // Opens and validates the header; throws TrajectoryLogError (offset 0) when it is not a log.
  explicit TrajectoryLogReader(const std::filesystem::path& file);
  // Next record; false at a clean end of file. Throws TrajectoryLogError naming the offset of a
  // truncated or malformed record.
  bool next(LogRecord& record);
  uint64_t offset() const { return offset_; }

 private:
  std::filesystem::path path_;
  std::ifstream in_;
  uint64_t offset_ = 0;
  std::string buf_;
};

// Encodes/decodes one trajectory payload (exposed for tests and for other transports).
std::string encode_trajectory(const Trajectory& t);
Trajectory decode_trajectory(const std::string& payload);  // throws std::runtime_error

}  // namespace longtail::rollout
