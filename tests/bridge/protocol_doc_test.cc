// PROTOCOL.md is normative, and the codec's field lists (wire_fields.h) are what actually goes on
// the wire: every key of every message must be documented in that message's section, so a field
// added to the codec without a word in the spec fails here.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "trainer_bridge/codec.h"

#ifndef LONGTAIL_PROTOCOL_MD
#error "LONGTAIL_PROTOCOL_MD must point at trainer_bridge/PROTOCOL.md"
#endif

namespace longtail::bridge {
namespace {

std::string read_spec() {
  std::ifstream in(LONGTAIL_PROTOCOL_MD);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The text of the "### ..." section whose heading names the message (replies are described in
// their request's section: UPDATE_WEIGHTS_OK under UPDATE_WEIGHTS).
std::string section_of(const std::string& spec, MessageType t, Direction dir) {
  std::string name = type_name(t);
  const std::string arrow = dir == Direction::kToWorker ? "T→W" : "W→T";
  for (int attempt = 0; attempt < 2; ++attempt) {
    size_t pos = 0;
    while ((pos = spec.find("\n### ", pos)) != std::string::npos) {
      const size_t eol = spec.find('\n', pos + 1);
      const std::string heading = spec.substr(pos + 1, eol - pos - 1);
      const bool named = heading.starts_with("### " + name + " ");
      const bool direction_ok = name != "HELLO" || heading.find(arrow) != std::string::npos;
      if (named && direction_ok) {
        size_t end = spec.find("\n### ", eol);
        const size_t chapter = spec.find("\n## ", eol);
        end = std::min(end, chapter);
        return spec.substr(pos, end - pos);
      }
      pos = eol;
    }
    if (name.size() > 3 && name.ends_with("_OK")) name.resize(name.size() - 3);
  }
  return {};
}

TEST(ProtocolDoc, EveryWireFieldIsDocumentedInItsMessageSection) {
  const std::string spec = read_spec();
  ASSERT_FALSE(spec.empty()) << LONGTAIL_PROTOCOL_MD;
  for (int i = 0; i <= static_cast<int>(MessageType::kError); ++i) {
    const auto t = static_cast<MessageType>(i);
    const Direction dir = t >= MessageType::kWelcome ? Direction::kToTrainer : Direction::kToWorker;
    const std::string section = section_of(spec, t, dir);
    ASSERT_FALSE(section.empty()) << "PROTOCOL.md has no section for " << type_name(t);
    for (const auto& f : wire_fields(t)) {
      const std::string leaf = f.name.substr(f.name.rfind('.') + 1);
      const std::string& where = f.type == "array frame" ? spec : section;  // frames: section 2's table
      EXPECT_NE(where.find("`" + leaf + "`"), std::string::npos)
          << type_name(t) << ": field " << f.name << " (" << f.type << ") is not documented";
    }
  }
}

TEST(ProtocolDoc, CatalogueNamesNestedFieldsAndOptionality) {
  bool saw_top_p = false, saw_uid = false;
  for (const auto& f : wire_fields(MessageType::kSubmit))
    if (f.name == "groups.sampling.top_p") saw_top_p = f.optional && f.type == "float";
  for (const auto& f : wire_fields(MessageType::kBatch))
    if (f.name == "trajectories.uid") saw_uid = !f.optional && f.type == "uint";
  EXPECT_TRUE(saw_top_p);
  EXPECT_TRUE(saw_uid);
}

}  // namespace
}  // namespace longtail::bridge
