// Names on the wire: message type names (one table, both directions; finish-reason names are
// rollout/finish_reason.h's) and the field catalogue, a flat listing of every message's field
// list (wire_fields.h) that tests hold against PROTOCOL.md so the spec cannot miss a field.
#include <string>

#include "trainer_bridge/codec.h"
#include "trainer_bridge/wire_fields.h"

namespace longtail::bridge {
namespace {

struct TypeName {
  MessageType type;
  const char* name;
  Direction dir;
};
constexpr TypeName kTypes[] = {
    {MessageType::kHello, "HELLO", Direction::kToWorker},
    {MessageType::kSubmit, "SUBMIT", Direction::kToWorker},
    {MessageType::kCredit, "CREDIT", Direction::kToWorker},
    {MessageType::kAck, "ACK", Direction::kToWorker},
    {MessageType::kUpdateWeights, "UPDATE_WEIGHTS", Direction::kToWorker},
    {MessageType::kRewards, "REWARDS", Direction::kToWorker},
    {MessageType::kStats, "STATS", Direction::kToWorker},
    {MessageType::kDrain, "DRAIN", Direction::kToWorker},
    {MessageType::kShutdown, "SHUTDOWN", Direction::kToWorker},
    {MessageType::kHeartbeat, "HEARTBEAT", Direction::kToWorker},
    {MessageType::kHistory, "HISTORY", Direction::kToWorker},
    {MessageType::kSleep, "SLEEP", Direction::kToWorker},
    {MessageType::kWakeUp, "WAKE_UP", Direction::kToWorker},
    {MessageType::kWelcome, "HELLO", Direction::kToTrainer},
    {MessageType::kBatch, "BATCH", Direction::kToTrainer},
    {MessageType::kSubmitOk, "SUBMIT_OK", Direction::kToTrainer},
    {MessageType::kWeightsOk, "UPDATE_WEIGHTS_OK", Direction::kToTrainer},
    {MessageType::kRewardsOk, "REWARDS_OK", Direction::kToTrainer},
    {MessageType::kStatsReply, "STATS", Direction::kToTrainer},
    {MessageType::kDrainOk, "DRAIN_OK", Direction::kToTrainer},
    {MessageType::kShutdownOk, "SHUTDOWN_OK", Direction::kToTrainer},
    {MessageType::kHistoryOk, "HISTORY_OK", Direction::kToTrainer},
    {MessageType::kSleepOk, "SLEEP_OK", Direction::kToTrainer},
    {MessageType::kWakeUpOk, "WAKE_UP_OK", Direction::kToTrainer},
    {MessageType::kHeartbeat, "HEARTBEAT", Direction::kToTrainer},
    {MessageType::kError, "ERROR", Direction::kToTrainer},
};

using wire::HasFields;
using wire::Presence;

// Walks a field list and records each key with its wire type.
struct Catalogue {
  std::vector<WireField>& out;
  std::string prefix;

  template <class T>
  static std::string type_of() {
    if constexpr (HasFields<T> || std::is_same_v<T, nlohmann::json>) return "map";
    else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, rollout::FinishReason>) return "str";
    else if constexpr (std::is_same_v<T, bool>) return "bool";
    else if constexpr (std::is_floating_point_v<T>) return "float";
    else if constexpr (std::is_same_v<T, uint64_t>) return "uint";
    else if constexpr (std::is_integral_v<T>) return "int";
    else if constexpr (requires { typename T::value_type; std::declval<T>().has_value(); })
      return type_of<typename T::value_type>() + " or nil";
    else return "[" + type_of<typename T::value_type>() + "]";
  }
  void add(std::string_view k, std::string type, bool optional) {
    out.push_back({prefix + std::string(k), std::move(type), optional});
  }
  template <class T>
  void operator()(std::string_view k, T&, Presence p = wire::kRequired) {
    add(k, type_of<T>(), p != wire::kRequired || requires(T t) { t.has_value(); });
    if constexpr (HasFields<T>) {
      T inner{};
      Catalogue sub{out, prefix + std::string(k) + "."};
      wire::fields(sub, inner);
    } else if constexpr (requires { typename T::value_type; requires HasFields<typename T::value_type>; }) {
      typename T::value_type inner{};
      Catalogue sub{out, prefix + std::string(k) + "."};
      wire::fields(sub, inner);
    }
  }
  void bytes(std::string_view k, std::string&, Presence p) { add(k, "bin", p != wire::kRequired); }
  void nullable(std::string_view k, double&, bool&) { add(k, "float or nil", true); }
  template <class F>
  void derived(std::string_view k, F&& fn) {
    add(k, type_of<decltype(fn())>(), false);
  }
  template <size_t N>
  void frames(const std::array<std::string_view, N>& names) {
    add("frames", "map", false);
    for (auto name : names) add("frames." + std::string(name), "array frame", false);
  }
  template <class T>
  void frame(std::string_view, std::vector<T>&, std::string_view len_key) {
    for (const auto& f : out)
      if (f.name == prefix + std::string(len_key)) return;
    add(len_key, "uint", false);
  }
  template <class T>
  void frame_if(std::string_view name, std::vector<T>& v, std::string_view flag_key, std::string_view len_key) {
    add(flag_key, "bool", false);
    frame(name, v, len_key);
  }
};

template <class M>
std::vector<WireField> catalogue_of() {
  std::vector<WireField> out;
  M m{};
  Catalogue c{out, ""};
  wire::fields(c, m);
  return out;
}

}  // namespace

