// How the decoder fuzz target splits one fuzz input into a direction and ZeroMQ frames, shared with
// the seed writer so the committed corpus uses the same layout: byte 0 bit 0 = direction
// (0 = to worker, 1 = to trainer), then frames as u32 little-endian length + bytes; a length past
// the end takes the rest of the input.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "trainer_bridge/codec.h"

namespace longtail::bridge::fuzz {

struct Input {
  Direction dir = Direction::kToWorker;
  std::vector<FrameView> frames;
};

inline Input split(const uint8_t* data, size_t size) {
  Input in;
  if (size == 0) return in;
  in.dir = (data[0] & 1) ? Direction::kToTrainer : Direction::kToWorker;
  size_t off = 1;
  while (off < size && in.frames.size() < 64) {
    uint32_t len = 0;
    const size_t have = std::min<size_t>(4, size - off);
    std::memcpy(&len, data + off, have);
    off += have;
    const size_t take = std::min<size_t>(len, size - off);
    in.frames.emplace_back(data + off, take);
    off += take;
  }
  return in;
}

inline std::string join(Direction dir, const Frames& f) {
  std::string s(1, dir == Direction::kToTrainer ? '\x01' : '\x00');
  for (const auto& p : f.parts) {
    const uint32_t len = static_cast<uint32_t>(p.size());
    s.append(reinterpret_cast<const char*>(&len), 4);
    s.append(reinterpret_cast<const char*>(p.data()), p.size());
  }
  return s;
}

}  // namespace longtail::bridge::fuzz
