// libipc's Message and its translation to registers and the IPC buffer:
// round trips, limits on the way in, and hostile info words on the way out.
#include <gtest/gtest.h>
#include <sanitizer/asan_interface.h>

#include <cstring>
#include <memory>
#include <random>

#include "libipc_fixture.hpp"
#include "mk/ipc.hpp"
#include "seed.hpp"

namespace mk::ipc {
namespace {

struct Point {
    int32_t x;
    int32_t y;
    double weight;
};

uint64_t info_word(uint32_t label, uint32_t length, uint32_t handles, bool call = false) {
    return abi::MsgInfo{label, length, handles, call}.encode();
}

using LibipcMessage = LibipcTest;

TEST_F(LibipcMessage, RoundTripThroughRegistersAndBuffer) {
    Message m(42);
    m.set_word(0, 1).set_word(1, ~uint64_t{0}).set_word_as(2, -5.25).set_word_as(3, int32_t{-7});
    m.put(Point{3, -4, 0.5}).append("tail", 4);
    Handle moved(0x11);
    Handle copied(0x22);
    m.move_handle(std::move(moved)).copy_handle(copied);
    ASSERT_EQ(m.error(), abi::Err::Ok);
    EXPECT_FALSE(moved.valid());

    abi::IpcBuffer buf{};
    Result<uint64_t> info = encode(m, &buf);
    ASSERT_TRUE(info.ok());
    abi::MsgInfo decoded = abi::MsgInfo::decode(*info);
    EXPECT_EQ(decoded.label, 42u);
    EXPECT_EQ(decoded.length, sizeof(Point) + 4);
    EXPECT_EQ(decoded.handles, 2u);
    EXPECT_FALSE(decoded.call);
    EXPECT_EQ(buf.handles[0], 0x11u);
    EXPECT_EQ(buf.handle_flags[0], uint32_t(abi::kTransferMove));
    EXPECT_EQ(buf.handles[1], 0x22u);
    EXPECT_EQ(buf.handle_flags[1], uint32_t(abi::kTransferCopy));

    uint64_t words[abi::kMessageWords];
    for (unsigned i = 0; i < abi::kMessageWords; ++i) words[i] = m.word(i);
    Result<Received> r = decode(*info | (uint64_t{1} << 47), words, 0xBADE, &buf);
    ASSERT_TRUE(r.ok());
    const Message& out = r->message;
    EXPECT_EQ(out.label(), 42u);
    EXPECT_EQ(out.word(0), 1u);
    EXPECT_EQ(out.word(1), ~uint64_t{0});
    EXPECT_EQ(out.word_as<double>(2), -5.25);
    EXPECT_EQ(out.word_as<int32_t>(3), -7);
    EXPECT_EQ(r->badge, 0xBADEu);
    EXPECT_TRUE(r->call);
    EXPECT_FALSE(r->is_notice());

    PayloadReader reader(out);
    Result<Point> p = reader.get<Point>();
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->x, 3);
    EXPECT_EQ(p->y, -4);
    EXPECT_EQ(p->weight, 0.5);
    Result<const uint8_t*> tail = reader.bytes(4);
    ASSERT_TRUE(tail.ok());
    EXPECT_EQ(std::memcmp(*tail, "tail", 4), 0);
    EXPECT_EQ(reader.remaining(), 0u);
    EXPECT_EQ(reader.get<uint8_t>().error(), abi::Err::TooLarge);

    // Received handles are the receiver's: both close with the message.
    EXPECT_EQ(out.handle_count(), 2u);
    r = abi::Err::Destroyed;  // drops the received message
    EXPECT_EQ(kernel().closes(0x11), 1);
    EXPECT_EQ(kernel().closes(0x22), 1);
    // The sent message still owns the moved handle (nothing was sent).
}

TEST_F(LibipcMessage, RegisterOnlyMessagesNeedNoBuffer) {
    Message m(7);
    m.set_word(3, 99);
    Result<uint64_t> info = encode(m, nullptr);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(*info, info_word(7, 0, 0));

    const uint64_t words[abi::kMessageWords] = {0, 0, 0, 99};
    Result<Received> r = decode(*info, words, 0, nullptr);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->message.word(3), 99u);
    EXPECT_EQ(r->message.length(), 0u);
}

TEST_F(LibipcMessage, PayloadNeedsABuffer) {
    EXPECT_EQ(encode(Message(1).append("x", 1), nullptr).error(), abi::Err::BadState);
    const uint64_t words[abi::kMessageWords] = {};
    EXPECT_EQ(decode(info_word(1, 1, 0), words, 0, nullptr).error(), abi::Err::BadState);
    EXPECT_EQ(decode(info_word(1, 0, 1), words, 0, nullptr).error(), abi::Err::BadState);
}

