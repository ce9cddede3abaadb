// Strict decoding of protocol messages by walking their field lists (wire_fields.h). The decoder is
// the worker's first line of defence against bad input (and the libFuzzer target's subject): it
// never trusts a length, an index or a type from the wire, bounds every msgpack container by the
// bytes actually received, checks array frames against the lengths the header claims before
// copying anything, and reports what was wrong as a ProtocolError naming the field path. It checks
// wire types and the protocol's own rules; what a group may ask of the engine is the request
// validator's business.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include <msgpack.hpp>

#include "trainer_bridge/codec.h"
#include "trainer_bridge/wire_fields.h"

namespace longtail::bridge {
namespace {

using wire::HasFields;
using wire::Presence;

// Anything longer than this in one trajectory or group is refused before any frame is read.
constexpr uint64_t kMaxArrayLength = uint64_t{1} << 31;
constexpr int kMaxJsonDepth = 16;

struct Ctx {
  std::string type;
  std::optional<uint64_t> req;
  [[noreturn]] void fail(const char* code, const std::string& what) const {
    throw ProtocolError(code, type.empty() ? what : type + ": " + what, req, type);
  }
};

const char* kind_name(msgpack::type::object_type t) {
  switch (t) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "boolean";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return "integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "string";
    case msgpack::type::BIN: return "binary";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    default: return "extension";
  }
}

// A field path (groups[2].sampling.top_p) kept as a chain on the stack and spelled out only for
// an error message.
struct Path {
  const Path* parent = nullptr;
  std::string_view key;
  int64_t index = -1;  // >= 0: a list element
  std::string str() const {
    std::string s = parent ? parent->str() : std::string();
    if (index >= 0) return s + "[" + std::to_string(index) + "]";
    if (key.empty()) return s;
    return s.empty() ? std::string(key) : s + "." + std::string(key);
  }
};

// The message's array frames: what the header declares ("frames" map) and, in field-list order,
// the element count of every slice the header claims. Checked against the received frames before
// anything is copied.
struct FramePlan {
  struct Frame {
    std::string_view name;
    uint64_t index = 0;
    uint64_t elements = 0;
    size_t element_size = 0;
    size_t cursor = 0;  // bytes already copied out
  };
  std::array<Frame, 8> frames{};
  size_t n = 0;
  std::vector<uint64_t> slices;  // one entry per frame()/frame_if() call, in visit order
  size_t next_slice = 0;
  Frame& find(std::string_view name) {
    for (size_t i = 0; i < n; ++i)
      if (frames[i].name == name) return frames[i];
    throw std::logic_error("wire_fields: array frame '" + std::string(name) + "' is not declared by the message");
  }
};

class Decoder {
 public:
  Decoder(const msgpack::object& o, const Path& path, const Ctx& ctx, FramePlan& plan)
      : path_(path), ctx_(ctx), plan_(plan) {
    if (o.type != msgpack::type::MAP) ctx_.fail(errc::kBadField, "field '" + path.str() + "' must be a map, got " + kind_name(o.type));
    map_ = &o.via.map;
  }

  template <class T>
  void operator()(std::string_view k, T& out, Presence presence = wire::kRequired) {
    const Path p{&path_, k};
    const msgpack::object* o = find(k);
    if constexpr (requires { out.has_value(); }) presence = wire::kOptional;  // nil = nullopt
    if (!o || (o->type == msgpack::type::NIL && presence != wire::kRequired)) {
      if (presence == wire::kRequired) ctx_.fail(errc::kBadField, "missing field '" + p.str() + "'");
      return;
    }
    read(p, *o, out);
  }
  void bytes(std::string_view k, std::string& out, Presence presence) {
    const Path p{&path_, k};
    const msgpack::object* o = find(k);
    if (!o || o->type == msgpack::type::NIL) {
      if (presence == wire::kRequired) ctx_.fail(errc::kBadField, "missing field '" + p.str() + "'");
      return;
    }
    if (o->type == msgpack::type::BIN) out.assign(o->via.bin.ptr, o->via.bin.size);
    else if (o->type == msgpack::type::STR) out.assign(o->via.str.ptr, o->via.str.size);
    else mistyped(p, "binary or a string", *o);
  }
  void nullable(std::string_view k, double& out, bool& set) {
    const msgpack::object* o = find(k);
    set = o && o->type != msgpack::type::NIL;
    if (set) read(Path{&path_, k}, *o, out);
  }
  template <class F>
  void derived(std::string_view, F&&) {}

