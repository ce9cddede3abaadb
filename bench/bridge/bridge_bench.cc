// Trainer-bridge benchmarks on synthetic trajectories (no model): the trainer session (outbox, credits,
// acks, optional journal) on one thread, a trainer client (DEALER, full decode) on another.
//   throughput: payload MB/s and batches/s with ~1 MiB batches over ipc:// and tcp://127.0.0.1,
//               next to raw ZeroMQ ROUTER->DEALER 1 MiB messages as the baseline of the same run.
//   latency:    p50/p99 from batch ready (publish) to decoded at the client, one batch in flight.
//   fault:      a stream of >= 10,000 trajectories while the trainer disconnects and reconnects
//               (new identity, new HELLO) 1,000 times at random; counts lost and duplicated ones.
// Usage: longtail_bridge_bench [throughput|latency|fault|all] [--quick]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "trainer_bridge/trainer_session.h"
#include "trainer_bridge/trainer_client.h"

namespace lb = longtail::bridge;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// 16 trajectories x (256 prompt tokens + 4032 response tokens x (token, logprob, version)) = 1 MiB.
lb::Batch synthetic_batch(int trajectories, int prompt, int response, uint64_t first_uid) {
  lb::Batch b;
  b.policy_version = 3;
  for (int i = 0; i < trajectories; ++i) {
    longtail::rollout::Trajectory t;
    t.uid = first_uid + i;
    t.group_id = "g" + std::to_string(t.uid / 8);
    t.prompt_id = t.group_id;
    t.sample_index = static_cast<int32_t>(t.uid % 8);
    t.prompt_tokens.assign(prompt, 17);
    t.response_tokens.resize(response);
    for (int k = 0; k < response; ++k) t.response_tokens[k] = static_cast<int32_t>((t.uid + k) % 151643);
    t.behaviour_logprobs.assign(response, -0.5f);
    t.policy_versions.assign(response, 3);
    b.trajectories.push_back(std::move(t));
  }
  b.importance.trajectories = trajectories;
  return b;
}

size_t payload_bytes(const lb::Batch& b) {
  size_t n = 0;
  for (const auto& t : b.trajectories)
    n += t.prompt_tokens.size() * 4 + t.response_tokens.size() * (4 + 4 + 8);
  return n;
}

std::string ipc_endpoint(const char* name) {
  return "ipc:///tmp/longtail-bench-" + std::to_string(::getpid()) + "-" + name + ".sock";
}

// ---------------------------------------------------------------- throughput
struct Rate {
  double mb_per_s = 0, batches_per_s = 0;
};

Rate session_throughput(const std::string& endpoint, int batches, bool journal) {
  lb::TrainerSessionOptions o;
  o.endpoint = endpoint;
  o.max_outbox_batches = 64;
  o.ack_timeout_s = 0;
  std::filesystem::path jdir;
  if (journal) {
    jdir = std::filesystem::temp_directory_path() / ("longtail-bench-journal-" + std::to_string(::getpid()));
    std::filesystem::remove_all(jdir);
    o.journal_dir = jdir;
  }
  lb::TrainerSession pub(o, nullptr);
  const lb::Batch proto = synthetic_batch(16, 256, 4032, 0);
  const size_t bytes = payload_bytes(proto);
  std::atomic<bool> ready{false};
  std::atomic<int64_t> done_ns{0};
  std::thread trainer([&] {
    lb::TrainerClient c(pub.endpoint(), "bench");
    c.send(lb::Hello{lb::kProtocolVersion, "bench", 16});
    ready = true;
    int got = 0;
    std::vector<uint64_t> acks;
    while (got < batches) {
      auto m = c.recv(5000ms);
      if (!m) break;
      if (auto* b = std::get_if<lb::Batch>(&*m)) {
        ++got;
        acks.push_back(b->seq);
        if (acks.size() >= 4) {
          c.send(lb::Ack{acks});
          c.send(lb::Credit{static_cast<int64_t>(acks.size())});
          acks.clear();
        }
      }
    }
    c.send(lb::Ack{acks});
    done_ns = wall_ns();
    std::this_thread::sleep_for(50ms);
  });
  while (!pub.trainer_connected()) pub.poll(5ms);
  const int64_t t0 = wall_ns();
  int published = 0;
  while (done_ns.load() == 0) {
    if (published < batches && pub.wants_batches()) {
      lb::Batch b = proto;
      pub.publish(std::move(b));
      ++published;
      pub.poll(0ms);
    } else {
      pub.poll(1ms);
    }
  }
  trainer.join();
  if (journal) std::filesystem::remove_all(jdir);
  const double s = (done_ns - t0) / 1e9;
  return {static_cast<double>(bytes) * batches / s / 1e6, batches / s};
}

