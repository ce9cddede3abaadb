// Codec tests: every message survives a round trip field by field, and every kind of bad input
// (not msgpack, wrong shapes, missing/mistyped fields, bad frame references, wrong version) is a
// ProtocolError with the right code that names the field and the request.
#include <gtest/gtest.h>
#include <msgpack.hpp>

#include "tests/bridge/synthetic.h"
#include "trainer_bridge/codec.h"

namespace longtail::bridge {
namespace {

using testing::make_batch;

template <typename T>
T round_trip(const T& m, Direction dir) {
  Message out = decode(encode(Message{m}), dir);
  EXPECT_TRUE(std::holds_alternative<T>(out)) << "decoded as variant index " << out.index();
  return std::get<T>(out);
}

// Encodes a header map built by f as a single-frame message.
template <typename F>
Frames raw(F&& f, std::vector<Bytes> extra = {}) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p(buf);
  f(p);
  Frames fr;
  fr.parts.emplace_back(reinterpret_cast<const uint8_t*>(buf.data()), reinterpret_cast<const uint8_t*>(buf.data()) + buf.size());
  for (auto& e : extra) fr.parts.push_back(std::move(e));
  return fr;
}

ProtocolError decode_error(const Frames& f, Direction dir = Direction::kToWorker) {
  try {
    decode(f, dir);
  } catch (const ProtocolError& e) {
    return e;
  }
  ADD_FAILURE() << "decode accepted bad input";
  return ProtocolError("none", "none");
}

TEST(Codec, SubmitRoundTrip) {
  Submit s;
  s.req = 42;
  rollout::GroupRequest g;
  g.group_id = "g1";
  g.prompt_id = "p1";
  g.prompt_tokens = {1, 2, 3};
  g.n = 4;
  g.sampling.temperature = 0.7f;
  g.sampling.top_k = 20;
  g.sampling.top_p = 0.9f;
  g.sampling.seed = 1234567890123ull;
  g.max_new_tokens = 64;
  g.stop_tokens = {151645};
  g.metadata = std::string("\x00\xff", 2);
  s.groups.push_back(g);
  g.group_id = "g2";
  g.prompt_tokens = {9};
  s.groups.push_back(g);
  const Submit d = round_trip(s, Direction::kToWorker);
  EXPECT_EQ(d.req, 42u);
  ASSERT_EQ(d.groups.size(), 2u);
  EXPECT_EQ(d.groups[0].group_id, "g1");
  EXPECT_EQ(d.groups[0].prompt_id, "p1");
  EXPECT_EQ(d.groups[0].prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(d.groups[1].prompt_tokens, (std::vector<int32_t>{9}));
  EXPECT_EQ(d.groups[0].n, 4);
  EXPECT_FLOAT_EQ(d.groups[0].sampling.temperature, 0.7f);
  EXPECT_EQ(d.groups[0].sampling.top_k, 20);
  EXPECT_FLOAT_EQ(d.groups[0].sampling.top_p, 0.9f);
  EXPECT_EQ(d.groups[0].sampling.seed, 1234567890123ull);
  EXPECT_EQ(d.groups[0].max_new_tokens, 64);
  EXPECT_EQ(d.groups[0].stop_tokens, (std::vector<int32_t>{151645}));
  EXPECT_EQ(d.groups[0].metadata, std::string("\x00\xff", 2));
}

TEST(Codec, BatchRoundTrip) {
  Batch b = make_batch(5, 7, 11);
  b.seq = 99;
  b.worker_id = "w";
  b.created_ns = 123456789;
  const Batch d = round_trip(b, Direction::kToTrainer);
  EXPECT_EQ(d.seq, 99u);
  EXPECT_EQ(d.worker_id, "w");
  EXPECT_EQ(d.round, 7);
  EXPECT_EQ(d.policy_version, 4);
  EXPECT_EQ(d.created_ns, 123456789);
  ASSERT_EQ(d.trajectories.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    const auto& a = b.trajectories[i];
    const auto& c = d.trajectories[i];
    EXPECT_EQ(c.uid, a.uid);
    EXPECT_EQ(c.group_id, a.group_id);
    EXPECT_EQ(c.prompt_id, a.prompt_id);
    EXPECT_EQ(c.sample_index, a.sample_index);
    EXPECT_EQ(c.prompt_tokens, a.prompt_tokens);
    EXPECT_EQ(c.response_tokens, a.response_tokens);
    EXPECT_EQ(c.behaviour_logprobs, a.behaviour_logprobs);
    EXPECT_EQ(c.policy_versions, a.policy_versions);
    EXPECT_EQ(c.current_logprobs, a.current_logprobs);
    EXPECT_EQ(c.token_tis, a.token_tis);
    EXPECT_EQ(c.finish_reason, a.finish_reason);
    EXPECT_EQ(c.metadata, a.metadata);
    EXPECT_EQ(c.has_reward, a.has_reward);
    EXPECT_DOUBLE_EQ(c.reward, a.reward);
    EXPECT_DOUBLE_EQ(c.log_ratio, a.log_ratio);
    EXPECT_DOUBLE_EQ(c.weight, a.weight);
  }
  EXPECT_EQ(d.importance.off_policy_trajectories, 2);
  EXPECT_DOUBLE_EQ(d.importance.lr_scale, 0.9486);
  ASSERT_EQ(d.importance.baselines.size(), 1u);
  EXPECT_TRUE(d.importance.baselines[0].valid);
  EXPECT_DOUBLE_EQ(d.stats.makespan_s, 1.5);
}

// Every field of the engine's RoundStats list reaches the trainer (issue 9 item 6): each gets a
// distinct value and must come back unchanged.
TEST(Codec, BatchCarriesEveryRoundStatistic) {
  Batch b = make_batch(1, 2, 3);
  int i = 0;
  rollout::for_each_field(b.stats, [&](const char*, auto& v) { v = static_cast<std::remove_reference_t<decltype(v)>>(100 + i++); });
  ASSERT_GE(i, 16);
  const Batch d = round_trip(b, Direction::kToTrainer);
  int j = 0;
  rollout::for_each_field(d.stats, [&](const char* name, const auto& v) {
    EXPECT_EQ(static_cast<double>(v), 100.0 + j++) << name;
  });
}

TEST(Codec, BatchWithInconsistentTrajectoryIsRefusedAtEncode) {
  Batch b = make_batch(1, 2, 3);
  b.trajectories[0].behaviour_logprobs.pop_back();
  EXPECT_THROW(encode(b), std::invalid_argument);
}

TEST(Codec, SmallMessagesRoundTrip) {
  EXPECT_EQ(round_trip(Hello{kProtocolVersion, "t", 3}, Direction::kToWorker).credits, 3);
  EXPECT_EQ(round_trip(Credit{5}, Direction::kToWorker).batches, 5);
  EXPECT_EQ(round_trip(Ack{{1, 2, 3}}, Direction::kToWorker).seqs, (std::vector<uint64_t>{1, 2, 3}));
  const auto u = round_trip(UpdateWeights{7, 3, "/ckpt/v3"}, Direction::kToWorker);
  EXPECT_EQ(u.req, 7u);
  EXPECT_EQ(u.version, 3);
  EXPECT_EQ(u.path, "/ckpt/v3");
  EXPECT_TRUE(u.shm.empty());
  UpdateWeights from_shm{12, 4, "", longtail::policy::SharedTensorSource{"longtail-x", 64, {{"w", "BF16", {2, 3}, 0, 12}}}, true};
  const auto s = round_trip(from_shm, Direction::kToWorker);
  ASSERT_FALSE(s.shm.empty());
  EXPECT_TRUE(s.path.empty());
  EXPECT_TRUE(s.check_finite);
  EXPECT_EQ(s.shm.segment, "longtail-x");
  EXPECT_EQ(s.shm.size, 64u);
  ASSERT_EQ(s.shm.tensors.size(), 1u);
  EXPECT_EQ(s.shm.tensors[0].dtype, "BF16");
  EXPECT_EQ(s.shm.tensors[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(s.shm.tensors[0].end, 12u);
  const auto r = round_trip(Rewards{8, {1, 2}, {0.5, -1}}, Direction::kToWorker);
  EXPECT_EQ(r.uids, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(r.rewards, (std::vector<double>{0.5, -1}));
  EXPECT_EQ(round_trip(StatsRequest{9}, Direction::kToWorker).req, 9u);
  EXPECT_EQ(round_trip(Drain{10}, Direction::kToWorker).req, 10u);
  EXPECT_EQ(round_trip(Shutdown{11}, Direction::kToWorker).req, 11u);
  (void)round_trip(Heartbeat{}, Direction::kToWorker);
  (void)round_trip(Heartbeat{}, Direction::kToTrainer);
  Welcome w;
  w.worker_id = "w0";
  w.instance = "abc";
  w.model.architecture = "Qwen3ForCausalLM";
  w.model.vocab_size = 1000;
  w.model.eos_token_ids = {1, 2};
  w.policy_version = 2;
  w.capabilities = {"speculation"};
  w.unacked = 3;
  const auto wd = round_trip(w, Direction::kToTrainer);
  EXPECT_EQ(wd.model.architecture, "Qwen3ForCausalLM");
  EXPECT_EQ(wd.model.eos_token_ids, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(wd.capabilities, (std::vector<std::string>{"speculation"}));
  EXPECT_EQ(wd.unacked, 3u);
  EXPECT_EQ(round_trip(SubmitOk{1, 2}, Direction::kToTrainer).groups, 2);
  EXPECT_EQ(round_trip(WeightsOk{1, 5}, Direction::kToTrainer).version, 5);
  EXPECT_EQ(round_trip(RewardsOk{1, {77}}, Direction::kToTrainer).unknown_uids, (std::vector<uint64_t>{77}));
  const auto st = round_trip(StatsReply{4, {{"engine", {{"steps", 12}, {"x", 1.5}}}, {"list", {1, 2}}}}, Direction::kToTrainer);
  EXPECT_EQ(st.stats["engine"]["steps"], 12);
  EXPECT_EQ(st.stats["list"][1], 2);
  EXPECT_EQ(round_trip(DrainOk{3, 17}, Direction::kToTrainer).batch_seq, std::optional<uint64_t>(17));
  EXPECT_FALSE(round_trip(DrainOk{3, std::nullopt}, Direction::kToTrainer).batch_seq);
  EXPECT_EQ(round_trip(ShutdownOk{6}, Direction::kToTrainer).req, 6u);
  const auto e = round_trip(Error{"BAD_FIELD", "what", 5, "SUBMIT"}, Direction::kToTrainer);
  EXPECT_EQ(e.code, "BAD_FIELD");
  EXPECT_EQ(e.req, std::optional<uint64_t>(5));
  EXPECT_EQ(e.request_type, "SUBMIT");
}

TEST(Codec, NotMsgpackIsMalformed) {
  Frames f;
  f.parts.push_back({0xc1});  // never-used msgpack byte
  EXPECT_EQ(decode_error(f).code, errc::kMalformed);
  f.parts[0] = {0x92, 0x01};  // array of 2 with only one element
  EXPECT_EQ(decode_error(f).code, errc::kMalformed);
  EXPECT_EQ(decode_error(Frames{}).code, errc::kMalformed);
}

TEST(Codec, HugeContainerClaimIsMalformedNotAnAllocation) {
  Frames f;
  f.parts.push_back({0xdd, 0xff, 0xff, 0xff, 0xff});  // array32 of 4 billion elements
  EXPECT_EQ(decode_error(f).code, errc::kMalformed);
  f.parts[0] = {0xdf, 0xff, 0xff, 0xff, 0xff};  // map32
  EXPECT_EQ(decode_error(f).code, errc::kMalformed);
}

TEST(Codec, HeaderMustBeAMapWithKnownType) {
  EXPECT_EQ(decode_error(raw([](auto& p) { p.pack(1); })).code, errc::kMalformed);
  EXPECT_EQ(decode_error(raw([](auto& p) { p.pack_map(0); })).code, errc::kBadField);
  auto e = decode_error(raw([](auto& p) {
    p.pack_map(1);
    p.pack(std::string("type"));
    p.pack(std::string("FROB"));
  }));
  EXPECT_EQ(e.code, errc::kUnknownType);
  EXPECT_NE(std::string(e.what()).find("FROB"), std::string::npos);
  // BATCH is a worker -> trainer message: the worker does not accept it.
  EXPECT_EQ(decode_error(encode(make_batch(1, 1, 1))).code, errc::kUnknownType);
}

TEST(Codec, WrongProtocolVersion) {
  auto e = decode_error(encode(Hello{kProtocolVersion + 1, "t", 0}));
  EXPECT_EQ(e.code, errc::kBadVersion);
  EXPECT_EQ(e.request_type, "HELLO");
}

TEST(Codec, MissingAndMistypedFieldsAreNamed) {
  auto e = decode_error(raw([](auto& p) {
    p.pack_map(3);
    p.pack(std::string("type"));
    p.pack(std::string("UPDATE_WEIGHTS"));
    p.pack(std::string("req"));
    p.pack(12);
    p.pack(std::string("version"));
    p.pack(1);
  }));
  EXPECT_EQ(e.code, errc::kBadField);
  EXPECT_EQ(e.req, std::optional<uint64_t>(12));
  EXPECT_EQ(e.request_type, "UPDATE_WEIGHTS");
  EXPECT_NE(std::string(e.what()).find("'path'"), std::string::npos) << e.what();

  e = decode_error(raw([](auto& p) {
    p.pack_map(4);
    p.pack(std::string("type"));
    p.pack(std::string("UPDATE_WEIGHTS"));
    p.pack(std::string("req"));
    p.pack(13);
    p.pack(std::string("version"));
    p.pack(std::string("three"));
    p.pack(std::string("path"));
    p.pack(std::string("/x"));
  }));
  EXPECT_EQ(e.code, errc::kBadField);
  EXPECT_NE(std::string(e.what()).find("'version' must be an integer"), std::string::npos) << e.what();

  // A request without req cannot be answered by id: refused.
  e = decode_error(raw([](auto& p) {
    p.pack_map(1);
    p.pack(std::string("type"));
    p.pack(std::string("STATS"));
  }));
  EXPECT_EQ(e.code, errc::kBadField);
}

Submit one_group_submit() {
  Submit s;
  s.req = 5;
  rollout::GroupRequest g;
  g.group_id = "g";
  g.prompt_tokens = {1, 2, 3, 4};
  s.groups.push_back(g);
  return s;
}

// Issue 16 item 5: "optional fields may be absent or nil" -- nil was refused for several.
TEST(Codec, NilMeansAbsentForEveryOptionalField) {
  auto nil_submit = raw([](auto& p) {
    p.pack_map(4);
    p.pack(std::string("type")); p.pack(std::string("SUBMIT"));
    p.pack(std::string("req")); p.pack(3);
    p.pack(std::string("frames")); p.pack_map(1); p.pack(std::string("prompt_tokens")); p.pack(1);
    p.pack(std::string("groups")); p.pack_array(1);
    p.pack_map(8);
    p.pack(std::string("group_id")); p.pack(std::string("g"));
    p.pack(std::string("prompt_len")); p.pack(2);
    p.pack(std::string("n")); p.pack(1);
    p.pack(std::string("prompt_id")); p.pack_nil();
    p.pack(std::string("max_new_tokens")); p.pack_nil();
    p.pack(std::string("stop_tokens")); p.pack_nil();
    p.pack(std::string("metadata")); p.pack_nil();
    p.pack(std::string("sampling"));
    p.pack_map(5);
    for (const char* k : {"temperature", "top_k", "top_p", "min_p", "seed"}) {
      p.pack(std::string(k));
      p.pack_nil();
    }
  }, {Bytes(8, 0)});
  const auto s = std::get<Submit>(decode(nil_submit, Direction::kToWorker));
  const rollout::GroupRequest defaults;
  EXPECT_EQ(s.groups[0].max_new_tokens, defaults.max_new_tokens);
  EXPECT_EQ(s.groups[0].sampling.temperature, defaults.sampling.temperature);
  EXPECT_EQ(s.groups[0].sampling.top_p, defaults.sampling.top_p);
  EXPECT_EQ(s.groups[0].sampling.seed, defaults.sampling.seed);
  EXPECT_EQ(s.groups[0].prompt_tokens.size(), 2u);
  const auto h = std::get<Hello>(decode(raw([](auto& p) {
    p.pack_map(4);
    p.pack(std::string("type")); p.pack(std::string("HELLO"));
    p.pack(std::string("version")); p.pack(kProtocolVersion);
    p.pack(std::string("client_id")); p.pack_nil();
    p.pack(std::string("credits")); p.pack_nil();
  }), Direction::kToWorker));
  EXPECT_EQ(h.credits, 0);
  EXPECT_EQ(h.client_id, "");
}

// Issue 16 item 8: messages that named the wrong problem.
TEST(Codec, ErrorsNameTheActualProblem) {
  // A map with integer keys said "missing field 'type'".
  auto e = decode_error(raw([](auto& p) {
    p.pack_map(1);
    p.pack(1);
    p.pack(2);
  }));
  EXPECT_EQ(e.code, errc::kMalformed);
  EXPECT_NE(std::string(e.what()).find("keys must be strings"), std::string::npos) << e.what();
  // Bytes that start with a msgpack integer said "trailing bytes after the msgpack map".
  Frames f;
  f.parts.push_back({0x05, 0x17, 0x33});
  e = decode_error(f);
  EXPECT_EQ(e.code, errc::kMalformed);
  EXPECT_NE(std::string(e.what()).find("must be a msgpack map, got integer"), std::string::npos) << e.what();
  // A NUL inside a path truncated the message that quoted it.
  e = decode_error(encode(UpdateWeights{4, 2, std::string("/ckpt\0/x", 8)}));
  EXPECT_EQ(e.code, errc::kBadField);
  EXPECT_NE(std::string(e.what()).find("NUL byte at offset 5"), std::string::npos) << e.what();
}

TEST(Codec, ProtocolVersionsServedAndRefused) {
  EXPECT_EQ(round_trip(Hello{kOldestProtocolVersion, "old", 0}, Direction::kToWorker).version, kOldestProtocolVersion);
  EXPECT_EQ(decode_error(encode(Hello{0, "t", 0})).code, errc::kBadVersion);
  EXPECT_EQ(decode_error(encode(Hello{kProtocolVersion + 1, "t", 0})).code, errc::kBadVersion);
}

TEST(Codec, NewReplyFieldsRoundTrip) {
  Error err{"TOO_LARGE", "too many samples", 9, "SUBMIT", "max_pending_samples", false};
  const auto e = round_trip(err, Direction::kToTrainer);
  EXPECT_EQ(e.limit, "max_pending_samples");
  EXPECT_EQ(e.retryable, std::optional<bool>(false));
  EXPECT_FALSE(round_trip(Error{"BAD_FIELD", "x", 1, "SUBMIT"}, Direction::kToTrainer).retryable);
  RewardsOk r{5, {7}, {}};
  r.groups.push_back({"g", 3, 0.5, true, {1, 2}, {1, 1}, {1, 0}, {0.5, -0.5}});
  const auto d = round_trip(r, Direction::kToTrainer);
  ASSERT_EQ(d.groups.size(), 1u);
  EXPECT_EQ(d.groups[0].uids, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(d.groups[0].advantages, (std::vector<double>{0.5, -0.5}));
  Welcome w;
  w.worker_id = "w";
  w.weights = "/ckpt/v3";
  w.run = 12;
  w.limits.max_pending_tokens = 1000;
  w.limits.importance_cap = 8;
  const auto wd = round_trip(w, Direction::kToTrainer);
  EXPECT_EQ(wd.weights, "/ckpt/v3");
  EXPECT_EQ(wd.run, 12u);
  EXPECT_EQ(wd.limits.max_pending_tokens, 1000u);
  EXPECT_DOUBLE_EQ(wd.limits.importance_cap, 8);
}

TEST(Codec, BadFrameReferences) {
  Frames f = encode(one_group_submit());
  f.parts.pop_back();  // the prompt frame is gone
  auto e = decode_error(f);
  EXPECT_EQ(e.code, errc::kMalformed);
  EXPECT_NE(std::string(e.what()).find("prompt_tokens"), std::string::npos) << e.what();
  f = encode(one_group_submit());
  f.parts[1].resize(15);  // not 4 int32
  e = decode_error(f);
  EXPECT_EQ(e.code, errc::kMalformed);
  EXPECT_NE(std::string(e.what()).find("15 bytes"), std::string::npos) << e.what();
}

TEST(Codec, TrailingBytesInHeader) {
  Frames f = encode(Credit{1});
  f.parts[0].push_back(0x00);
  EXPECT_EQ(decode_error(f).code, errc::kMalformed);
}

TEST(Codec, FinishReasonNames) {
  for (auto r : {rollout::FinishReason::kStop, rollout::FinishReason::kLength, rollout::FinishReason::kContext,
                 rollout::FinishReason::kAborted})
    EXPECT_EQ(parse_finish_reason(finish_reason_name(r)), r);
  EXPECT_FALSE(parse_finish_reason("bogus"));
}

// A finite double beyond float's range cannot be converted to a float member (undefined
// behaviour); it is refused by name instead of becoming whatever the conversion gives.
TEST(Codec, NumberBeyondFloatRangeIsRefusedByName) {
  auto e = decode_error(raw([](auto& p) {
    p.pack_map(4);
    p.pack(std::string("type")); p.pack(std::string("SUBMIT"));
    p.pack(std::string("req")); p.pack(4);
    p.pack(std::string("frames")); p.pack_map(1); p.pack(std::string("prompt_tokens")); p.pack(1);
    p.pack(std::string("groups")); p.pack_array(1);
    p.pack_map(4);
    p.pack(std::string("group_id")); p.pack(std::string("g"));
    p.pack(std::string("prompt_len")); p.pack(2);
    p.pack(std::string("n")); p.pack(1);
    p.pack(std::string("sampling")); p.pack_map(1);
    p.pack(std::string("temperature")); p.pack(1e300);
  }, {Bytes(8, 0)}));
  EXPECT_EQ(e.code, errc::kBadField);
  EXPECT_EQ(e.req, std::optional<uint64_t>(4));
  EXPECT_NE(std::string(e.what()).find("groups[0].sampling.temperature"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("float range"), std::string::npos) << e.what();
}

// The engine's per-request sampling fields travel on the wire (absent: the engine's defaults).
TEST(Codec, SubmitCarriesMinTokensLogprobsModeAndSampleKey) {
  Submit s;
  s.req = 7;
  rollout::GroupRequest g;
  g.group_id = "g";
  g.prompt_tokens = {1, 2};
  g.sampling.seed = 42;
  g.sampling.min_tokens = 5;
  g.sampling.logprobs_mode = "processed";
  g.sample_key = 99;
  s.groups.push_back(g);
  rollout::GroupRequest plain;
  plain.group_id = "h";
  plain.prompt_tokens = {3};
  s.groups.push_back(plain);
  const Submit d = round_trip(s, Direction::kToWorker);
  ASSERT_EQ(d.groups.size(), 2u);
  EXPECT_EQ(d.groups[0].sampling.min_tokens, 5);
  EXPECT_EQ(d.groups[0].sampling.logprobs_mode, "processed");
  EXPECT_EQ(d.groups[0].sample_key, std::optional<uint64_t>(99));
  EXPECT_EQ(d.groups[1].sampling.min_tokens, 0);
  EXPECT_EQ(d.groups[1].sampling.logprobs_mode, "raw");
  EXPECT_FALSE(d.groups[1].sample_key.has_value());
  EXPECT_FALSE(d.groups[1].sampling.seed.has_value());
}

}  // namespace
}  // namespace longtail::bridge