  template <size_t N>
  void frames(const std::array<std::string_view, N>& names) {
    const Path p{&path_, "frames"};
    const msgpack::object* o = find("frames");
    if (!o) ctx_.fail(errc::kBadField, "missing field 'frames'");
    Decoder refs(*o, p, ctx_, plan_);
    for (auto name : names) {
      auto& f = plan_.frames[plan_.n++];
      f.name = name;
      refs(name, f.index);
    }
  }
  template <class T>
  void frame(std::string_view name, std::vector<T>&, std::string_view len_key) {
    add_slice<T>(name, length(len_key));
  }
  template <class T>
  void frame_if(std::string_view name, std::vector<T>&, std::string_view flag_key, std::string_view len_key) {
    bool present = false;
    (*this)(flag_key, present);
    add_slice<T>(name, present ? length(len_key) : 0);
  }

 private:
  const msgpack::object* find(std::string_view k) const {
    for (uint32_t i = 0; i < map_->size; ++i) {
      const auto& kv = map_->ptr[i];
      if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == k)
        return &kv.val;
    }
    return nullptr;
  }
  [[noreturn]] void mistyped(const Path& p, const char* want, const msgpack::object& o) const {
    ctx_.fail(errc::kBadField, "field '" + p.str() + "' must be " + want + ", got " + kind_name(o.type));
  }
  // A wire number into a float member: a finite double beyond float's range would be undefined
  // behaviour to convert (C++ [conv.double]), so it is refused by name; NaN and infinities pass
  // through for the validator to judge.
  template <class T>
  T narrow_number(const Path& p, double v) const {
    if constexpr (std::is_same_v<T, float>) {
      if (std::isfinite(v) && std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max()))
        ctx_.fail(errc::kBadField, "field '" + p.str() + "' is out of the 32-bit float range");
    }
    return static_cast<T>(v);
  }

  // The slice length carried by len_key, read once per map however many arrays share it.
  uint64_t length(std::string_view len_key) {
    for (size_t i = 0; i < nlens_; ++i)
      if (lens_[i].first == len_key) return lens_[i].second;
    uint64_t len = 0;
    (*this)(len_key, len);
    if (len > kMaxArrayLength) ctx_.fail(errc::kBadField, "field '" + Path{&path_, len_key}.str() + "' is too large");
    if (nlens_ == lens_.size()) throw std::logic_error("wire_fields: too many length keys in one map");
    lens_[nlens_++] = {len_key, len};
    return len;
  }
  template <class T>
  void add_slice(std::string_view name, uint64_t count) {
    auto& f = plan_.find(name);
    f.element_size = sizeof(T);
    f.elements += count;
    plan_.slices.push_back(count);
  }

  template <class T>
  void read(const Path& p, const msgpack::object& o, T& out) {
    if constexpr (HasFields<T>) {
      Decoder sub(o, p, ctx_, plan_);
      wire::fields(sub, out);
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (o.type != msgpack::type::STR) mistyped(p, "a string", o);
      out.assign(o.via.str.ptr, o.via.str.size);
    } else if constexpr (std::is_same_v<T, rollout::FinishReason>) {
      std::string s;
      read(p, o, s);
      const auto r = parse_finish_reason(s);
      if (!r) ctx_.fail(errc::kBadField, "field '" + p.str() + "' is not one of stop|length|context|aborted");
      out = *r;
    } else if constexpr (std::is_same_v<T, nlohmann::json>) {
      out = to_json(o, 0);
    } else if constexpr (requires { out.has_value(); *out; }) {
      out.emplace();
      read(p, o, *out);
    } else if constexpr (requires { out.push_back(std::declval<typename T::value_type>()); }) {
      if (o.type != msgpack::type::ARRAY) mistyped(p, "an array", o);
      out.clear();
      const auto& a = o.via.array;
      if constexpr (!HasFields<typename T::value_type>) out.reserve(a.size);  // bounded by the bytes received
      for (uint32_t i = 0; i < a.size; ++i) read(Path{&p, {}, static_cast<int64_t>(i)}, a.ptr[i], out.emplace_back());
    } else if constexpr (std::is_same_v<T, bool>) {
      if (o.type != msgpack::type::BOOLEAN) mistyped(p, "a boolean", o);
      out = o.via.boolean;
    } else if constexpr (std::is_floating_point_v<T>) {
      switch (o.type) {
        case msgpack::type::FLOAT32:
        case msgpack::type::FLOAT64: out = narrow_number<T>(p, o.via.f64); break;
        case msgpack::type::POSITIVE_INTEGER: out = narrow_number<T>(p, static_cast<double>(o.via.u64)); break;
        case msgpack::type::NEGATIVE_INTEGER: out = narrow_number<T>(p, static_cast<double>(o.via.i64)); break;
        default: mistyped(p, "a number", o);
      }
    } else if constexpr (std::is_same_v<T, uint64_t>) {
      if (o.type != msgpack::type::POSITIVE_INTEGER) mistyped(p, "a non-negative integer", o);
      out = o.via.u64;
    } else {
      static_assert(std::is_same_v<T, int64_t> || std::is_same_v<T, int32_t>, "no wire decoding for this member type");
      int64_t v = 0;
      if (o.type == msgpack::type::NEGATIVE_INTEGER) {
        v = o.via.i64;
      } else if (o.type == msgpack::type::POSITIVE_INTEGER) {
        if (o.via.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          ctx_.fail(errc::kBadField, "field '" + p.str() + "' is out of range");
        v = static_cast<int64_t>(o.via.u64);
      } else {
        mistyped(p, "an integer", o);
      }
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max())
        ctx_.fail(errc::kBadField, "field '" + p.str() + "' is out of the 32-bit range");
      out = static_cast<T>(v);
    }
  }

  nlohmann::json to_json(const msgpack::object& o, int depth) const {
    if (depth > kMaxJsonDepth) ctx_.fail(errc::kMalformed, "stats nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    switch (o.type) {
      case msgpack::type::NIL: return nullptr;
      case msgpack::type::BOOLEAN: return o.via.boolean;
      case msgpack::type::POSITIVE_INTEGER: return o.via.u64;
      case msgpack::type::NEGATIVE_INTEGER: return o.via.i64;
      case msgpack::type::FLOAT32:
      case msgpack::type::FLOAT64: return o.via.f64;
      case msgpack::type::STR: return std::string(o.via.str.ptr, o.via.str.size);
      case msgpack::type::ARRAY: {
        auto a = nlohmann::json::array();
        for (uint32_t i = 0; i < o.via.array.size; ++i) a.push_back(to_json(o.via.array.ptr[i], depth + 1));
        return a;
      }
      case msgpack::type::MAP: {
        auto m = nlohmann::json::object();
        for (uint32_t i = 0; i < o.via.map.size; ++i) {
          const auto& kv = o.via.map.ptr[i];
          if (kv.key.type != msgpack::type::STR) ctx_.fail(errc::kMalformed, "stats map key is not a string");
          m[std::string(kv.key.via.str.ptr, kv.key.via.str.size)] = to_json(kv.val, depth + 1);
        }
        return m;
      }
      default: ctx_.fail(errc::kMalformed, std::string("stats contain a ") + kind_name(o.type));
    }
  }

  const msgpack::object_map* map_ = nullptr;
  const Path& path_;
  const Ctx& ctx_;
  FramePlan& plan_;
  std::array<std::pair<std::string_view, uint64_t>, 4> lens_{};
  size_t nlens_ = 0;
};