// Baseline: raw ZeroMQ, one 1 MiB frame per message, no protocol, no acks (high-water marks only).
Rate raw_zmq_throughput(const std::string& endpoint, int messages, size_t bytes) {
  zmq::context_t ctx(1);
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::router_mandatory, 1);
  router.bind(endpoint);
  const std::string ep = router.get(zmq::sockopt::last_endpoint);
  std::atomic<int64_t> done_ns{0};
  std::thread trainer([&] {
    zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::routing_id, "raw");
    dealer.connect(ep);
    (void)dealer.send(zmq::str_buffer("hi"), zmq::send_flags::none);
    for (int i = 0; i < messages; ++i) {
      zmq::message_t m;
      (void)dealer.recv(m, zmq::recv_flags::none);
    }
    done_ns = wall_ns();
  });
  zmq::message_t id, hi;
  (void)router.recv(id, zmq::recv_flags::none);
  (void)router.recv(hi, zmq::recv_flags::none);
  std::vector<uint8_t> payload(bytes, 7);
  const int64_t t0 = wall_ns();
  for (int i = 0; i < messages; ++i) {
    (void)router.send(zmq::buffer(std::string("raw")), zmq::send_flags::sndmore);
    (void)router.send(zmq::buffer(payload), zmq::send_flags::none);
  }
  trainer.join();
  const double s = (done_ns - t0) / 1e9;
  return {static_cast<double>(bytes) * messages / s / 1e6, messages / s};
}

void run_throughput(bool quick) {
  const int n = quick ? 200 : 2000;
  const size_t bytes = payload_bytes(synthetic_batch(16, 256, 4032, 0));
  std::printf("\n### Throughput: %d batches of %zu payload bytes (16 trajectories, 256 + 4032 tokens)\n\n", n, bytes);
  std::printf("| transport | path | MB/s | batches/s | ratio to raw ZeroMQ |\n|---|---|---:|---:|---:|\n");
  for (const auto& [name, ep] : {std::pair<std::string, std::string>{"ipc", ipc_endpoint("tp")},
                                 {"tcp", "tcp://127.0.0.1:0"}}) {
    const Rate raw = raw_zmq_throughput(ep, n, bytes);
    const Rate ours = session_throughput(ep, n, false);
    const Rate jour = session_throughput(ep, n, true);
    std::printf("| %s | raw ZeroMQ 1 MiB frames (baseline) | %.0f | %.0f | 1.00 |\n", name.c_str(), raw.mb_per_s, raw.batches_per_s);
    std::printf("| %s | BATCH: encode + outbox + send + decode + ack | %.0f | %.0f | %.2f |\n", name.c_str(), ours.mb_per_s,
                ours.batches_per_s, ours.mb_per_s / raw.mb_per_s);
    std::printf("| %s | BATCH with on-disk journal (no fsync) | %.0f | %.0f | %.2f |\n", name.c_str(), jour.mb_per_s,
                jour.batches_per_s, jour.mb_per_s / raw.mb_per_s);
    std::fflush(stdout);
  }
}

