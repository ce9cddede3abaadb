// Encoding of protocol messages into frames by walking their field lists (wire_fields.h): frame 0
// is the msgpack header, the array frames receive each trajectory's or group's slice in list
// order. A first pass over the same list sizes the array frames so every byte is copied once.
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

#include <msgpack.hpp>

#include "trainer_bridge/codec.h"
#include "trainer_bridge/wire_fields.h"

namespace longtail::bridge {

static_assert(std::endian::native == std::endian::little,
              "array frames are little-endian; a big-endian host needs byte swapping here");

namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;
using wire::HasFields;
using wire::Presence;

void pack_str(Packer& p, std::string_view s) {
  p.pack_str(static_cast<uint32_t>(s.size()));
  p.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

// libmsgpack's pack_double converts d to uint64_t whenever d <= double(UINT64_MAX), which is
// undefined for d == 2^64 exactly (found by the decoder fuzzer). That one value is written as a
// float64 by hand; every other double goes through the library.
void pack_real(Packer& p, double d) {
  if (d != 18446744073709551616.0) {
    p.pack_double(d);
    return;
  }
  uint64_t bits = 0;
  std::memcpy(&bits, &d, sizeof bits);
  char buf[9];
  buf[0] = static_cast<char>(0xcb);
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<char>(bits >> (56 - 8 * i));
  p.pack_str_body(buf, sizeof buf);  // raw bytes: the body writer adds no header
}

void pack_json(Packer& p, const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: p.pack_nil(); break;
    case nlohmann::json::value_t::boolean: p.pack(j.get<bool>()); break;
    case nlohmann::json::value_t::number_integer: p.pack(j.get<int64_t>()); break;
    case nlohmann::json::value_t::number_unsigned: p.pack(j.get<uint64_t>()); break;
    case nlohmann::json::value_t::number_float: pack_real(p, j.get<double>()); break;
    case nlohmann::json::value_t::string: pack_str(p, j.get_ref<const std::string&>()); break;
    case nlohmann::json::value_t::array:
      p.pack_array(static_cast<uint32_t>(j.size()));
      for (const auto& e : j) pack_json(p, e);
      break;
    case nlohmann::json::value_t::object:
      p.pack_map(static_cast<uint32_t>(j.size()));
      for (auto it = j.begin(); it != j.end(); ++it) {
        pack_str(p, it.key());
        pack_json(p, it.value());
      }
      break;
    default: p.pack_nil(); break;  // binary/discarded never appear in stats
  }
}

// Length keys already written in the current map: arrays of equal length share one key.
struct LenKeys {
  std::array<std::pair<std::string_view, uint64_t>, 4> keys{};
  size_t n = 0;
  const uint64_t* find(std::string_view k) const {
    for (size_t i = 0; i < n; ++i)
      if (keys[i].first == k) return &keys[i].second;
    return nullptr;
  }
  void add(std::string_view k, uint64_t v) {
    if (n == keys.size()) throw std::logic_error("wire_fields: too many length keys in one map");
    keys[n++] = {k, v};
  }
};

// Counts the keys of one map (the msgpack map header needs it first).
struct KeyCounter {
  uint32_t keys = 0;
  LenKeys lens;
  template <class T>
  void operator()(std::string_view, const T&, Presence = wire::kRequired) { ++keys; }
  void bytes(std::string_view, const std::string&, Presence) { ++keys; }
  void nullable(std::string_view, const double&, const bool&) { ++keys; }
  template <class F>
  void derived(std::string_view, F&&) { ++keys; }
  template <size_t N>
  void frames(const std::array<std::string_view, N>&) { ++keys; }
  template <class T>
  void frame(std::string_view, const std::vector<T>&, std::string_view len_key) {
    if (!lens.find(len_key)) {
      lens.add(len_key, 0);
      ++keys;
    }
  }
  template <class T>
  void frame_if(std::string_view name, const std::vector<T>& v, std::string_view flag_key, std::string_view len_key) {
    ++keys;
    frame(name, v, len_key);
  }
};

template <class M>
uint32_t key_count(const M& m) {
  KeyCounter c;
  wire::fields(c, m);
  return c.keys;
}

// Where each named array frame of the message lives in Frames::parts.
struct FrameSlots {
  std::array<std::pair<std::string_view, size_t>, 8> slots{};
  size_t n = 0;
  size_t index(std::string_view name) const {
    for (size_t i = 0; i < n; ++i)
      if (slots[i].first == name) return slots[i].second;
    throw std::logic_error("wire_fields: array frame '" + std::string(name) + "' is not declared by the message");
  }
};

// First pass: bytes per array frame, so each frame is allocated once.
struct FrameSizer : wire::IgnoreFields {
  std::array<std::pair<std::string_view, size_t>, 8> sizes{};
  size_t n = 0;
  template <class T>
  void operator()(std::string_view, const T& v, Presence = wire::kRequired) {
    if constexpr (HasFields<const T>) {
      wire::fields(*this, v);
    } else if constexpr (requires { typename T::value_type; requires HasFields<const typename T::value_type>; }) {
      for (const auto& e : v) wire::fields(*this, e);
    }
  }
  template <size_t N>
  void frames(const std::array<std::string_view, N>& names) {
    for (auto name : names) sizes[n++] = {name, 0};
  }
  template <class T>
  void frame(std::string_view name, const std::vector<T>& v, std::string_view) {
    for (size_t i = 0; i < n; ++i)
      if (sizes[i].first == name) sizes[i].second += v.size() * sizeof(T);
  }
  template <class T>
  void frame_if(std::string_view name, const std::vector<T>& v, std::string_view, std::string_view len_key) {
    frame(name, v, len_key);
  }
};

class Encoder {
 public:
  Encoder(Packer& p, Frames& f) : p_(p), f_(f) {}

