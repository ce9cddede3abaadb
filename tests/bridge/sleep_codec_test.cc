// SLEEP / WAKE_UP on the wire: both requests and replies round trip field by field, `level` is
// optional (1), a level outside 1..2 is BAD_FIELD naming it, and the names are one-directional.
#include <gtest/gtest.h>
#include <msgpack.hpp>

#include "trainer_bridge/codec.h"

namespace longtail::bridge {
namespace {

template <typename T>
T round_trip(const T& m, Direction dir) {
  Message out = decode(encode(Message{m}), dir);
  EXPECT_TRUE(std::holds_alternative<T>(out)) << "decoded as variant index " << out.index();
  return std::get<T>(out);
}

Frames sleep_header(bool with_level, int level) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p(buf);
  p.pack_map(with_level ? 3 : 2);
  p.pack(std::string("type"));
  p.pack(std::string("SLEEP"));
  p.pack(std::string("req"));
  p.pack(4);
  if (with_level) {
    p.pack(std::string("level"));
    p.pack(level);
  }
  Frames f;
  f.parts.emplace_back(reinterpret_cast<const uint8_t*>(buf.data()),
                       reinterpret_cast<const uint8_t*>(buf.data()) + buf.size());
  return f;
}

TEST(SleepCodec, RequestsAndRepliesRoundTrip) {
  const Sleep s = round_trip(Sleep{3, 2}, Direction::kToWorker);
  EXPECT_EQ(s.req, 3u);
  EXPECT_EQ(s.level, 2);
  EXPECT_EQ(round_trip(WakeUp{5}, Direction::kToWorker).req, 5u);
  const SleepOk ok = round_trip(SleepOk{3, 2, 1, uint64_t{3} << 32, 17, 0.25}, Direction::kToTrainer);
  EXPECT_EQ(ok.level, 2);
  EXPECT_EQ(ok.previous_level, 1);
  EXPECT_EQ(ok.released_bytes, uint64_t{3} << 32);
  EXPECT_EQ(ok.paused_sequences, 17);
  EXPECT_DOUBLE_EQ(ok.seconds, 0.25);
  const WakeUpOk w = round_trip(WakeUpOk{5, 1, 12345, 0.5}, Direction::kToTrainer);
  EXPECT_EQ(w.previous_level, 1);
  EXPECT_EQ(w.allocated_bytes, 12345u);
  EXPECT_DOUBLE_EQ(w.seconds, 0.5);
  Welcome hello;
  hello.worker_id = "w";
  hello.sleep_level = 2;
  EXPECT_EQ(round_trip(hello, Direction::kToTrainer).sleep_level, 2);
}

TEST(SleepCodec, LevelIsOptionalAndRangeChecked) {
  EXPECT_EQ(std::get<Sleep>(decode(sleep_header(false, 0), Direction::kToWorker)).level, 1);
  for (int bad : {0, 3, -1}) {
    try {
      decode(sleep_header(true, bad), Direction::kToWorker);
      ADD_FAILURE() << "level " << bad << " accepted";
    } catch (const ProtocolError& e) {
      EXPECT_EQ(e.code, errc::kBadField);
      EXPECT_EQ(e.req, std::optional<uint64_t>(4));
      EXPECT_EQ(e.request_type, "SLEEP");
      EXPECT_NE(std::string(e.what()).find("'level' is " + std::to_string(bad)), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(parse_type("SLEEP_OK", Direction::kToWorker).has_value());
  EXPECT_FALSE(parse_type("WAKE_UP", Direction::kToTrainer).has_value());
}

}  // namespace
}  // namespace longtail::bridge
