// HISTORY (shared drafter history of a fleet): the message round-trips, bad entries are refused
// with the field or token named, and the worker's queue checks the vocabulary before taking
// anything and stays within its token bound.
#include <functional>

#include <gtest/gtest.h>
#include <msgpack.hpp>

#include "trainer_bridge/codec.h"
#include "trainer_bridge/shared_history.h"

namespace longtail::bridge {
namespace {

History sample() {
  History h;
  h.req = 7;
  h.trajectories.push_back({"p0", {1, 2, 3}, {4, 5}});
  h.trajectories.push_back({"p1", {9}, {}});
  h.trajectories.push_back({"p0", {1, 2}, {6, 7, 8, 9}});
  return h;
}

ProtocolError error_of(const Frames& f) {
  try {
    decode(f, Direction::kToWorker);
  } catch (const ProtocolError& e) {
    return e;
  }
  ADD_FAILURE() << "decode accepted bad input";
  return ProtocolError("none", "none");
}

Frames with_header(const Frames& good, const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& f) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p(buf);
  f(p);
  Frames out = good;
  out.parts[0].assign(reinterpret_cast<const uint8_t*>(buf.data()), reinterpret_cast<const uint8_t*>(buf.data()) + buf.size());
  return out;
}

TEST(History, RoundTrip) {
  const History h = sample();
  const Message m = decode(encode(Message{h}), Direction::kToWorker);
  ASSERT_TRUE(std::holds_alternative<History>(m));
  const auto& d = std::get<History>(m);
  EXPECT_EQ(d.req, 7u);
  ASSERT_EQ(d.trajectories.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(d.trajectories[i].prompt_id, h.trajectories[i].prompt_id);
    EXPECT_EQ(d.trajectories[i].prompt_tokens, h.trajectories[i].prompt_tokens);
    EXPECT_EQ(d.trajectories[i].response_tokens, h.trajectories[i].response_tokens);
  }
  EXPECT_EQ(message_type(m), MessageType::kHistory);
  const Message ok = decode(encode(Message{HistoryOk{7, 3}}), Direction::kToTrainer);
  ASSERT_TRUE(std::holds_alternative<HistoryOk>(ok));
  EXPECT_EQ(std::get<HistoryOk>(ok).added, 3u);
  EXPECT_STREQ(type_name(MessageType::kHistory), "HISTORY");
  // Not a worker -> trainer message, nor the other way round.
  EXPECT_FALSE(parse_type("HISTORY", Direction::kToTrainer).has_value());
  EXPECT_FALSE(parse_type("HISTORY_OK", Direction::kToWorker).has_value());
}

TEST(History, BadEntriesAreNamed) {
  const Frames good = encode(Message{sample()});
  auto entry = [&](const char* pid, uint64_t plen, uint64_t rlen) {
    return with_header(good, [&](auto& p) {
      p.pack_map(4);
      p.pack("type"); p.pack("HISTORY");
      p.pack("req"); p.pack(11);
      p.pack("trajectories"); p.pack_array(1);
      p.pack_map(3);
      p.pack("prompt_id"); p.pack(pid);
      p.pack("prompt_len"); p.pack(plen);
      p.pack("response_len"); p.pack(rlen);
      p.pack("frames"); p.pack_map(2);
      p.pack("prompt_tokens"); p.pack(1);
      p.pack("response_tokens"); p.pack(2);
    });
  };
  auto e = error_of(entry("", 6, 6));
  EXPECT_EQ(e.code, errc::kBadField);
  EXPECT_NE(std::string(e.what()).find("trajectories[0].prompt_id"), std::string::npos) << e.what();
  EXPECT_EQ(e.req, 11u);
  Frames empty_prompt = entry("p", 0, 6);
  empty_prompt.parts[1].clear();  // the frames agree with the lengths; only prompt_len is wrong
  e = error_of(empty_prompt);
  EXPECT_EQ(e.code, errc::kBadField);
  EXPECT_NE(std::string(e.what()).find("trajectories[0].prompt_len"), std::string::npos) << e.what();
  e = error_of(entry("p", 5, 6));  // the prompt frame holds 6 tokens
  EXPECT_EQ(e.code, errc::kMalformed);
  Frames missing = good;
  missing.parts.pop_back();
  EXPECT_EQ(error_of(missing).code, errc::kMalformed);
  const Frames no_req = with_header(good, [](auto& p) {
    p.pack_map(2);
    p.pack("type"); p.pack("HISTORY");
    p.pack("trajectories"); p.pack_array(0);
  });
  EXPECT_EQ(error_of(no_req).code, errc::kBadField);
}

TEST(History, QueueChecksTheVocabularyFirstAndStaysBounded) {
  SharedHistory q(10);
  History bad = sample();
  bad.trajectories[2].response_tokens[1] = 50;
  try {
    q.take(std::move(bad), 40);
    FAIL() << "out-of-vocabulary history accepted";
  } catch (const ProtocolError& e) {
    EXPECT_EQ(e.code, errc::kInvalidRequest);
    EXPECT_EQ(e.req, 7u);
    EXPECT_NE(std::string(e.what()).find("trajectories[2]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("= 50"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.received, 0u);
  EXPECT_EQ(q.take(sample(), 40), 3u);  // 5 + 1 + 6 = 12 tokens > 10: the oldest is dropped
  EXPECT_EQ(q.received, 3u);
  EXPECT_EQ(q.dropped, 1u);
  EXPECT_FALSE(q.empty());
}

}  // namespace
}  // namespace longtail::bridge
