// TrainerSession + transport tests over real ZeroMQ loopback sockets (ipc:// in a temp dir): sessions,
// credits as backpressure, acks, re-send to a new session, journal recovery across a session
// restart, error replies for bad input, and CURVE with an allow-list.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <limits>

#include <set>

#include "tests/bridge/synthetic.h"
#include "trainer_bridge/trainer_session.h"
#include "trainer_bridge/trainer_client.h"

namespace longtail::bridge {
namespace {

using namespace std::chrono_literals;
using testing::make_batch;

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int n = 0;
    path = std::filesystem::temp_directory_path() / ("ltb-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// Records requests that reach the handler.
struct RecordingHandler : RequestHandler {
  TrainerSession* pub = nullptr;
  std::vector<MessageType> seen;
  Welcome describe() override {
    Welcome w;
    w.model.architecture = "Test";
    w.capabilities = {"test"};
    return w;
  }
  void on_request(const std::string& peer, Message&& m) override {
    seen.push_back(message_type(m));
    if (auto* s = std::get_if<StatsRequest>(&m)) pub->reply(peer, StatsReply{s->req, {{"ok", true}}});
  }
};

TrainerSessionOptions options(const TempDir& d) {
  TrainerSessionOptions o;
  o.endpoint = "ipc://" + (d.path / "w.sock").string();
  o.worker_id = "w-test";
  o.max_message_bytes = 4096;
  o.heartbeat_interval_s = 0.2;
  o.ack_timeout_s = 0;
  return o;
}

// Alternates session polls and client receives until a message of type t arrives.
std::optional<Message> exchange(TrainerSession& pub, TrainerClient& c, MessageType t, std::chrono::milliseconds timeout = 2s) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    pub.poll(2ms);
    if (auto m = c.recv(2ms)) {
      if (message_type(*m) == t) return m;
    }
  }
  return std::nullopt;
}

// Receives batches for `span`, or until `expect` batches arrived (then keeps polling briefly so
// that an unexpected extra batch would still be seen). Generous spans keep loaded CI machines green.
std::vector<uint64_t> collect_batches(TrainerSession& pub, TrainerClient& c, std::chrono::milliseconds span,
                                      size_t expect = SIZE_MAX) {
  std::vector<uint64_t> seqs;
  auto end = std::chrono::steady_clock::now() + span;
  bool settling = false;
  while (std::chrono::steady_clock::now() < end) {
    if (!settling && seqs.size() >= expect) {
      settling = true;
      end = std::min(end, std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
    }
    pub.poll(1ms);
    while (auto m = c.recv(1ms))
      if (auto* b = std::get_if<Batch>(&*m)) seqs.push_back(b->seq);
  }
  return seqs;
}

template <typename Pred>
bool poll_until(TrainerSession& pub, Pred&& done, std::chrono::milliseconds timeout = 3s) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    pub.poll(2ms);
  }
  return true;
}

TEST(TrainerSession, HelloCreditsAndAcks) {
  TempDir d;
  RecordingHandler h;
  TrainerSession pub(options(d), &h);
  h.pub = &pub;
  TrainerClient c(pub.endpoint(), "t1");
  c.send(Hello{kProtocolVersion, "t1", 0});
  auto w = exchange(pub, c, MessageType::kWelcome);
  ASSERT_TRUE(w);
  EXPECT_EQ(std::get<Welcome>(*w).worker_id, "w-test");
  EXPECT_EQ(std::get<Welcome>(*w).model.architecture, "Test");

  EXPECT_FALSE(pub.wants_batches());  // no credit: the engine must not run
  pub.publish(make_batch(2, 3, 4));
  pub.publish(make_batch(2, 3, 4, 100));
  EXPECT_TRUE(collect_batches(pub, c, 100ms).empty());  // nothing without credit

  c.send(Credit{1});
  EXPECT_EQ(collect_batches(pub, c, 3s, 1), (std::vector<uint64_t>{0}));
  c.send(Credit{5});
  EXPECT_EQ(collect_batches(pub, c, 3s, 1), (std::vector<uint64_t>{1}));
  EXPECT_TRUE(pub.wants_batches());  // 4 credits left, nothing waiting
  c.send(Ack{{0, 1}});
  EXPECT_TRUE(poll_until(pub, [&] { return pub.all_acked(); }));
  EXPECT_EQ(pub.stats().batches_acked, 2u);

  c.send(StatsRequest{77});
  auto s = exchange(pub, c, MessageType::kStatsReply);
  ASSERT_TRUE(s);
  EXPECT_EQ(std::get<StatsReply>(*s).req, 77u);
  EXPECT_EQ(h.seen, (std::vector<MessageType>{MessageType::kStats}));
}