// Second walk over the decoded message: copies each slice out of its (validated) array frame.
// Frames are not guaranteed to be aligned for their element type, hence memcpy.
struct FrameFiller : wire::IgnoreFields {
  FramePlan* plan = nullptr;
  std::span<const FrameView> received;
  template <class T>
  void operator()(std::string_view, T& v, Presence = wire::kRequired) {
    if constexpr (HasFields<T>) {
      wire::fields(*this, v);
    } else if constexpr (requires { typename T::value_type; requires HasFields<typename T::value_type>; }) {
      for (auto& e : v) wire::fields(*this, e);
    }
  }
  template <class T>
  void frame(std::string_view name, std::vector<T>& v, std::string_view) {
    const uint64_t count = plan->slices[plan->next_slice++];
    auto& f = plan->find(name);
    v.resize(count);
    if (count) std::memcpy(v.data(), received[f.index].data() + f.cursor, count * sizeof(T));
    f.cursor += count * sizeof(T);
  }
  template <class T>
  void frame_if(std::string_view name, std::vector<T>& v, std::string_view, std::string_view len_key) {
    frame(name, v, len_key);
  }
};

void check_frames(FramePlan& plan, std::span<const FrameView> received, const Ctx& ctx) {
  for (size_t i = 0; i < plan.n; ++i) {
    const auto& f = plan.frames[i];
    if (f.index == 0 || f.index >= received.size())
      ctx.fail(errc::kMalformed, "frames." + std::string(f.name) + " = " + std::to_string(f.index) +
                                     " does not name an array frame (message has " + std::to_string(received.size()) +
                                     " frames)");
    const size_t size = received[f.index].size();
    if (size != f.elements * f.element_size)
      ctx.fail(errc::kMalformed, "frame " + std::to_string(f.index) + " (" + std::string(f.name) + ") has " +
                                     std::to_string(size) + " bytes, expected " + std::to_string(f.elements) + " x " +
                                     std::to_string(f.element_size));
  }
}

