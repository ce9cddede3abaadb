// Journal tests: entries and the sequence counter survive a "restart" (a new Journal on the same
// directory), acked entries do not come back, and a damaged entry is set aside instead of loaded.
#include <gtest/gtest.h>

#include <fstream>

#include "trainer_bridge/journal.h"

namespace longtail::bridge {
namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() / ("longtail-journal-" + std::to_string(::getpid()) + "-" +
                                                     std::to_string(reinterpret_cast<uintptr_t>(this)));
    std::filesystem::remove_all(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

Frames sample(uint8_t v) {
  Frames f;
  f.parts.push_back(Bytes{v, v});
  f.parts.push_back(Bytes{});
  f.parts.push_back(Bytes(1000, v));
  return f;
}

TEST(Journal, SerializeRoundTripAndDetectsDamage) {
  const std::string s = serialize_frames(sample(3));
  EXPECT_EQ(deserialize_frames(s).parts, sample(3).parts);
  std::string bad = s;
  bad[20] ^= 1;
  EXPECT_THROW(deserialize_frames(bad), std::runtime_error);
  EXPECT_THROW(deserialize_frames(s.substr(0, s.size() - 3)), std::runtime_error);
  EXPECT_THROW(deserialize_frames("junk"), std::runtime_error);
}

TEST(Journal, RecoversUnackedEntriesAndKeepsCounting) {
  TempDir d;
  {
    Journal j(d.path, false);
    EXPECT_EQ(j.next_seq(), 0u);
    for (int i = 0; i < 3; ++i) {
      const uint64_t s = j.allocate_seq();
      j.write(s, sample(static_cast<uint8_t>(s)));
    }
    j.remove(1);
  }
  {
    Journal j(d.path, true);
    auto rec = j.take_recovered();
    ASSERT_EQ(rec.size(), 2u);
    EXPECT_EQ(rec.at(0).parts, sample(0).parts);
    EXPECT_EQ(rec.at(2).parts, sample(2).parts);
    EXPECT_EQ(j.next_seq(), 3u);
    j.remove(0);
    j.remove(2);
    EXPECT_EQ(j.allocate_seq(), 3u);
  }
  Journal j(d.path, false);
  EXPECT_TRUE(j.take_recovered().empty());
  EXPECT_EQ(j.next_seq(), 4u);  // numbers are never reused, even with an empty journal
}

TEST(Journal, DamagedEntryIsMovedAside) {
  TempDir d;
  {
    Journal j(d.path, false);
    j.write(j.allocate_seq(), sample(1));
    j.write(j.allocate_seq(), sample(2));
  }
  const auto victim = d.path / "00000000000000000001.batch";
  ASSERT_TRUE(std::filesystem::exists(victim));
  std::filesystem::resize_file(victim, 10);
  Journal j(d.path, false);
  auto rec = j.take_recovered();
  EXPECT_EQ(rec.size(), 1u);
  EXPECT_TRUE(rec.count(0));
  EXPECT_TRUE(std::filesystem::exists(d.path / "00000000000000000001.batch.corrupt"));
  EXPECT_EQ(j.next_seq(), 2u);
}

TEST(Journal, UnusableDirectoryIsAnError) {
  TempDir d;
  std::filesystem::create_directories(d.path);
  std::ofstream(d.path / "file") << "x";
  EXPECT_THROW(Journal(d.path / "file" / "sub", false), std::runtime_error);
}

}  // namespace
}  // namespace longtail::bridge