// ---------------------------------------------------------------- latency
void latency_case(const std::string& label, const std::string& endpoint, int trajectories, int response, int count) {
  lb::TrainerSessionOptions o;
  o.endpoint = endpoint;
  lb::TrainerSession pub(o, nullptr);
  std::vector<double> lat_us;
  std::atomic<int> received{0};
  std::thread trainer([&] {
    lb::TrainerClient c(pub.endpoint(), "lat");
    c.send(lb::Hello{lb::kProtocolVersion, "lat", 1000000});
    while (received.load() < count) {
      auto m = c.recv(5000ms);
      if (!m) break;
      if (auto* b = std::get_if<lb::Batch>(&*m)) {
        lat_us.push_back((wall_ns() - b->created_ns) / 1e3);
        c.send(lb::Ack{{b->seq}});
        ++received;
      }
    }
  });
  while (!pub.trainer_connected()) pub.poll(5ms);
  const lb::Batch proto = synthetic_batch(trajectories, 256, response, 0);
  for (int i = 0; i < count; ++i) {
    const int before = received.load();
    lb::Batch b = proto;
    pub.publish(std::move(b));
    const auto until = Clock::now() + 2s;
    // Blocks until the client's ack arrives (no spinning: the client thread needs the core).
    while (received.load() == before && Clock::now() < until) pub.poll(5ms);
    pub.poll(0ms);
  }
  trainer.join();
  std::sort(lat_us.begin(), lat_us.end());
  auto pct = [&](double p) { return lat_us.empty() ? 0.0 : lat_us[std::min(lat_us.size() - 1, static_cast<size_t>(p * lat_us.size()))]; };
  std::printf("| %s | %zu | %.0f | %.0f | %.0f | %.0f |\n", label.c_str(), payload_bytes(proto), pct(0.5), pct(0.99),
              lat_us.empty() ? 0.0 : lat_us.back(), static_cast<double>(lat_us.size()));
  std::fflush(stdout);
}

void run_latency(bool quick) {
  const int n = quick ? 200 : 2000;
  std::printf("\n### Latency: publish (batch ready) -> decoded at the trainer client, one batch in flight, %d batches\n\n", n);
  std::printf("| case | payload bytes | p50 us | p99 us | max us | samples |\n|---|---:|---:|---:|---:|---:|\n");
  latency_case("ipc, 1 MiB batch", ipc_endpoint("lat1"), 16, 4032, n);
  latency_case("tcp, 1 MiB batch", "tcp://127.0.0.1:0", 16, 4032, n);
  latency_case("ipc, 8-trajectory 64 KiB batch", ipc_endpoint("lat2"), 8, 448, n);
  latency_case("tcp, 8-trajectory 64 KiB batch", "tcp://127.0.0.1:0", 8, 448, n);
}