TEST_F(LibipcMessage, PayloadOverflowIsStickyAndRefused) {
    Message m(1);
    uint8_t big[abi::kMaxPayload] = {};
    m.append(big, sizeof big);
    EXPECT_EQ(m.error(), abi::Err::Ok);
    EXPECT_EQ(m.length(), abi::kMaxPayload);
    m.put(uint8_t{1});
    EXPECT_EQ(m.error(), abi::Err::TooLarge);
    EXPECT_EQ(m.length(), abi::kMaxPayload);  // nothing half appended
    abi::IpcBuffer buf{};
    EXPECT_EQ(encode(m, &buf).error(), abi::Err::TooLarge);

    Message n(1);
    n.append(big, 400).append(big, 100);  // the second does not fit
    EXPECT_EQ(n.length(), 400u);
    EXPECT_EQ(n.error(), abi::Err::TooLarge);
    n.set_word(4, 1);  // a later, different error does not replace the first
    EXPECT_EQ(n.error(), abi::Err::TooLarge);
    EXPECT_EQ(Message(1).set_word(4, 1).error(), abi::Err::InvalidArgument);
}

TEST_F(LibipcMessage, AFifthHandleIsRefusedAndStaysWithTheCaller) {
    Message m(1);
    for (abi::HandleValue v = 1; v <= abi::kMaxHandles; ++v) m.move_handle(Handle(v));
    EXPECT_EQ(m.error(), abi::Err::Ok);
    Handle fifth(0x55);
    m.move_handle(std::move(fifth));
    EXPECT_EQ(m.error(), abi::Err::TooLarge);
    EXPECT_TRUE(fifth.valid());
    EXPECT_EQ(m.handle_count(), abi::kMaxHandles);
    abi::IpcBuffer buf{};
    EXPECT_EQ(encode(m, &buf).error(), abi::Err::TooLarge);
    EXPECT_EQ(kernel().total_closes(), 0u);
}

TEST_F(LibipcMessage, AnEmptyHandleIsRefused) {
    Handle none;
    EXPECT_EQ(Message(1).copy_handle(none).error(), abi::Err::BadHandle);
    EXPECT_EQ(Message(1).move_handle(Handle()).error(), abi::Err::BadHandle);
}

TEST_F(LibipcMessage, NoticeLabelsCannotBeSent) {
    abi::IpcBuffer buf{};
    EXPECT_EQ(encode(Message(abi::kNoticeLabelBase), &buf).error(), abi::Err::InvalidArgument);
    EXPECT_EQ(encode(Message(abi::kLabelLastHandle), &buf).error(), abi::Err::InvalidArgument);
    EXPECT_TRUE(encode(Message(abi::kNoticeLabelBase - 1), &buf).ok());
}

TEST_F(LibipcMessage, ReservedInfoBitsAreRefused) {
    abi::IpcBuffer buf{};
    const uint64_t words[abi::kMessageWords] = {};
    for (unsigned bit : {42u, 43u, 48u, 50u, 63u}) {
        uint64_t info = info_word(1, 0, 0) | (uint64_t{1} << bit);
        EXPECT_EQ(decode(info, words, 0, &buf).error(), abi::Err::InvalidArgument) << "bit " << bit;
    }
    // Bit 47 is the kernel's to set: a call.
    Result<Received> r = decode(info_word(1, 0, 0, true), words, 0, &buf);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->call);
}

TEST_F(LibipcMessage, LengthsAndCountsOverTheLimitsAreRefused) {
    abi::IpcBuffer buf{};
    const uint64_t words[abi::kMessageWords] = {};
    EXPECT_TRUE(decode(info_word(1, abi::kMaxPayload, abi::kMaxHandles), words, 0, &buf).ok());
    for (uint32_t len : {abi::kMaxPayload + 1, 512u, 1023u}) {
        EXPECT_EQ(decode(info_word(1, len, 0), words, 0, &buf).error(), abi::Err::TooLarge);
    }
    for (uint32_t n : {5u, 6u, 7u}) {
        EXPECT_EQ(decode(info_word(1, 0, n), words, 0, &buf).error(), abi::Err::TooLarge);
    }
}

