// Outbox tests: send order, credit-independent bookkeeping of sent/unsent, idempotent acks,
// re-queue on a new session and re-send of overdue batches.
#include <gtest/gtest.h>

#include "trainer_bridge/outbox.h"

namespace longtail::bridge {
namespace {

std::shared_ptr<const Frames> frames_of(size_t bytes) {
  Frames f;
  f.parts.push_back(Bytes(bytes, 1));
  return std::make_shared<const Frames>(std::move(f));
}

TEST(Outbox, SendsInSequenceOrderAndTracksUnsent) {
  Outbox o(3);
  const auto t0 = Outbox::Clock::now();
  o.add(5, frames_of(10));
  o.add(2, frames_of(20));
  EXPECT_EQ(o.size(), 2u);
  EXPECT_EQ(o.unsent(), 2u);
  EXPECT_EQ(o.bytes(), 30u);
  ASSERT_NE(o.next_to_send(t0, {}), nullptr);
  EXPECT_EQ(o.next_to_send(t0, {})->seq, 2u);
  o.mark_sent(2, t0);
  EXPECT_EQ(o.next_to_send(t0, {})->seq, 5u);
  o.mark_sent(5, t0);
  EXPECT_EQ(o.unsent(), 0u);
  EXPECT_EQ(o.next_to_send(t0, {}), nullptr);
  EXPECT_FALSE(o.full());
  o.add(9, frames_of(1));
  EXPECT_TRUE(o.full());
}

TEST(Outbox, AcksAreIdempotent) {
  Outbox o(8);
  o.add(1, frames_of(1));
  o.add(2, frames_of(1));
  o.mark_sent(1, Outbox::Clock::now());
  EXPECT_EQ(o.ack({1, 1, 7}), (std::vector<uint64_t>{1}));
  EXPECT_EQ(o.ack({1}), (std::vector<uint64_t>{}));
  EXPECT_EQ(o.ack({2}), (std::vector<uint64_t>{2}));  // acking an unsent batch also works
  EXPECT_TRUE(o.empty());
  EXPECT_EQ(o.unsent(), 0u);
  EXPECT_EQ(o.bytes(), 0u);
}

TEST(Outbox, NewSessionRequeuesEverythingUnacked) {
  Outbox o(8);
  const auto t0 = Outbox::Clock::now();
  for (uint64_t s = 0; s < 3; ++s) {
    o.add(s, frames_of(1));
    o.mark_sent(s, t0);
  }
  o.ack({1});
  o.requeue_all();
  EXPECT_EQ(o.unsent(), 2u);
  EXPECT_EQ(o.next_to_send(t0, {})->seq, 0u);
  o.mark_sent(0, t0);
  EXPECT_EQ(o.next_to_send(t0, {})->seq, 2u);
}

TEST(Outbox, OverdueBatchesAreResent) {
  Outbox o(8);
  const auto t0 = Outbox::Clock::now();
  o.add(1, frames_of(1));
  o.mark_sent(1, t0);
  const auto timeout = std::chrono::seconds(5);
  EXPECT_EQ(o.next_to_send(t0 + std::chrono::seconds(4), timeout), nullptr);
  ASSERT_NE(o.next_to_send(t0 + std::chrono::seconds(5), timeout), nullptr);
  EXPECT_EQ(o.next_to_send(t0 + std::chrono::seconds(5), {}), nullptr);  // zero timeout: never
  o.mark_sent(1, t0 + std::chrono::seconds(5));
  EXPECT_EQ(o.next_to_send(t0 + std::chrono::seconds(6), timeout), nullptr);
}

}  // namespace
}  // namespace longtail::bridge
