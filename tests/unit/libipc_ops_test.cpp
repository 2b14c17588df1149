// libipc's handles, results and operations over the fake kernel: which
// syscall each makes with which registers, what it makes of the answer, and
// that every handle is closed exactly once.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>

#include "libipc_fixture.hpp"
#include "mk/ipc.hpp"

namespace mk::ipc {
namespace {

using testing::Delivery;
using testing::Syscall;
using LibipcHandle = LibipcTest;
using LibipcOps = LibipcTest;

// --- Result ---

TEST(LibipcResult, HoldsAValueOrAnError) {
    Result<int> ok = 5;
    EXPECT_TRUE(ok.ok());
    EXPECT_EQ(*ok, 5);
    EXPECT_EQ(ok.error(), abi::Err::Ok);
    Result<int> bad = abi::Err::NoRights;
    EXPECT_FALSE(bad);
    EXPECT_EQ(bad.error(), abi::Err::NoRights);
    EXPECT_EQ(bad.value_or(9), 9);
    Status st;
    EXPECT_TRUE(st.ok());
    st = abi::Err::TimedOut;
    EXPECT_EQ(st.error(), abi::Err::TimedOut);
}

TEST(LibipcResultDeath, AskingAnErrorForItsValueTraps) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    Result<int> bad = abi::Err::BadState;
    EXPECT_DEATH((void)*bad, "");
}

// --- Handle ---

TEST_F(LibipcHandle, ClosesOnceWhenDestroyed) {
    { Handle h(0x10); }
    EXPECT_EQ(kernel().closes(0x10), 1);
    EXPECT_EQ(kernel().count(abi::Sys::HandleClose), 1u);
    { Handle empty; }
    EXPECT_EQ(kernel().count(abi::Sys::HandleClose), 1u);  // nothing to close
}

TEST_F(LibipcHandle, MovesCarryOwnership) {
    {
        Handle a(0x10);
        Handle b(std::move(a));
        EXPECT_FALSE(a.valid());
        EXPECT_EQ(b.get(), 0x10u);
        Handle c;
        c = std::move(b);
        Handle& alias = c;
        c = std::move(alias);  // self-move keeps it
        EXPECT_EQ(c.get(), 0x10u);
        EXPECT_EQ(kernel().total_closes(), 0u);
    }
    EXPECT_EQ(kernel().closes(0x10), 1);
    EXPECT_EQ(kernel().total_closes(), 1u);
}

TEST_F(LibipcHandle, AssigningOverAHandleClosesTheOldOne) {
    Handle a(0x10);
    a = Handle(0x20);
    EXPECT_EQ(kernel().closes(0x10), 1);
    EXPECT_EQ(kernel().closes(0x20), 0);
}

TEST_F(LibipcHandle, ReleaseGivesUpWithoutClosing) {
    abi::HandleValue v;
    {
        Handle h(0x10);
        v = h.release();
        EXPECT_FALSE(h);
    }
    EXPECT_EQ(v, 0x10u);
    EXPECT_EQ(kernel().total_closes(), 0u);
}

TEST_F(LibipcHandle, ExplicitCloseReportsAndDoesNotCloseAgain) {
    {
        Handle h(0x10);
        EXPECT_TRUE(h.close().ok());
        EXPECT_FALSE(h.valid());
        EXPECT_TRUE(h.close().ok());  // empty: nothing to do
    }
    EXPECT_EQ(kernel().closes(0x10), 1);
    kernel().fail_next[abi::Sys::HandleClose] = abi::Err::BadHandle;
    Handle stale(0x30);
    EXPECT_EQ(stale.close().error(), abi::Err::BadHandle);
    EXPECT_FALSE(stale.valid());  // given up even so: a second try cannot help
}

TEST_F(LibipcHandle, MintPassesRightsAndBadge) {
    Endpoint ep(0x10);
    Result<Endpoint> client = ep.mint(abi::kRightSend, 0xB1);
    ASSERT_TRUE(client.ok());
    const Syscall* s = kernel().last(abi::Sys::HandleMint);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->a[0], 0x10u);
    EXPECT_EQ(s->a[1], uint64_t(abi::kRightSend));
    EXPECT_EQ(s->a[2], 0xB1u);
    EXPECT_EQ(client->get(), 0x100u);
    kernel().fail_next[abi::Sys::HandleMint] = abi::Err::NoRights;
    EXPECT_EQ(ep.mint(abi::kRightSend, 1).error(), abi::Err::NoRights);
}

