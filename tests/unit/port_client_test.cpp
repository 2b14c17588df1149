// The completion-port client API (libipc/src/port.cpp) over the fake
// kernel: the calls it makes, the deadline rule (the kernel times the wait
// out, then one poll returns what is there or TimedOut), and arguments it
// refuses without asking the server.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "libipc_fixture.hpp"
#include "mk/port.hpp"

namespace mk::ipc {
namespace {

using testing::Delivery;
using testing::Syscall;
using PortClient = LibipcTest;
using port::Packet;

std::vector<uint8_t> bytes_of(const std::vector<Packet>& ps) {
    std::vector<uint8_t> b(ps.size() * sizeof(Packet));
    if (!b.empty()) std::memcpy(b.data(), ps.data(), b.size());
    return b;
}

// A kWait reply as the server sends it: the first packet in the words, the
// rest in the payload; kPortEmpty for none.
Delivery packets_reply(const std::vector<Packet>& ps) {
    if (ps.empty()) return Delivery::message(port::kPortEmpty, false);
    const Packet& f = ps.front();
    return Delivery::message(kStatusOk, false, 0, {f.key, f.status, f.data[0], f.data[1]},
                             bytes_of(std::vector<Packet>(ps.begin() + 1, ps.end())));
}

std::vector<const Syscall*> calls(testing::FakeUserKernel& k) {
    std::vector<const Syscall*> out;
    for (const Syscall& s : k.calls) {
        if (s.number == abi::Sys::Call) out.push_back(&s);
    }
    return out;
}

TEST_F(PortClient, PostSendsThePacketInTheFourWords) {
    Endpoint p(0x10);
    kernel().deliveries.push_back(Delivery::message(kStatusOk, false));
    ASSERT_TRUE(port::post(p, Packet{1, 2, {3, 4}}).ok());
    const Syscall* s = kernel().last(abi::Sys::Call);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->label(), port::kPost);
    EXPECT_EQ(s->info().length, 0u);  // register-only: the fast path
    EXPECT_EQ(s->word(0), 1u);
    EXPECT_EQ(s->word(1), 2u);
    EXPECT_EQ(s->word(2), 3u);
    EXPECT_EQ(s->word(3), 4u);
    EXPECT_EQ(s->a[6], abi::kForever);
    kernel().deliveries.push_back(Delivery::message(port::kPortFull, false));
    EXPECT_EQ(port::try_post(p, Packet{}).error(), port::kErrPortFull);
    EXPECT_EQ(kernel().last(abi::Sys::Call)->label(), port::kTryPost);
}

TEST_F(PortClient, AWaitReturnsThePacketsTheServerSent) {
    Endpoint p(0x10);
    kernel().deliveries.push_back(packets_reply({{7, 0, {1, 2}}, {8, 1, {3, 4}}}));
    Packet out[4] = {};
    Result<size_t> n = port::wait(p, out, 4, 1, 5'000'000);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 2u);
    EXPECT_EQ(out[1].key, 8u);
    EXPECT_EQ(out[1].data[1], 4u);
    const Syscall* s = kernel().last(abi::Sys::Call);
    EXPECT_EQ(s->label(), port::kWait);
    EXPECT_EQ(s->word(0), 4u);
    EXPECT_EQ(s->word(1), 1u);
    EXPECT_EQ(s->a[6], 5'000'000u);
}

TEST_F(PortClient, AtTheDeadlineAWaitPollsOnceAndReturnsWhatIsThere) {
    Endpoint p(0x10);
    kernel().deliveries.push_back(Delivery::error(abi::Err::TimedOut));
    kernel().deliveries.push_back(packets_reply({{5, 0, {0, 0}}}));
    Packet out[8] = {};
    Result<size_t> n = port::wait(p, out, 8, 3, 1'000'000);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 1u);  // fewer than min: what there was at the deadline
    EXPECT_EQ(out[0].key, 5u);
    std::vector<const Syscall*> c = calls(kernel());
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(c[0]->word(1), 3u);
    EXPECT_EQ(c[0]->a[6], 1'000'000u);
    EXPECT_EQ(c[1]->word(1), 0u);  // the poll
    EXPECT_EQ(c[1]->a[6], abi::kForever);
}