TEST(TrainerSession, HeartbeatsFlowToTheTrainer) {
  TempDir d;
  TrainerSession pub(options(d), nullptr);
  TrainerClient c(pub.endpoint(), "t1");
  c.send(Hello{kProtocolVersion, "t1", 0});
  ASSERT_TRUE(exchange(pub, c, MessageType::kWelcome));
  EXPECT_TRUE(exchange(pub, c, MessageType::kHeartbeat, 1s));
}

TEST(TrainerSession, RequestsBeforeHelloGetNoSession) {
  TempDir d;
  TrainerSession pub(options(d), nullptr);
  TrainerClient c(pub.endpoint(), "t1");
  c.send(StatsRequest{3});
  auto e = exchange(pub, c, MessageType::kError);
  ASSERT_TRUE(e);
  EXPECT_EQ(std::get<Error>(*e).code, errc::kNoSession);
  EXPECT_EQ(std::get<Error>(*e).req, std::optional<uint64_t>(3));
}

TEST(TrainerSession, BadInputGetsErrorsAndServiceContinues) {
  TempDir d;
  RecordingHandler h;
  TrainerSession pub(options(d), &h);
  h.pub = &pub;
  TrainerClient c(pub.endpoint(), "t1");
  c.send(Hello{kProtocolVersion + 5, "t1", 0});
  auto e = exchange(pub, c, MessageType::kError);
  ASSERT_TRUE(e);
  EXPECT_EQ(std::get<Error>(*e).code, errc::kBadVersion);

  c.send(Hello{kProtocolVersion, "t1", 0});
  ASSERT_TRUE(exchange(pub, c, MessageType::kWelcome));

  DealerSocket raw(pub.endpoint(), "raw");
  Frames junk;
  junk.parts.push_back({0xc1, 0x00});
  raw.send(junk);
  std::optional<Frames> reply;
  for (int i = 0; i < 500 && !reply; ++i) {
    pub.poll(2ms);
    reply = raw.recv(2ms);
  }
  ASSERT_TRUE(reply);
  auto m = decode(*reply, Direction::kToTrainer);
  EXPECT_EQ(std::get<Error>(m).code, errc::kMalformed);

  // Over the size limit (4096 bytes): TOO_LARGE naming the request.
  Submit big;
  big.req = 31;
  rollout::GroupRequest g;
  g.group_id = "big";
  g.prompt_tokens.assign(5000, 1);
  big.groups.push_back(g);
  c.send(big);
  e = exchange(pub, c, MessageType::kError);
  ASSERT_TRUE(e);
  EXPECT_EQ(std::get<Error>(*e).code, errc::kTooLarge);
  EXPECT_EQ(std::get<Error>(*e).req, std::optional<uint64_t>(31));
  EXPECT_EQ(std::get<Error>(*e).request_type, "SUBMIT");

  c.send(StatsRequest{32});  // still serving
  EXPECT_TRUE(exchange(pub, c, MessageType::kStatsReply));
  EXPECT_EQ(h.seen, (std::vector<MessageType>{MessageType::kStats}));
}

TEST(TrainerSession, NewSessionGetsEveryUnackedBatchAgain) {
  TempDir d;
  TrainerSession pub(options(d), nullptr);
  std::set<uint64_t> received;
  {
    TrainerClient c(pub.endpoint(), "first");
    c.send(Hello{kProtocolVersion, "first", 10});
    ASSERT_TRUE(exchange(pub, c, MessageType::kWelcome));
    for (int i = 0; i < 4; ++i) pub.publish(make_batch(1, 2, 3, i));
    auto got = collect_batches(pub, c, 3s, 4);
    EXPECT_EQ(got.size(), 4u);
    c.send(Ack{{0, 2}});
    ASSERT_TRUE(poll_until(pub, [&] { return pub.stats().outbox_batches == 2; }));
  }  // the first trainer vanishes without acking 1 and 3
  TrainerClient c2(pub.endpoint(), "second");
  c2.send(Hello{kProtocolVersion, "second", 10});
  auto w = exchange(pub, c2, MessageType::kWelcome);
  ASSERT_TRUE(w);
  EXPECT_EQ(std::get<Welcome>(*w).unacked, 2u);
  EXPECT_EQ(collect_batches(pub, c2, 3s, 2), (std::vector<uint64_t>{1, 3}));
}