// The protocol's own rules beyond wire types (PROTOCOL.md, section 3).
void check(const Ctx& ctx, const Hello& m) {
  if (m.version < kOldestProtocolVersion || m.version > kProtocolVersion)
    ctx.fail(errc::kBadVersion, "protocol version " + std::to_string(m.version) + " is not supported (this side speaks " +
                                    std::to_string(kOldestProtocolVersion) + ".." + std::to_string(kProtocolVersion) + ")");
  if (m.credits < 0) ctx.fail(errc::kBadField, "field 'credits' must be >= 0");
}
void check(const Ctx& ctx, const Welcome& m) {
  if (m.version < kOldestProtocolVersion || m.version > kProtocolVersion)
    ctx.fail(errc::kBadVersion, "worker speaks protocol version " + std::to_string(m.version) + ", expected " +
                                    std::to_string(kOldestProtocolVersion) + ".." + std::to_string(kProtocolVersion));
}
void check(const Ctx& ctx, const Credit& m) {
  if (m.batches < 0) ctx.fail(errc::kBadField, "field 'batches' must be >= 0");
}
void check(const Ctx& ctx, const UpdateWeights& m) {
  if (int{!m.path.empty()} + int{!m.shm.empty()} + int{!m.cuda_ipc.empty()} != 1)
    ctx.fail(errc::kBadField, "exactly one of 'path' (non-empty) and 'shm' (or 'cuda_ipc') must be given");
  if (m.path.find('\0') != std::string::npos)
    ctx.fail(errc::kBadField, "field 'path' contains a NUL byte at offset " + std::to_string(m.path.find('\0')));
}
void check(const Ctx& ctx, const Rewards& m) {
  if (m.uids.size() != m.rewards.size())
    ctx.fail(errc::kBadField, "'uids' has " + std::to_string(m.uids.size()) + " entries but 'rewards' has " +
                                  std::to_string(m.rewards.size()));
}
// What a group may ask for is the request validator's (rollout/request_validator.h), which the
// worker applies to the whole SUBMIT (check_submit in worker.h).
void check(const Ctx& ctx, const Submit& s) {
  if (s.groups.empty()) ctx.fail(errc::kBadField, "field 'groups' is empty");
}
void check(const Ctx& ctx, const History& h) {
  for (size_t i = 0; i < h.trajectories.size(); ++i)
    if (h.trajectories[i].prompt_id.empty())
      ctx.fail(errc::kBadField, "field 'trajectories[" + std::to_string(i) + "].prompt_id' is empty");
}
void check(const Ctx& ctx, const Sleep& m) {
  if (m.level < 1 || m.level > 2)
    ctx.fail(errc::kBadField, "field 'level' is " + std::to_string(m.level) + "; sleep levels are 1 (free the KV "
                              "cache) and 2 (free the weights too)");
}
template <class M>
void check(const Ctx&, const M&) {}