TEST_F(PortClient, NothingAtTheDeadlineIsTimedOut) {
    Endpoint p(0x10);
    kernel().deliveries.push_back(Delivery::error(abi::Err::TimedOut));
    kernel().deliveries.push_back(packets_reply({}));
    Packet out[2];
    EXPECT_EQ(port::wait(p, out, 2, 1, 1'000'000).error(), abi::Err::TimedOut);
    // kNoWait is a deadline now: the poll alone.
    kernel().calls.clear();
    kernel().deliveries.push_back(packets_reply({}));
    EXPECT_EQ(port::wait(p, out, 2, 1, abi::kNoWait).error(), abi::Err::TimedOut);
    ASSERT_EQ(calls(kernel()).size(), 1u);
    EXPECT_EQ(calls(kernel())[0]->word(1), 0u);
}

TEST_F(PortClient, APollIsAnOrdinaryCallAndMayReturnNothing) {
    Endpoint p(0x10);
    kernel().deliveries.push_back(packets_reply({}));
    Packet out[2];
    Result<size_t> n = port::wait(p, out, 2, 0, 1'000'000);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 0u);
    EXPECT_EQ(kernel().last(abi::Sys::Call)->a[6], abi::kForever);
}

TEST_F(PortClient, BadWaitsAreRefusedWithoutAskingTheServer) {
    Endpoint p(0x10);
    Packet out[port::kMaxBatch + 5];
    EXPECT_EQ(port::wait(p, out, 0, 0).error(), abi::Err::InvalidArgument);
    EXPECT_EQ(port::wait(p, out, 2, 3).error(), abi::Err::InvalidArgument);
    EXPECT_EQ(port::wait(p, out, port::kMaxBatch + 5, port::kMaxBatch + 1).error(),
              abi::Err::InvalidArgument);
    EXPECT_EQ(kernel().count(abi::Sys::Call), 0u);
    // A big max is cut to one message's worth.
    kernel().deliveries.push_back(packets_reply({}));
    (void)port::wait(p, out, port::kMaxBatch + 5, 0);
    EXPECT_EQ(kernel().last(abi::Sys::Call)->word(0), port::kMaxBatch);
}

TEST_F(PortClient, AReplyThatIsNotWhatAServerSendsIsBadState) {
    Endpoint p(0x10);
    Packet out[4];
    // Five packets to a wait for at most 4.
    kernel().deliveries.push_back(Delivery::message(
        kStatusOk, false, 0, {1},
        bytes_of({{2, 0, {0, 0}}, {3, 0, {0, 0}}, {4, 0, {0, 0}}, {5, 0, {0, 0}}})));
    EXPECT_EQ(port::wait(p, out, 4, 1).error(), abi::Err::BadState);
    // A payload that is not whole packets.
    kernel().deliveries.push_back(Delivery::message(kStatusOk, false, 0, {1}, {1, 2, 3}));
    EXPECT_EQ(port::wait(p, out, 4, 1).error(), abi::Err::BadState);
    // None, to a wait that wants at least one.
    kernel().deliveries.push_back(Delivery::message(port::kPortEmpty, false));
    EXPECT_EQ(port::wait(p, out, 4, 1, abi::kForever).error(), abi::Err::BadState);
}

TEST_F(PortClient, ClosedPortsAndCloseItself) {
    Endpoint p(0x10);
    kernel().deliveries.push_back(Delivery::message(port::kPortClosed, false));
    Packet out[1];
    EXPECT_EQ(port::wait(p, out, 1, 1).error(), port::kErrPortClosed);
    kernel().deliveries.push_back(Delivery::message(kStatusOk, false));
    EXPECT_TRUE(port::close(p).ok());
    EXPECT_EQ(kernel().last(abi::Sys::Call)->label(), port::kClose);
    EXPECT_EQ(kernel().closes(0x10), 1);  // and the handle with it
    EXPECT_FALSE(p.valid());
}

TEST_F(PortClient, CreateTakesThePortHandle) {
    Endpoint service(0x10);
    kernel().deliveries.push_back(Delivery::message(kStatusOk, false, 0, {}, {}, {0x55}));
    Result<Endpoint> p = port::create(service);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->get(), 0x55u);
    EXPECT_EQ(kernel().last(abi::Sys::Call)->label(), port::kCreate);
    kernel().deliveries.push_back(Delivery::message(uint32_t(abi::Err::LimitReached), false));
    EXPECT_EQ(port::create(service).error(), abi::Err::LimitReached);
}

}  // namespace
}  // namespace mk::ipc
