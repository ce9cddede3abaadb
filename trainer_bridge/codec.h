// Encoding of protocol messages (protocol.h) into ZeroMQ frames and back: frame 0 is a msgpack map
// with string keys, the following frames are raw little-endian arrays (token ids, logprobs, policy
// versions) that the map references by frame index. See PROTOCOL.md, "Framing".
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "trainer_bridge/protocol.h"

namespace longtail::bridge {

using Bytes = std::vector<uint8_t>;
using FrameView = std::span<const uint8_t>;

struct Frames {
  std::vector<Bytes> parts;  // parts[0] = msgpack header
  size_t total_bytes() const;
};

Frames encode(const Message& m);

// Decodes one message (without the ROUTER identity frame). Every failure is a ProtocolError whose
// code and message name the problem; req/request_type are filled when they could be read.
Message decode(std::span<const FrameView> frames, Direction dir);

// Convenience for tests and tools holding owned frames.
Message decode(const Frames& frames, Direction dir);

}  // namespace longtail::bridge