// Rules on array data, checked once the frames are copied in.
void check_filled(const Ctx& ctx, const History& h) {
  for (size_t i = 0; i < h.trajectories.size(); ++i)
    if (h.trajectories[i].prompt_tokens.empty())
      ctx.fail(errc::kBadField, "field 'trajectories[" + std::to_string(i) + "].prompt_len' must be >= 1");
}
template <class M>
void check_filled(const Ctx&, const M&) {}

template <class M>
Message decode_as(const msgpack::object& root, std::span<const FrameView> frames, const Ctx& ctx) {
  M m;
  FramePlan plan;
  const Path top{};
  Decoder d(root, top, ctx, plan);
  wire::fields(d, m);
  check(ctx, m);
  if (plan.n) {
    check_frames(plan, frames, ctx);
    FrameFiller fill;
    fill.plan = &plan;
    fill.received = frames;
    wire::fields(fill, m);
  }
  check_filled(ctx, m);
  return m;
}

Message decode_body(MessageType t, const msgpack::object& root, std::span<const FrameView> frames, const Ctx& ctx) {
  switch (t) {
    case MessageType::kHello: return decode_as<Hello>(root, frames, ctx);
    case MessageType::kSubmit: return decode_as<Submit>(root, frames, ctx);
    case MessageType::kCredit: return decode_as<Credit>(root, frames, ctx);
    case MessageType::kAck: return decode_as<Ack>(root, frames, ctx);
    case MessageType::kUpdateWeights: return decode_as<UpdateWeights>(root, frames, ctx);
    case MessageType::kRewards: return decode_as<Rewards>(root, frames, ctx);
    case MessageType::kStats: return decode_as<StatsRequest>(root, frames, ctx);
    case MessageType::kDrain: return decode_as<Drain>(root, frames, ctx);
    case MessageType::kShutdown: return decode_as<Shutdown>(root, frames, ctx);
    case MessageType::kHeartbeat: return decode_as<Heartbeat>(root, frames, ctx);
    case MessageType::kHistory: return decode_as<History>(root, frames, ctx);
    case MessageType::kSleep: return decode_as<Sleep>(root, frames, ctx);
    case MessageType::kWakeUp: return decode_as<WakeUp>(root, frames, ctx);
    case MessageType::kWelcome: return decode_as<Welcome>(root, frames, ctx);
    case MessageType::kBatch: return decode_as<Batch>(root, frames, ctx);
    case MessageType::kSubmitOk: return decode_as<SubmitOk>(root, frames, ctx);
    case MessageType::kWeightsOk: return decode_as<WeightsOk>(root, frames, ctx);
    case MessageType::kRewardsOk: return decode_as<RewardsOk>(root, frames, ctx);
    case MessageType::kStatsReply: return decode_as<StatsReply>(root, frames, ctx);
    case MessageType::kDrainOk: return decode_as<DrainOk>(root, frames, ctx);
    case MessageType::kShutdownOk: return decode_as<ShutdownOk>(root, frames, ctx);
    case MessageType::kHistoryOk: return decode_as<HistoryOk>(root, frames, ctx);
    case MessageType::kSleepOk: return decode_as<SleepOk>(root, frames, ctx);
    case MessageType::kWakeUpOk: return decode_as<WakeUpOk>(root, frames, ctx);
    case MessageType::kError: return decode_as<Error>(root, frames, ctx);
  }
  ctx.fail(errc::kUnknownType, "unhandled message type");
}