const char* type_name(MessageType t) {
  for (const auto& e : kTypes)
    if (e.type == t) return e.name;
  return "?";
}

std::optional<MessageType> parse_type(std::string_view name, Direction dir) {
  for (const auto& e : kTypes)
    if (e.dir == dir && name == e.name) return e.type;
  return std::nullopt;
}

MessageType message_type(const Message& m) {
  static constexpr MessageType kByIndex[] = {
      MessageType::kHello,     MessageType::kSubmit,     MessageType::kCredit,     MessageType::kAck,
      MessageType::kUpdateWeights, MessageType::kRewards, MessageType::kStats,     MessageType::kDrain,
      MessageType::kShutdown,  MessageType::kHeartbeat,  MessageType::kHistory,    MessageType::kSleep,
      MessageType::kWakeUp,    MessageType::kWelcome,    MessageType::kBatch,      MessageType::kSubmitOk,
      MessageType::kWeightsOk, MessageType::kRewardsOk,  MessageType::kStatsReply, MessageType::kDrainOk,
      MessageType::kShutdownOk, MessageType::kHistoryOk, MessageType::kSleepOk,    MessageType::kWakeUpOk,
      MessageType::kError};
  static_assert(std::size(kByIndex) == std::variant_size_v<Message>);
  return kByIndex[m.index()];
}

std::vector<WireField> wire_fields(MessageType t) {
  switch (t) {
    case MessageType::kHello: return catalogue_of<Hello>();
    case MessageType::kSubmit: return catalogue_of<Submit>();
    case MessageType::kCredit: return catalogue_of<Credit>();
    case MessageType::kAck: return catalogue_of<Ack>();
    case MessageType::kUpdateWeights: return catalogue_of<UpdateWeights>();
    case MessageType::kRewards: return catalogue_of<Rewards>();
    case MessageType::kStats: return catalogue_of<StatsRequest>();
    case MessageType::kDrain: return catalogue_of<Drain>();
    case MessageType::kShutdown: return catalogue_of<Shutdown>();
    case MessageType::kHeartbeat: return catalogue_of<Heartbeat>();
    case MessageType::kHistory: return catalogue_of<History>();
    case MessageType::kSleep: return catalogue_of<Sleep>();
    case MessageType::kWakeUp: return catalogue_of<WakeUp>();
    case MessageType::kWelcome: return catalogue_of<Welcome>();
    case MessageType::kBatch: return catalogue_of<Batch>();
    case MessageType::kSubmitOk: return catalogue_of<SubmitOk>();
    case MessageType::kWeightsOk: return catalogue_of<WeightsOk>();
    case MessageType::kRewardsOk: return catalogue_of<RewardsOk>();
    case MessageType::kStatsReply: return catalogue_of<StatsReply>();
    case MessageType::kDrainOk: return catalogue_of<DrainOk>();
    case MessageType::kShutdownOk: return catalogue_of<ShutdownOk>();
    case MessageType::kHistoryOk: return catalogue_of<HistoryOk>();
    case MessageType::kSleepOk: return catalogue_of<SleepOk>();
    case MessageType::kWakeUpOk: return catalogue_of<WakeUpOk>();
    case MessageType::kError: return catalogue_of<Error>();
  }
  return {};
}

}  // namespace longtail::bridge