TEST_F(LibipcHandle, EndpointCreate) {
    Result<Endpoint> ep = Endpoint::create();
    ASSERT_TRUE(ep.ok());
    EXPECT_EQ(ep->get(), 0x100u);
    Endpoint owned = std::move(ep).value();
    kernel().fail_next[abi::Sys::EndpointCreate] = abi::Err::LimitReached;
    EXPECT_EQ(Endpoint::create().error(), abi::Err::LimitReached);
}

// --- operations ---

TEST_F(LibipcOps, CallSendsRegistersAndBufferAndDecodesTheReply) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::message(0, false, 0, {7, 8}, {'o', 'k'}, {0x77}));
    Result<Received> r =
        call(ep, Message(5).set_word(0, 1).set_word(3, 4).append("ping", 4), 2'000'000);
    ASSERT_TRUE(r.ok());
    const Syscall* s = kernel().last(abi::Sys::Call);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->a[0], 0x10u);
    EXPECT_EQ(s->label(), 5u);
    EXPECT_EQ(s->info().length, 4u);
    EXPECT_EQ(s->word(0), 1u);
    EXPECT_EQ(s->word(3), 4u);
    EXPECT_EQ(s->a[6], 2'000'000u);
    EXPECT_EQ(std::string(s->payload.begin(), s->payload.end()), "ping");

    EXPECT_EQ(reply_status(r->message), abi::Err::Ok);
    EXPECT_EQ(r->message.word(1), 8u);
    EXPECT_EQ(std::string(r->message.payload(), r->message.payload() + r->message.length()), "ok");
    Handle got = r->message.take_handle(0);
    EXPECT_EQ(got.get(), 0x77u);
}

TEST_F(LibipcOps, BlockingIsTheDefaultAndTryFormsDoNotWait) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::message(0, false));
    (void)call(ep, Message(1));
    EXPECT_EQ(kernel().last(abi::Sys::Call)->a[6], abi::kForever);
    kernel().fail_next[abi::Sys::Send] = abi::Err::WouldBlock;
    EXPECT_EQ(try_send(ep, Message(1)).error(), abi::Err::WouldBlock);
    EXPECT_EQ(kernel().last(abi::Sys::Send)->a[6], abi::kNoWait);
    kernel().deliveries.push_back(Delivery::error(abi::Err::WouldBlock));
    EXPECT_EQ(try_recv(ep).error(), abi::Err::WouldBlock);
    EXPECT_EQ(kernel().last(abi::Sys::Recv)->a[6], abi::kNoWait);
    EXPECT_EQ(kernel().last(abi::Sys::Recv)->a[0], 0x10u);
}