TEST(TrainerSession, JournalSurvivesARestart) {
  TempDir d;
  auto o = options(d);
  o.journal_dir = d.path / "journal";
  {
    TrainerSession pub(o, nullptr);
    TrainerClient c(pub.endpoint(), "t");
    c.send(Hello{kProtocolVersion, "t", 10});
    ASSERT_TRUE(exchange(pub, c, MessageType::kWelcome));
    for (int i = 0; i < 3; ++i) pub.publish(make_batch(1, 2, 3, i));
    EXPECT_EQ(collect_batches(pub, c, 3s, 3).size(), 3u);
    c.send(Ack{{1}});
    ASSERT_TRUE(poll_until(pub, [&] { return pub.stats().outbox_batches == 2; }));
  }
  TrainerSession pub(o, nullptr);  // a restarted worker with the same journal
  TrainerClient c(pub.endpoint(), "t-again");
  c.send(Hello{kProtocolVersion, "t-again", 10});
  auto w = exchange(pub, c, MessageType::kWelcome);
  ASSERT_TRUE(w);
  EXPECT_EQ(std::get<Welcome>(*w).unacked, 2u);
  EXPECT_EQ(std::get<Welcome>(*w).next_seq, 3u);
  EXPECT_EQ(collect_batches(pub, c, 3s, 2), (std::vector<uint64_t>{0, 2}));
  EXPECT_EQ(pub.publish(make_batch(1, 2, 3)), 3u);  // numbering continues
}

// Issue 16 item 4: CREDIT 2^63-1 twice then CREDIT 5 used to wrap to 3 credits.
TEST(TrainerSession, CreditsSaturateInsteadOfWrapping) {
  TempDir d;
  TrainerSession pub(options(d), nullptr);
  TrainerClient c(pub.endpoint(), "t");
  c.send(Hello{kProtocolVersion, "t", 0});
  ASSERT_TRUE(exchange(pub, c, MessageType::kWelcome));
  const int64_t max = std::numeric_limits<int64_t>::max();
  c.send(Credit{max});
  c.send(Credit{max});
  c.send(Credit{5});
  ASSERT_TRUE(poll_until(pub, [&] { return pub.stats().messages_received >= 4; }));
  EXPECT_EQ(pub.stats().credits, max);
}

// Issue 16 item 3: after another trainer's HELLO, the first one's requests were still served.
TEST(TrainerSession, DisplacedTrainerGetsSessionTakenThenNoSession) {
  TempDir d;
  RecordingHandler h;
  TrainerSession pub(options(d), &h);
  h.pub = &pub;
  TrainerClient first(pub.endpoint(), "first");
  first.send(Hello{kProtocolVersion, "first", 1});
  ASSERT_TRUE(exchange(pub, first, MessageType::kWelcome));
  TrainerClient second(pub.endpoint(), "second");
  second.send(Hello{kProtocolVersion, "second", 1});
  ASSERT_TRUE(exchange(pub, second, MessageType::kWelcome));

  first.send(StatsRequest{11});
  auto e = exchange(pub, first, MessageType::kError);
  ASSERT_TRUE(e);
  EXPECT_EQ(std::get<Error>(*e).code, errc::kSessionTaken);
  EXPECT_EQ(std::get<Error>(*e).req, std::optional<uint64_t>(11));
  EXPECT_NE(std::get<Error>(*e).message.find("'second'"), std::string::npos) << std::get<Error>(*e).message;
  first.send(StatsRequest{12});
  e = exchange(pub, first, MessageType::kError);
  ASSERT_TRUE(e);
  EXPECT_EQ(std::get<Error>(*e).code, errc::kNoSession);
  EXPECT_TRUE(h.seen.empty()) << "a displaced trainer's request reached the handler";

  second.send(StatsRequest{13});  // the session holder is served
  ASSERT_TRUE(exchange(pub, second, MessageType::kStatsReply));
  pub.publish(make_batch(1, 2, 3));  // and batches go to it only
  EXPECT_EQ(collect_batches(pub, second, 3s, 1), (std::vector<uint64_t>{0}));
  EXPECT_TRUE(collect_batches(pub, first, 100ms).empty());
}

// Issue 16 item 1: an unexpected failure in a handler answered INTERNAL with req nil.
TEST(TrainerSession, EveryErrorToAParsedRequestEchoesItsReq) {
  struct Throwing : RecordingHandler {
    void on_request(const std::string&, Message&&) override { throw std::bad_alloc(); }
  } h;
  TempDir d;
  TrainerSession pub(options(d), &h);
  TrainerClient c(pub.endpoint(), "t");
  c.send(Hello{kProtocolVersion, "t", 0});
  ASSERT_TRUE(exchange(pub, c, MessageType::kWelcome));
  c.send(Drain{41});
  auto e = exchange(pub, c, MessageType::kError);
  ASSERT_TRUE(e);
  EXPECT_EQ(std::get<Error>(*e).code, errc::kInternal);
  EXPECT_EQ(std::get<Error>(*e).req, std::optional<uint64_t>(41));
  EXPECT_EQ(std::get<Error>(*e).request_type, "DRAIN");
}