const msgpack::object* find_key(const msgpack::object_map& m, std::string_view k) {
  for (uint32_t i = 0; i < m.size; ++i)
    if (m.ptr[i].key.type == msgpack::type::STR && std::string_view(m.ptr[i].key.via.str.ptr, m.ptr[i].key.via.str.size) == k)
      return &m.ptr[i].val;
  return nullptr;
}

}  // namespace

Message decode(std::span<const FrameView> frames, Direction dir) {
  Ctx ctx;
  if (frames.empty()) ctx.fail(errc::kMalformed, "empty message (no header frame)");
  const FrameView head = frames[0];
  msgpack::object_handle oh;
  try {
    // Every msgpack container element takes at least one byte, so the received size bounds every
    // count the header may claim: no allocation larger than the input is ever attempted.
    const size_t n = head.size();
    msgpack::unpack_limit limit(n, n, n, n, n, 32);
    std::size_t off = 0;
    oh = msgpack::unpack(reinterpret_cast<const char*>(head.data()), n, off, nullptr, nullptr, limit);
    if (oh.get().type != msgpack::type::MAP)
      ctx.fail(errc::kMalformed, std::string("header must be a msgpack map, got ") + kind_name(oh.get().type) +
                                     (off != n ? " followed by " + std::to_string(n - off) + " more bytes" : ""));
    if (off != n) ctx.fail(errc::kMalformed, "header frame has " + std::to_string(n - off) + " trailing bytes after the msgpack map");
  } catch (const ProtocolError&) {
    throw;
  } catch (const std::exception& e) {
    ctx.fail(errc::kMalformed, std::string("header frame is not valid msgpack: ") + e.what());
  }
  const msgpack::object& root = oh.get();
  for (uint32_t i = 0; i < root.via.map.size; ++i)
    if (root.via.map.ptr[i].key.type != msgpack::type::STR)
      ctx.fail(errc::kMalformed, "header map keys must be strings (key " + std::to_string(i) + " is a msgpack " +
                                     kind_name(root.via.map.ptr[i].key.type) + ")");
  // Read req and type first so that every later error can name the request it answers.
  if (const auto* r = find_key(root.via.map, "req"); r && r->type == msgpack::type::POSITIVE_INTEGER) ctx.req = r->via.u64;
  const auto* to = find_key(root.via.map, "type");
  if (!to) ctx.fail(errc::kBadField, "missing field 'type'");
  if (to->type != msgpack::type::STR) ctx.fail(errc::kBadField, std::string("field 'type' must be a string, got ") + kind_name(to->type));
  const std::string tname(to->via.str.ptr, to->via.str.size);
  const auto t = parse_type(tname, dir);
  if (!t) {
    std::string shown = tname.substr(0, 64);
    for (char& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    ctx.fail(errc::kUnknownType, "unknown message type '" + shown + "'");
  }
  ctx.type = tname;
  try {
    return decode_body(*t, root, frames, ctx);
  } catch (const ProtocolError&) {
    throw;
  } catch (const std::exception& e) {  // bad_alloc on absurd sizes, ...
    ctx.fail(errc::kMalformed, std::string("cannot decode: ") + e.what());
  }
}

Message decode(const Frames& frames, Direction dir) {
  std::vector<FrameView> views;
  views.reserve(frames.parts.size());
  for (const auto& p : frames.parts) views.emplace_back(p.data(), p.size());
  return decode(views, dir);
}

}  // namespace longtail::bridge