// A ping is a register-only call with kLabelPing: Ok when the answer is,
// else the answer's status or the call's error.
TEST_F(LibipcOps, PingCallsWithThePingLabelAndReportsTheAnswer) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::message(kStatusOk, false));
    EXPECT_TRUE(ping(ep, 5'000).ok());
    const Syscall* s = kernel().last(abi::Sys::Call);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->a[0], 0x10u);
    EXPECT_EQ(s->label(), kLabelPing);
    EXPECT_EQ(s->info().length, 0u);
    EXPECT_EQ(s->a[6], 5'000u);
    kernel().deliveries.push_back(Delivery::message(uint32_t(abi::Err::Unsupported), false));
    EXPECT_EQ(ping(ep).error(), abi::Err::Unsupported);  // not a server of the framework
    kernel().fail_next[abi::Sys::Call] = abi::Err::PeerDied;
    EXPECT_EQ(ping(ep).error(), abi::Err::PeerDied);
}

TEST_F(LibipcOps, MovedHandlesLeaveOnSuccessAndStayOnFailure) {
    Endpoint ep(0x10);
    {
        Message m(1);
        m.move_handle(Handle(0x50)).copy_handle(ep);
        ASSERT_TRUE(send(ep, m).ok());
        const Syscall* s = kernel().last(abi::Sys::Send);
        ASSERT_EQ(s->handles.size(), 2u);
        EXPECT_EQ(s->handles[0], 0x50u);
        EXPECT_EQ(s->flags[0], uint32_t(abi::kTransferMove));
        EXPECT_EQ(s->handles[1], 0x10u);
        EXPECT_EQ(s->flags[1], uint32_t(abi::kTransferCopy));
    }
    EXPECT_EQ(kernel().closes(0x50), 0);  // the receiver's now
    EXPECT_EQ(kernel().closes(0x10), 0);  // copied: still ours, still open
    {
        Message m(1);
        m.move_handle(Handle(0x60));
        kernel().fail_next[abi::Sys::Send] = abi::Err::NoRights;
        EXPECT_EQ(send(ep, m).error(), abi::Err::NoRights);
        EXPECT_EQ(m.handle_value(0), 0x60u);
    }
    EXPECT_EQ(kernel().closes(0x60), 1);  // still ours: closed with the message
}

TEST_F(LibipcOps, NothingMalformedReachesTheKernel) {
    Endpoint ep(0x10);
    uint8_t big[abi::kMaxPayload + 1] = {};
    EXPECT_EQ(call(ep, Message(1).append(big, sizeof big)).error(), abi::Err::TooLarge);
    EXPECT_EQ(send(ep, Message(abi::kLabelChildDied)).error(), abi::Err::InvalidArgument);
    EXPECT_EQ(reply(Message(1).set_word(9, 0)).error(), abi::Err::InvalidArgument);
    EXPECT_TRUE(kernel().calls.empty());
}

TEST_F(LibipcOps, AMalformedDeliveryIsAnError) {
    Endpoint ep(0x10);
    Delivery d = Delivery::message(1, true);
    d.info |= uint64_t{1} << 60;
    kernel().deliveries.push_back(d);
    EXPECT_EQ(recv(ep).error(), abi::Err::InvalidArgument);
    d = Delivery::message(1, true);
    d.info |= uint64_t{1000} << 32;  // a length of 1000 bytes
    kernel().deliveries.push_back(d);
    EXPECT_EQ(recv(ep).error(), abi::Err::TooLarge);
}

TEST_F(LibipcOps, RecvReportsBadgeAndCall) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::message(3, true, 0xCAFE, {1, 2, 3, 4}, {9}));
    Result<Received> r = recv(ep);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->badge, 0xCAFEu);
    EXPECT_TRUE(r->call);
    EXPECT_EQ(r->message.label(), 3u);
    EXPECT_EQ(r->message.word(3), 4u);
    EXPECT_EQ(*r->message.get<uint8_t>(0), 9);
}

