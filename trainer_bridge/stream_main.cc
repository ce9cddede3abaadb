// longtail-stream: serves a recorded trajectory log (rollout/trajectory_log.h) to a trainer as
// BATCH messages at a chosen rate, with the worker's delivery guarantees (credits, acks, journal).
// This is what `longtail-replay --stream ENDPOINT` is meant to do; the replay tool cannot link the
// bridge, so it can run this program. Exit codes: 0 all acked, 1 failure, 2 bad command line,
// 3 streamed but not every batch was acked in time.
#include <csignal>
#include <iostream>

#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include "trainer_bridge/trajectory_stream.h"

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }
}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  using namespace longtail::bridge;
  StreamOptions o;
  std::string log, endpoint = "tcp://127.0.0.1:5555", journal;
  po::options_description desc("longtail-stream: stream a trajectory log to a trainer\nOptions");
  desc.add_options()("help,h", "show this help")
      ("log", po::value(&log)->required(), "trajectory log file (written by the engine's trajectory_log option)")
      ("endpoint", po::value(&endpoint), "endpoint to bind (default tcp://127.0.0.1:5555)")
      ("worker-id", po::value(&o.session.worker_id)->default_value("stream-0"), "worker id in the batches")
      ("rate", po::value(&o.batches_per_second)->default_value(0), "batches per second (0 = as fast as credit allows)")
      ("batch-size", po::value(&o.trajectories_per_batch)->default_value(0), "trajectories per batch (0 = per recorded round)")
      ("max-batches", po::value(&o.max_batches)->default_value(0), "stop after this many batches (0 = all)")
      ("journal-dir", po::value(&journal), "journal of un-acked batches")
      ("wait-for-trainer", po::value(&o.wait_for_trainer_s)->default_value(30), "seconds to wait for a trainer")
      ("ack-wait", po::value(&o.ack_wait_s)->default_value(30), "seconds to wait for the final acks");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "longtail-stream: " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  o.session.endpoint = endpoint;
  o.session.journal_dir = journal;
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  try {
    const auto r = stream_trajectory_log(log, o, &g_stop);
    return r.all_acked ? 0 : 3;
  } catch (const std::exception& e) {
    spdlog::critical("stream: {}", e.what());
    return 1;
  }
}