// Random info words against a buffer whose bytes past what the info allows
// are poisoned: ASan stops any read the info does not cover.
TEST_F(LibipcMessage, HostileInfoWordsNeverReadOutOfBounds) {
    std::mt19937_64 rng(mk::testing::test_seed("HostileInfoWordsNeverReadOutOfBounds"));
    auto buf = std::make_unique<abi::IpcBuffer>();
    for (unsigned i = 0; i < abi::kMaxPayload; ++i) buf->payload[i] = uint8_t(i);
    for (unsigned i = 0; i < abi::kMaxHandles; ++i) buf->handles[i] = 0x1000 + i;
    const uint64_t words[abi::kMessageWords] = {1, 2, 3, 4};
    int accepted = 0;
    for (int iter = 0; iter < 20000; ++iter) {
        uint64_t info = rng();
        switch (iter % 4) {  // mostly near-valid words, where the checks matter
            case 0:
                break;
            case 1:
                info &= ~abi::MsgInfo::kReservedBits;
                break;
            default:
                info = (info & ~abi::MsgInfo::kReservedBits) | (rng() & (uint64_t{1} << 47));
                if (iter % 8 == 2) info |= uint64_t{1} << (42 + rng() % 2);
                break;
        }
        abi::MsgInfo claimed = abi::MsgInfo::decode(info);
        uint32_t len = claimed.length <= abi::kMaxPayload ? claimed.length : abi::kMaxPayload;
        uint32_t nh = claimed.handles <= abi::kMaxHandles ? claimed.handles : abi::kMaxHandles;
        ASAN_POISON_MEMORY_REGION(buf->payload + len, abi::kMaxPayload - len);
        ASAN_POISON_MEMORY_REGION(buf->handles + nh, (abi::kMaxHandles - nh) * 4);
        ASAN_POISON_MEMORY_REGION(buf->handle_flags, sizeof buf->handle_flags);
        Result<Received> r = decode(info, words, 7, buf.get());
        if (r) {
            ++accepted;
            EXPECT_EQ(info & abi::MsgInfo::kReservedBits & ~(uint64_t{1} << 47), 0u);
            EXPECT_EQ(r->message.length(), claimed.length);
            EXPECT_LE(r->message.length(), abi::kMaxPayload);
            EXPECT_EQ(r->message.handle_count(), claimed.handles);
            EXPECT_EQ(std::memcmp(r->message.payload(), buf->payload, r->message.length()), 0);
            for (unsigned i = 0; i < r->message.handle_count(); ++i) {
                (void)r->message.take_handle(i).release();  // not real handles
            }
        }
        ASAN_UNPOISON_MEMORY_REGION(buf.get(), sizeof(abi::IpcBuffer));
    }
    EXPECT_GT(accepted, 100);
}

TEST_F(LibipcMessage, ReceivedHandlesAreOwnedAndCloseOnce) {
    abi::IpcBuffer buf{};
    buf.handles[0] = 0x31;
    buf.handles[1] = 0x32;
    buf.handles[2] = 0x33;
    const uint64_t words[abi::kMessageWords] = {};
    {
        Result<Received> r = decode(info_word(9, 0, 3), words, 0, &buf);
        ASSERT_TRUE(r.ok());
        Handle kept = r->message.take_handle(1);
        EXPECT_EQ(kept.get(), 0x32u);
        EXPECT_FALSE(r->message.take_handle(1).valid());  // taken already
        EXPECT_FALSE(r->message.take_handle(7).valid());  // no such index
        Message moved = std::move(r->message);            // ownership moves with it
        EXPECT_EQ(kernel().total_closes(), 0u);
    }
    EXPECT_EQ(kernel().closes(0x31), 1);
    EXPECT_EQ(kernel().closes(0x32), 1);
    EXPECT_EQ(kernel().closes(0x33), 1);
    EXPECT_EQ(kernel().total_closes(), 3u);
}

TEST_F(LibipcMessage, MoveAssignmentClosesWhatItReplaces) {
    Message a(1);
    a.move_handle(Handle(0x41));
    Message b(2);
    b.move_handle(Handle(0x42)).append("abc", 3);
    a = std::move(b);
    EXPECT_EQ(kernel().closes(0x41), 1);
    EXPECT_EQ(a.label(), 2u);
    EXPECT_EQ(a.length(), 3u);
    EXPECT_EQ(std::memcmp(a.payload(), "abc", 3), 0);
    EXPECT_EQ(a.handle_value(0), 0x42u);
    Handle h = a.take_handle(0);
    EXPECT_EQ(h.get(), 0x42u);
    EXPECT_EQ(kernel().closes(0x42), 0);
}

TEST_F(LibipcMessage, TypedReadsAreBoundsChecked) {
    Message m(1);
    m.put(uint32_t{0xAABBCCDD});
    EXPECT_EQ(*m.get<uint32_t>(0), 0xAABBCCDDu);
    EXPECT_EQ(*m.get<uint16_t>(2), 0xAABBu);
    EXPECT_EQ(m.get<uint32_t>(1).error(), abi::Err::TooLarge);
    EXPECT_EQ(m.get<uint8_t>(4).error(), abi::Err::TooLarge);
    EXPECT_EQ(m.get<uint8_t>(~size_t{0}).error(), abi::Err::TooLarge);
    PayloadReader r(m);
    EXPECT_EQ(r.bytes(5).error(), abi::Err::TooLarge);
    EXPECT_EQ(r.remaining(), 4u);  // a failed read consumes nothing
    EXPECT_EQ(m.word(4), 0u);
}

TEST_F(LibipcMessage, ReplyStatusIsTheLabel) {
    EXPECT_EQ(error_reply(abi::Err::TimedOut).label(), uint32_t(abi::Err::TimedOut));
    EXPECT_EQ(reply_status(Message(kStatusOk)), abi::Err::Ok);
    EXPECT_EQ(reply_status(error_reply(abi::Err::NoRights)), abi::Err::NoRights);
    EXPECT_STREQ(error_name(abi::Err::PeerDied), "PeerDied");
    EXPECT_STREQ(error_name(abi::Err(kFirstAppStatus)), "unknown error");
}

}  // namespace
}  // namespace mk::ipc