// The _into forms land each message in one Received: what it held before
// (handles included) is closed first, and a failure leaves it empty.
TEST_F(LibipcOps, IntoFormsReplaceWhatTheReceivedHeld) {
    Endpoint ep(0x10);
    Received r;
    kernel().deliveries.push_back(Delivery::message(3, true, 0xCAFE, {1, 2}, {'a', 'b'}, {0x70}));
    ASSERT_TRUE(recv_into(ep, r).ok());
    EXPECT_EQ(r.badge, 0xCAFEu);
    EXPECT_TRUE(r.call);
    EXPECT_EQ(r.message.label(), 3u);
    EXPECT_EQ(r.message.word(1), 2u);
    EXPECT_EQ(r.message.length(), 2u);
    EXPECT_EQ(r.message.handle_value(0), 0x70u);

    // A register-only message replaces it whole: no payload or handle of
    // the old one shows through, and the old handle is closed once.
    kernel().deliveries.push_back(Delivery::message(4, false, 7, {9}));
    ASSERT_TRUE(reply_recv_into(ep, Message(0).set_word(0, 5), r).ok());
    EXPECT_EQ(kernel().closes(0x70), 1);
    EXPECT_EQ(kernel().last(abi::Sys::ReplyRecv)->word(0), 5u);
    EXPECT_EQ(r.badge, 7u);
    EXPECT_FALSE(r.call);
    EXPECT_EQ(r.message.label(), 4u);
    EXPECT_EQ(r.message.word(0), 9u);
    EXPECT_EQ(r.message.word(1), 0u);
    EXPECT_EQ(r.message.length(), 0u);
    EXPECT_EQ(r.message.handle_count(), 0u);

    kernel().deliveries.push_back(Delivery::message(0, false, 0, {8}, {'z'}, {0x71}));
    ASSERT_TRUE(call_into(ep, Message(1), r).ok());
    EXPECT_EQ(r.message.word(0), 8u);
    EXPECT_EQ(r.message.length(), 1u);
    EXPECT_EQ(*r.message.get<uint8_t>(0), 'z');

    // A failed call, a malformed delivery: empty, the handle closed.
    kernel().fail_next[abi::Sys::Call] = abi::Err::PeerDied;
    EXPECT_EQ(call_into(ep, Message(1), r).error(), abi::Err::PeerDied);
    EXPECT_EQ(kernel().closes(0x71), 1);
    EXPECT_EQ(r.message.label(), 0u);
    EXPECT_EQ(r.message.word(0), 0u);
    EXPECT_EQ(r.message.length(), 0u);
    EXPECT_EQ(r.message.handle_count(), 0u);
    EXPECT_EQ(r.badge, 0u);
    Delivery d = Delivery::message(1, true, 3, {4});
    d.info |= uint64_t{1} << 60;
    kernel().deliveries.push_back(d);
    EXPECT_EQ(recv_into(ep, r).error(), abi::Err::InvalidArgument);
    EXPECT_EQ(r.message.label(), 0u);
    EXPECT_EQ(r.message.word(0), 0u);
    EXPECT_FALSE(r.call);
    EXPECT_EQ(kernel().total_closes(), 2u);
}

// A message refused before the syscall leaves the Received empty too, and
// nothing reaches the kernel.
TEST_F(LibipcOps, IntoFormsRefuseMalformedMessagesUntouched) {
    Endpoint ep(0x10);
    Received r;
    kernel().deliveries.push_back(Delivery::message(3, true, 1, {1}));
    ASSERT_TRUE(recv_into(ep, r).ok());
    size_t before = kernel().calls.size();
    EXPECT_EQ(call_into(ep, Message(abi::kLabelChildDied), r).error(), abi::Err::InvalidArgument);
    EXPECT_EQ(r.message.label(), 0u);
    EXPECT_EQ(reply_recv_into(ep, Message(1).set_word(9, 0), r).error(), abi::Err::InvalidArgument);
    EXPECT_EQ(kernel().calls.size(), before);
}

TEST_F(LibipcOps, ReplyAndReplyRecvAnswerThePendingCall) {
    Endpoint ep(0x10);
    ASSERT_TRUE(reply(Message(0).set_word(0, 11)).ok());
    const Syscall* s = kernel().last(abi::Sys::Reply);
    EXPECT_EQ(s->a[0], uint64_t(abi::kNoHandle));
    EXPECT_EQ(s->word(0), 11u);

    kernel().deliveries.push_back(Delivery::message(4, false, 2));
    Result<Received> r = reply_recv(ep, Message(0).append("done", 4));
    ASSERT_TRUE(r.ok());
    s = kernel().last(abi::Sys::ReplyRecv);
    EXPECT_EQ(s->a[0], 0x10u);
    EXPECT_EQ(std::string(s->payload.begin(), s->payload.end()), "done");
    EXPECT_EQ(r->message.label(), 4u);
    EXPECT_EQ(r->badge, 2u);
}

TEST_F(LibipcOps, ASavedReplyIsAnsweredOnce) {
    Result<Reply> saved = reply_save();
    ASSERT_TRUE(saved.ok());
    Reply rep = std::move(saved).value();
    EXPECT_TRUE(rep.pending());
    abi::HandleValue h = rep.handle();
    ASSERT_TRUE(rep.send(Message(0).set_word(0, 5)).ok());
    EXPECT_FALSE(rep.pending());
    EXPECT_EQ(rep.send(Message(0)).error(), abi::Err::BadState);  // no second answer
    EXPECT_EQ(kernel().count(abi::Sys::Reply), 1u);
    EXPECT_EQ(kernel().last(abi::Sys::Reply)->a[0], uint64_t(h));
    EXPECT_EQ(kernel().closes(h), 0);  // consumed by the reply, not closed
}

