// On-disk journal of batches the trainer has not acknowledged yet, so that a worker restart with
// the same directory re-sends them. One file per batch (written to a temporary name, then renamed,
// so a crash never leaves a half-written entry under a real name), removed when the batch is acked.
// A small state file keeps the next batch sequence number, so sequence numbers never repeat across
// restarts (trainers drop duplicates by (worker id, seq): a reused number would look like one),
// and a run counter, incremented at every open, that makes trajectory uids unique across restarts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>

#include "trainer_bridge/codec.h"

namespace longtail::bridge {

class Journal {
 public:
  // Creates dir if needed. Throws std::runtime_error naming the path when it cannot be used.
  Journal(std::filesystem::path dir, bool fsync);

  // Entries found on disk at construction, by sequence number. Unreadable entries are moved aside
  // (renamed *.corrupt) and logged, never loaded.
  std::map<uint64_t, Frames> take_recovered();
  uint64_t next_seq() const { return next_seq_; }
  // This open's run number: 1 for a new directory, one more than the previous open's otherwise
  // (wraps within 24 bits, skipping 0).
  uint64_t run() const { return run_; }

  // Reserves the next sequence number durably (the state file is updated before it is used).
  uint64_t allocate_seq();
  void write(uint64_t seq, const Frames& frames);
  void remove(uint64_t seq);
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path entry_path(uint64_t seq) const;
  void write_file_atomically(const std::filesystem::path& path, const std::string& bytes);

  std::filesystem::path dir_;
  bool fsync_;
  uint64_t next_seq_ = 0;
  uint64_t run_ = 0;
  std::map<uint64_t, Frames> recovered_;
};

// The on-disk format of one entry (also used by tests): magic, frame count, then length-prefixed
// frames, all little-endian, and a trailing FNV-1a checksum of everything before it.
std::string serialize_frames(const Frames& f);
// Throws std::runtime_error describing the defect.
Frames deserialize_frames(const std::string& bytes);

}  // namespace longtail::bridge