// ---------------------------------------------------------------- fault
void run_fault(bool quick) {
  const int total_trajectories = quick ? 2000 : 10000;
  const int per_batch = 4;
  const int disconnects = quick ? 200 : 1000;
  const int batches = total_trajectories / per_batch;
  lb::TrainerSessionOptions o;
  o.endpoint = ipc_endpoint("fault");
  o.max_outbox_batches = 64;
  o.ack_timeout_s = 0.5;  // covers acks lost with a closing socket
  o.heartbeat_interval_s = 0.1;
  lb::TrainerSession pub(o, nullptr);

  std::atomic<bool> finished{false};
  std::vector<int> uid_deliveries(total_trajectories, 0);
  int reconnects = 0, duplicates_dropped = 0;
  std::thread trainer([&] {
    std::mt19937 rng(12345);
    // Disconnect after a random number of received messages, so that the 1,000 drops spread over
    // the stream; some drops happen before the ack of a received batch is sent.
    const double mean_gap = static_cast<double>(batches) / disconnects * 0.8;
    std::geometric_distribution<int> gap(1.0 / std::max(1.0, mean_gap));
    std::bernoulli_distribution ack_before_drop(0.5);
    std::set<uint64_t> seen;  // (one worker) seqs delivered to the "application"
    int id = 0;
    auto client = std::make_unique<lb::TrainerClient>(pub.endpoint(), "fault-" + std::to_string(id++));
    client->send(lb::Hello{lb::kProtocolVersion, "fault", 8});
    int until_drop = gap(rng);
    while (static_cast<int>(seen.size()) < batches) {
      auto m = client->recv(2000ms);
      if (!m) {  // the session was lost (e.g. HELLO dropped): start over
        client = std::make_unique<lb::TrainerClient>(pub.endpoint(), "fault-" + std::to_string(id++));
        client->send(lb::Hello{lb::kProtocolVersion, "fault", 8});
        continue;
      }
      if (auto* b = std::get_if<lb::Batch>(&*m)) {
        if (seen.insert(b->seq).second) {
          for (const auto& t : b->trajectories) ++uid_deliveries.at(t.uid);
        } else {
          ++duplicates_dropped;
        }
        const bool drop_now = reconnects < disconnects && --until_drop <= 0;
        if (!drop_now || ack_before_drop(rng)) client->send(lb::Ack{{b->seq}});
        client->send(lb::Credit{1});
        if (drop_now) {
          ++reconnects;
          until_drop = gap(rng);
          client = std::make_unique<lb::TrainerClient>(pub.endpoint(), "fault-" + std::to_string(id++));
          client->send(lb::Hello{lb::kProtocolVersion, "fault", 8});
        }
      } else if (auto* e = std::get_if<lb::Error>(&*m)) {
        if (e->code == lb::errc::kNoSession) client->send(lb::Hello{lb::kProtocolVersion, "fault", 8});
      }
    }
    // Final acks for everything seen (a last session that acks all).
    client->send(lb::Ack{std::vector<uint64_t>(seen.begin(), seen.end())});
    std::this_thread::sleep_for(200ms);
    finished = true;
  });
  const auto t0 = Clock::now();
  int published = 0;
  while (!finished.load()) {
    if (published < batches && pub.has_room()) {
      pub.publish(synthetic_batch(per_batch, 64, 256, static_cast<uint64_t>(published) * per_batch));
      ++published;
    }
    pub.poll(published < batches && pub.has_room() ? 0ms : 1ms);
  }
  trainer.join();
  for (int i = 0; i < 50 && !pub.all_acked(); ++i) pub.poll(10ms);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  int lost = 0, duplicated = 0;
  for (int d : uid_deliveries) {
    if (d == 0) ++lost;
    if (d > 1) duplicated += d - 1;
  }
  const auto st = pub.stats();
  std::printf("\n### Fault run: %d trajectories in %d batches, %d trainer disconnects/reconnects (new identity + HELLO)\n\n",
              total_trajectories, batches, reconnects);
  std::printf("| trajectories | disconnects | lost | duplicated (after dedup) | duplicate batches dropped by the client | batches re-sent by the worker | sessions | un-acked at end | seconds |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  std::printf("| %d | %d | %d | %d | %d | %llu | %llu | %zu | %.1f |\n", total_trajectories, reconnects, lost, duplicated,
              duplicates_dropped, static_cast<unsigned long long>(st.batches_resent),
              static_cast<unsigned long long>(st.sessions), st.outbox_batches, s);
  std::fflush(stdout);
  if (lost || duplicated) std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string what = argc > 1 ? argv[1] : "all";
  bool quick = false;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
  if (what == "--quick") what = "all";
  spdlog::set_level(spdlog::level::err);
  if (what == "throughput" || what == "all") run_throughput(quick);
  if (what == "latency" || what == "all") run_latency(quick);
  if (what == "fault" || what == "all") run_fault(quick);
  return 0;
}