// Issue 16 items 1, 9: HELLO tells the trainer every timing and limit it needs, and answers in
// the protocol version the trainer asked for.
TEST(TrainerSession, HelloReportsTimingsRunAndTheVersionAskedFor) {
  TempDir d;
  auto o = options(d);
  o.peer_timeout_s = 7;
  o.ack_timeout_s = 11;
  o.max_outbox_batches = 5;
  TrainerSession pub(o, nullptr);
  TrainerClient c(pub.endpoint(), "t");
  c.send(Hello{kOldestProtocolVersion, "t", 0});
  auto w = exchange(pub, c, MessageType::kWelcome);
  ASSERT_TRUE(w);
  const auto& wel = std::get<Welcome>(*w);
  EXPECT_EQ(wel.version, kOldestProtocolVersion);
  EXPECT_DOUBLE_EQ(wel.limits.peer_timeout_s, 7);
  EXPECT_DOUBLE_EQ(wel.limits.ack_timeout_s, 11);
  EXPECT_DOUBLE_EQ(wel.limits.heartbeat_interval_s, 0.2);
  EXPECT_EQ(wel.limits.max_outbox_batches, 5u);
  EXPECT_EQ(wel.run, pub.run());
  EXPECT_GE(wel.run, 1u);
  EXPECT_LT(wel.run, uint64_t{1} << 24);
}

// Issue 16 item 2: the run number (the top bits of every uid) never repeats for one journal.
TEST(TrainerSession, RunNumberIncreasesAcrossRestartsWithTheSameJournal) {
  TempDir d;
  auto o = options(d);
  o.journal_dir = d.path / "journal";
  uint64_t runs[3];
  for (auto& r : runs) r = TrainerSession(o, nullptr).run();
  EXPECT_EQ(runs[0], 1u);
  EXPECT_EQ(runs[1], 2u);
  EXPECT_EQ(runs[2], 3u);
}

TEST(TrainerSession, CurveAdmitsOnlyAllowListedTrainers) {
  TempDir d;
  const KeyPair server = generate_curve_keypair();
  const KeyPair good = generate_curve_keypair();
  const KeyPair bad = generate_curve_keypair();
  auto o = options(d);
  o.endpoint = "tcp://127.0.0.1:0";
  o.curve.enabled = true;
  o.curve.public_key = server.public_key;
  o.curve.secret_key = server.secret_key;
  o.curve.allowed_clients = {good.public_key};
  TrainerSession pub(o, nullptr);

  TrainerClient ok(pub.endpoint(), "good", {true, server.public_key, good.public_key, good.secret_key});
  ok.send(Hello{kProtocolVersion, "good", 0});
  EXPECT_TRUE(exchange(pub, ok, MessageType::kWelcome));

  TrainerClient refused(pub.endpoint(), "bad", {true, server.public_key, bad.public_key, bad.secret_key});
  refused.send(Hello{kProtocolVersion, "bad", 0});
  EXPECT_FALSE(exchange(pub, refused, MessageType::kWelcome, 500ms));

  TrainerClient plain(pub.endpoint(), "plain");  // no CURVE at all
  plain.send(Hello{kProtocolVersion, "plain", 0});
  EXPECT_FALSE(exchange(pub, plain, MessageType::kWelcome, 300ms));
  EXPECT_EQ(pub.stats().sessions, 1u);
}

TEST(Transport, KeyFilesAndAllowLists) {
  TempDir d;
  const KeyPair k = generate_curve_keypair();
  std::ofstream(d.path / "pub.key") << k.public_key << "\n";
  EXPECT_EQ(read_key_file(d.path / "pub.key"), k.public_key);
  std::ofstream(d.path / "bad.key") << "short\n";
  EXPECT_THROW(read_key_file(d.path / "bad.key"), std::runtime_error);
  EXPECT_THROW(read_key_file(d.path / "missing.key"), std::runtime_error);
  std::ofstream(d.path / "allow") << "# trainers\n" << k.public_key << "  # node 1\n\n";
  EXPECT_EQ(read_allow_list(d.path / "allow"), (std::vector<std::string>{k.public_key}));
  std::ofstream(d.path / "allow2") << "nonsense\n";
  EXPECT_THROW(read_allow_list(d.path / "allow2"), std::runtime_error);
}

}  // namespace
}  // namespace longtail::bridge