TEST_F(LibipcOps, ADroppedReplyClosesItsHandleOnce) {
    abi::HandleValue h;
    {
        Reply rep = *reply_save();
        h = rep.handle();
        Reply moved = std::move(rep);
        EXPECT_FALSE(rep.pending());
    }
    EXPECT_EQ(kernel().closes(h), 1);  // the kernel wakes the caller with PeerDied
    EXPECT_EQ(kernel().count(abi::Sys::Reply), 0u);
}

TEST_F(LibipcOps, ARefusedReplyStillEndsTheCall) {
    Reply rep = *reply_save();
    abi::HandleValue h = rep.handle();
    kernel().fail_next[abi::Sys::Reply] = abi::Err::PeerDied;
    EXPECT_EQ(rep.send(Message(0)).error(), abi::Err::PeerDied);
    EXPECT_FALSE(rep.pending());
    EXPECT_EQ(kernel().closes(h), 1);
}

TEST_F(LibipcOps, AnUnsendableReplyStaysPending) {
    Reply rep = *reply_save();
    EXPECT_EQ(rep.send(Message(abi::kNoticeLabelBase)).error(), abi::Err::InvalidArgument);
    EXPECT_TRUE(rep.pending());
    EXPECT_EQ(kernel().count(abi::Sys::Reply), 0u);
    ASSERT_TRUE(rep.fail(abi::Err::TooLarge).ok());
    EXPECT_EQ(kernel().last(abi::Sys::Reply)->label(), uint32_t(abi::Err::TooLarge));
}

// --- IPC buffers ---

TEST(LibipcThreads, WithoutABufferOnlyRegisterMessagesGo) {
    testing::fake_user_kernel().reset();
    ASSERT_EQ(ipc_buffer(), nullptr);
    Endpoint ep(0x10);
    EXPECT_EQ(send(ep, Message(1).append("x", 1)).error(), abi::Err::BadState);
    EXPECT_EQ(testing::fake_user_kernel().count(abi::Sys::Send), 0u);
    EXPECT_TRUE(send(ep, Message(1).set_word(0, 1)).ok());
    (void)ep.release();
    testing::fake_user_kernel().reset();
}

TEST(LibipcThreads, RegistrationIsByStackRange) {
    auto& k = testing::fake_user_kernel();
    k.reset();
    abi::IpcBuffer a{};
    abi::IpcBuffer b{};
    char probe = 0;
    auto sp = reinterpret_cast<uintptr_t>(&probe);
    // A range that does not hold the caller's stack is refused.
    EXPECT_EQ(register_thread(&a, sp + (1 << 20), sp + (2 << 20)).error(),
              abi::Err::InvalidArgument);
    EXPECT_EQ(register_thread(nullptr, 0, UINTPTR_MAX).error(), abi::Err::InvalidArgument);
    EXPECT_EQ(register_thread(&a, 10, 5).error(), abi::Err::InvalidArgument);
    k.fail_next[abi::Sys::IpcBufferSet] = abi::Err::BadAddress;
    EXPECT_EQ(register_thread(&a, 0, UINTPTR_MAX).error(), abi::Err::BadAddress);
    EXPECT_EQ(ipc_buffer(), nullptr);

    ASSERT_TRUE(register_thread(&a, 0, UINTPTR_MAX).ok());
    EXPECT_EQ(ipc_buffer(), &a);
    EXPECT_EQ(k.buffer, &a);
    ASSERT_TRUE(register_thread(&b, 0, UINTPTR_MAX).ok());  // a new buffer, same thread
    EXPECT_EQ(ipc_buffer(), &b);
    unregister_thread();
    EXPECT_EQ(ipc_buffer(), nullptr);
    k.reset();
}

}  // namespace
}  // namespace mk::ipc