  template <class M>
  void message(const char* type, const M& m) {
    FrameSizer sizer;
    wire::fields(sizer, m);
    for (size_t i = 0; i < sizer.n; ++i) {
      slots_.slots[slots_.n++] = {sizer.sizes[i].first, f_.parts.size()};
      f_.parts.emplace_back().reserve(sizer.sizes[i].second);
    }
    p_.pack_map(key_count(m) + 1);
    pack_str(p_, "type");
    pack_str(p_, type);
    map_body(m);
  }

  template <class T>
  void operator()(std::string_view k, const T& v, Presence presence = wire::kRequired) {
    pack_str(p_, k);
    if constexpr (requires { v.empty(); }) {
      if (presence == wire::kNilWhenEmpty && v.empty()) {
        p_.pack_nil();
        return;
      }
    }
    value(v);
  }
  void bytes(std::string_view k, const std::string& v, Presence) {
    pack_str(p_, k);
    p_.pack_bin(static_cast<uint32_t>(v.size()));
    p_.pack_bin_body(v.data(), static_cast<uint32_t>(v.size()));
  }
  void nullable(std::string_view k, const double& v, const bool& set) {
    pack_str(p_, k);
    if (set) p_.pack(v); else p_.pack_nil();
  }
  template <class F>
  void derived(std::string_view k, F&& fn) {
    pack_str(p_, k);
    value(fn());
  }
  template <size_t N>
  void frames(const std::array<std::string_view, N>& names) {
    pack_str(p_, "frames");
    p_.pack_map(static_cast<uint32_t>(N));
    for (auto name : names) {
      pack_str(p_, name);
      p_.pack(static_cast<uint32_t>(slots_.index(name)));
    }
  }
  template <class T>
  void frame(std::string_view name, const std::vector<T>& v, std::string_view len_key) {
    if (const uint64_t* len = lens_.find(len_key)) {
      if (*len != v.size())
        throw std::invalid_argument("'" + std::string(name) + "' has " + std::to_string(v.size()) + " entries but '" +
                                    std::string(len_key) + "' is " + std::to_string(*len) +
                                    ": per-token arrays differ in length");
    } else {
      lens_.add(len_key, v.size());
      pack_str(p_, len_key);
      p_.pack(static_cast<uint64_t>(v.size()));
    }
    if (v.empty()) return;
    Bytes& out = f_.parts[slots_.index(name)];
    const size_t off = out.size();
    out.resize(off + v.size() * sizeof(T));
    std::memcpy(out.data() + off, v.data(), v.size() * sizeof(T));
  }
  template <class T>
  void frame_if(std::string_view name, const std::vector<T>& v, std::string_view flag_key, std::string_view len_key) {
    pack_str(p_, flag_key);
    p_.pack(!v.empty());
    if (v.empty()) return;
    frame(name, v, len_key);
  }

 private:
  template <class M>
  void map_body(const M& m) {
    LenKeys outer = lens_;
    lens_ = {};
    wire::fields(*this, m);
    lens_ = outer;
  }

  template <class T>
  void value(const T& v) {
    if constexpr (HasFields<const T>) {
      p_.pack_map(key_count(v));
      map_body(v);
    } else if constexpr (std::is_same_v<T, std::string>) {
      pack_str(p_, v);
    } else if constexpr (std::is_same_v<T, rollout::FinishReason>) {
      pack_str(p_, finish_reason_name(v));
    } else if constexpr (std::is_same_v<T, nlohmann::json>) {
      pack_json(p_, v);
    } else if constexpr (std::is_same_v<T, float>) {
      pack_real(p_, static_cast<double>(v));
    } else if constexpr (requires { v.has_value(); *v; }) {
      if (v) value(*v); else p_.pack_nil();
    } else if constexpr (requires { v.begin(); typename T::value_type; }) {
      p_.pack_array(static_cast<uint32_t>(v.size()));
      for (const auto& e : v) value(e);
    } else {
      static_assert(std::is_arithmetic_v<T>, "no wire encoding for this member type");
      if constexpr (std::is_same_v<T, double>) pack_real(p_, v); else p_.pack(v);
    }
  }

  Packer& p_;
  Frames& f_;
  FrameSlots slots_;
  LenKeys lens_;
};

}  // namespace

size_t Frames::total_bytes() const {
  size_t n = 0;
  for (const auto& p : parts) n += p.size();
  return n;
}

Frames encode(const Message& m) {
  Frames f;
  f.parts.emplace_back();  // header slot
  msgpack::sbuffer buf;
  Packer p(buf);
  Encoder enc(p, f);
  std::visit([&](const auto& v) { enc.message(type_name(message_type(m)), v); }, m);
  f.parts[0].assign(reinterpret_cast<const uint8_t*>(buf.data()),
                    reinterpret_cast<const uint8_t*>(buf.data()) + buf.size());
  return f;
}

}  // namespace longtail::bridge
