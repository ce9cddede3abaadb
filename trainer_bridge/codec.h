// Encoding of protocol messages (protocol.h) into ZeroMQ frames and back: frame 0 is a msgpack map
// with string keys, the following frames are raw little-endian arrays (token ids, logprobs, policy
// versions) that the map references by frame index. See PROTOCOL.md, "Framing". Every message's
// keys come from one field list per wire type (wire_fields.h), shared by encode.cc, decode.cc and
// the field catalogue below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
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

// One key of a message's header as the field list defines it: `name` is the dotted path
// ("groups.sampling.top_p"; list elements are not indexed), `type` the wire type as PROTOCOL.md
// spells it (int, uint, float, bool, str, bin, map, [T], "T or nil", array frame).
struct WireField {
  std::string name;
  std::string type;
  bool optional = false;  // may be absent or nil
};
std::vector<WireField> wire_fields(MessageType t);

}  // namespace longtail::bridge
