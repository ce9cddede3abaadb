// longtail-stream: serves recorded rollouts -- a trajectory log (rollout/trajectory_log.h) or rollout
// JSONL (rollout/rollout_jsonl.h) -- to a trainer as BATCH messages at a chosen rate, with the
// worker's delivery guarantees (credits, acks, journal). A trainer can be developed and load-tested
// against real rollouts without a model. Exit codes: 0 all acked, 1 failure, 2 bad command line or
// input, 3 streamed but not every batch was acked in time.
#include <iostream>
#include <optional>

#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include "tools/cli_flags.h"
#include "tools/cli_main.h"
#include "tools/recorded_stream.h"

namespace {

namespace po = boost::program_options;
using namespace longtail;

struct Args {
  std::string input;
  bridge::StreamOptions stream;
  int32_t round_size = 64;
  bool verbose = false;
};

std::optional<Args> parse(int argc, char** argv) {
  Args a;
  std::string endpoint = "tcp://127.0.0.1:5555", journal;
  po::options_description desc(
      "longtail-stream --log FILE [options]: stream recorded rollouts to a trainer\nOptions");
  desc.add_options()("help,h", "show this help")("version", "print the version and exit")
      ("log", po::value(&a.input)->required(),
       "a trajectory log (the engine's trajectory_log option) or rollout JSONL "
       "({\"prompt_id\", \"sample\", \"step\"?, \"prompt_tokens\", \"response_tokens\"} per line)")
      ("endpoint", po::value(&endpoint), "endpoint to bind (default tcp://127.0.0.1:5555)")
      ("worker-id", po::value(&a.stream.session.worker_id)->default_value("stream-0"), "worker id in the batches")
      ("rate", po::value(&a.stream.batches_per_second)->default_value(0), "batches per second (0 = as fast as credit allows)")
      ("batch-size", po::value(&a.stream.trajectories_per_batch)->default_value(0), "trajectories per batch (0 = per recorded round)")
      ("round-size", po::value(&a.round_size)->default_value(64), "JSONL lines without \"step\": prompts per round (0 = one round)")
      ("max-batches", po::value(&a.stream.max_batches)->default_value(0), "stop after this many batches (0 = all)")
      ("journal-dir", po::value(&journal), "journal of un-acked batches")
      ("wait-for-trainer", po::value(&a.stream.wait_for_trainer_s)->default_value(30), "seconds to wait for a trainer")
      ("ack-wait", po::value(&a.stream.ack_wait_s)->default_value(30), "seconds to wait for the final acks")
      ("verbose,v", po::bool_switch(&a.verbose), "log progress to stderr");
  if (!tools::parse_flags(argc, argv, desc)) return std::nullopt;
  if (a.stream.batches_per_second < 0) throw tools::InputError("--rate must be >= 0");
  if (a.round_size < 0) throw tools::InputError("--round-size must be >= 0");
  a.stream.session.endpoint = endpoint;
  a.stream.session.journal_dir = journal;
  return a;
}

int run(const Args& a) {
  const std::atomic<bool>* stop = tools::stop_on_signals();
  bridge::StreamResult r;
  try {
    r = tools::stream_recorded(a.input, a.stream, a.round_size, rollout::OnError::kStop, stop);
  } catch (const rollout::ReplayInputError& e) {
    throw tools::InputError(e.what());
  } catch (const rollout::TrajectoryLogError& e) {
    throw tools::InputError(e.what());
  }
  return r.all_acked ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) { return longtail::tools::cli_main("longtail-stream", argc, argv, parse, run); }
