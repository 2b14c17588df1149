// Host tests of the syscall fast path (microkernel/syscall/fastpath.cpp) and
// of blocking "at the frame" (Thread::at_frame), which it shares with the
// general path: round trips on it, every condition it misses on, the general
// path completing what the fast path blocked (and the other way round), and
// threads blocked at their frame being killed.
//
// Two user processes on the host fake: A with a server thread S, B with a
// client thread C, and one endpoint with a handle in each table (B's with a
// badge); each thread has an IPC buffer page. The test plays the entry stub
// and the threads, acting as whichever thread is current:
// - A syscall uses the thread's frame (the fake Cpu::Context::frame, which
//   Cpu::syscall_frame() returns). For Call and ReplyRecv the stub calls
//   mk_fastpath() first; on a hit the test releases the scheduler lock
//   through the word it returned, as the stub does once it is on the
//   partner's frame, and the partner is back in user mode. On a miss, and
//   for the other syscalls, handle_syscall() runs on the same frame.
// - A thread that blocks at its frame gives its stack up: the fake's
//   switch_context_leaving_stack() throws FakeCpu::NoReturn (and counts
//   FakeCpu::stacks_left). When it runs again the test plays its
//   resumption: the switch to it hands it the scheduler lock (the fake's
//   switch has already returned and released it, so the test takes it) and
//   it calls mk_resume_at_frame() with its frame.
// - A thread that blocks keeping its stack (an IPC syscall with handles in
//   flight) cannot be suspended on the host. Its switch throws NoReturn too
//   (FakeCpu::no_return_from) and its kernel stack unwinds, so the tail of
//   its syscall never runs: a test reads the outcome of its operation with
//   Endpoint::finish_*() (what the endpoint tests do) and TearDown ends it.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <vector>

#include "cpu.hpp"
#include "endpoint.hpp"
#include "kernel.hpp"
#include "memory.hpp"
#include "mk/abi.hpp"
#include "object/badge_tracker.hpp"
#include "object/handle_table.hpp"
#include "object/reply.hpp"
#include "percpu.hpp"
#include "process.hpp"
#include "sched_fixture.hpp"
#include "syscall/entry.hpp"
#include "syscall/fastpath.hpp"
#include "thread.hpp"
#include "trap_frame.hpp"

namespace mk {
namespace {

using abi::Err;
using abi::Sys;
using Words = std::array<uint64_t, 4>;

constexpr uint64_t kBuffer = 0x10000000;  // each process's IPC buffer page
constexpr uint64_t kBadge = 0xB0B0CAFE;   // the badge of C's handle
constexpr uint32_t kClientRights = abi::kRightSend | abi::kRightGrant | abi::kRightDuplicate;
constexpr uint64_t kCallBit = uint64_t{1} << 47;  // MsgInfo::call, in rsi
constexpr uint64_t kMs = 1000000;                 // a tick, in nanoseconds

constexpr uint64_t info(uint32_t label, uint32_t length = 0, uint32_t handles = 0) {
    return abi::MsgInfo{label, length, handles, false}.encode();
}

// Whether `f` holds what an IPC syscall returns: status, r0, r1 and the words.
::testing::AssertionResult frame_holds(const TrapFrame& f, Err err, uint64_t r0, uint64_t r1,
                                       const Words& w) {
    const uint64_t got[] = {f.rax, f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9};
    const uint64_t want[] = {uint64_t(err), r0, r1, w[0], w[1], w[2], w[3]};
    static const char* const names[] = {"rax", "rdi", "rsi", "rdx", "r10", "r8", "r9"};
    bool ok = true;
    ::testing::Message m;
    for (size_t i = 0; i < std::size(got); ++i) {
        if (got[i] != want[i]) {
            ok = false;
            m << names[i] << " = " << std::hex << got[i] << ", expected " << want[i] << std::dec
              << "; ";
        }
    }
    if (ok) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << m;
}

// One thread's part in IPC, for "a miss changes nothing".
struct ThreadView {
    const char* name;
    ThreadState state;
    const WaitQueue* waiting_on;
    bool queued;
    bool at_frame;
    bool exit_requested;
    WakeReason wake_reason;
    IpcState::Op op;
    Error result;
    IpcState::UserOp user_op;
    uint64_t reply_caller;
    uint64_t reply_call;
    uint64_t superseded_caller;
    uint64_t call_seq;
    const KObject* endpoint_ref;
    size_t callers;
    std::array<uint64_t, sizeof(TrapFrame) / sizeof(uint64_t)> frame;
    bool operator==(const ThreadView&) const = default;
};

void PrintTo(const ThreadView& v, std::ostream* os) {
    *os << v.name << ": state " << thread_state_name(v.state) << " waiting_on " << v.waiting_on
        << " at_frame " << v.at_frame << " exit_requested " << v.exit_requested << " op "
        << int(v.op) << " result " << error_name(v.result) << " user_op " << int(v.user_op)
        << " reply " << v.reply_caller << "/" << v.reply_call << " superseded "
        << v.superseded_caller << " call_seq " << v.call_seq << " endpoint_ref " << v.endpoint_ref
        << " callers " << v.callers << " rax "
        << v.frame[offsetof(TrapFrame, rax) / sizeof(uint64_t)];
}

ThreadView view(Thread& t) {
    ThreadView v{};
    v.name = t.name();
    v.state = t.state;
    v.waiting_on = t.waiting_on;
    v.queued = t.queue_hook.is_linked();
    v.at_frame = t.at_frame;
    v.exit_requested = t.exit_requested;
    v.wake_reason = t.wake_reason;
    v.op = t.ipc->op;
    v.result = t.ipc->result;
    v.user_op = t.ipc->user_op;
    v.reply_caller = t.ipc->reply.caller;
    v.reply_call = t.ipc->reply.call;
    v.superseded_caller = t.ipc->superseded.caller;
    v.call_seq = t.ipc->call_seq;
    v.endpoint_ref = t.ipc->endpoint_ref.get();
    v.callers = t.ipc->callers.size();
    std::memcpy(v.frame.data(), &Cpu::syscall_frame(t.context), sizeof(TrapFrame));
    return v;
}

// Everything a miss must leave as it was.
struct World {
    const Thread* current;
    std::vector<ThreadView> threads;
    size_t senders;
    size_t receivers;
    size_t ready;
    uint32_t endpoint_refs;
    uint32_t handles_a;
    uint32_t handles_b;
    IpcCounters ipc;
    SchedCounters sched;
    size_t switches;
    size_t stacks_left;
};

// How a syscall ended for the thread that made it.
enum class Path {
    FastHit,       // the fast path took it: the partner runs
    Returned,      // the general path returned (results in the frame)
    GaveStackUp,   // it blocked at its frame: it resumes through mk_resume_at_frame
    SwitchedAway,  // it switched away keeping its stack (a block with handles in flight, or
                   // its exit): the host unwound that stack
};

const char* path_name(Path p) {
    switch (p) {
        case Path::FastHit:
            return "FastHit";
        case Path::Returned:
            return "Returned";
        case Path::GaveStackUp:
            return "GaveStackUp";
        case Path::SwitchedAway:
            return "SwitchedAway";
    }
    return "?";
}

void PrintTo(Path p, std::ostream* os) {
    *os << path_name(p);
}

class FastPathTest : public testing::SchedFixture {
  protected:
    void SetUp() override {
        SchedFixture::SetUp();
        ipc_set_fast_path(true);
        frames_before_ = frame_allocator().free_count();
        spaces_before_ = FakeCpu::user_spaces();
        reaper_ = spawn("reaper");
        sched().set_reaper(*reaper_);
        a_ = make_process("A");
        b_ = make_process("B");
        s_ = make_thread(a_, "S");
        c_ = make_thread(b_, "C");
        ep_ = Endpoint::create().value();
        sh_ = a_->handles().insert(Ref<KObject>::retain(ep_), abi::kRightsAll).value();
        ch_ = b_->handles().insert(Ref<KObject>::retain(ep_), kClientRights, kBadge).value();
        base_refs_ = ep_->refs();  // the creator's and the two handles
        ASSERT_EQ(base_refs_, 3u);
    }

    void TearDown() override {
        FakeCpu::no_return_from = nullptr;
        std::vector<Thread*> live = users_;
        for (Thread* t : live) end_thread(t);
        reap();
        run_as(boot_);
        for (Process* p : processes_) {
            EXPECT_TRUE(p->dead()) << p->name();
            p->release();
        }
        if (!ep_destroyed_) Endpoint::destroy(ep_);
        SchedFixture::TearDown();
        ipc_set_fast_path(true);
        EXPECT_EQ(FakeCpu::user_spaces(), spaces_before_);
        EXPECT_EQ(frame_allocator().free_count(), frames_before_);
    }

    Process* make_process(const char* name) {
        Process* p = Process::create(name).value();
        EXPECT_EQ(p->map_anonymous(kBuffer, 1, abi::kProtRead | abi::kProtWrite), Error::None);
        processes_.push_back(p);
        return p;
    }

    // A started user thread of `p` with an IPC buffer.
    Thread* make_thread(Process* p, const char* name) {
        Thread* t = p->create_thread(name, abi::kUserBase, 0, 0).value();
        EXPECT_EQ(p->set_ipc_buffer(*t, kBuffer), Error::None);
        EXPECT_EQ(sched().start(*t), Error::None);
        users_.push_back(t);
        return t;
    }

    static TrapFrame& frame(Thread* t) { return Cpu::syscall_frame(t->context); }
    static abi::IpcBuffer& buffer(Thread* t) {
        return *reinterpret_cast<abi::IpcBuffer*>(t->ipc->buffer);
    }

    // Acting as whichever thread is current, yield until `t` runs.
    void run_as(Thread* t) {
        for (int i = 0; sched().current() != t; ++i) {
            ASSERT_LT(i, 100) << t->name() << " never runs";
            yield();
        }
    }

    // The registers of an IPC syscall, as the entry stub saves them.
    static void set_regs(Thread* t, Sys n, uint64_t handle, uint64_t msg_info = 0,
                         const Words& w = {}, uint64_t timeout = abi::kForever) {
        TrapFrame& f = frame(t);
        f = TrapFrame{};
        f.vector = kSyscallVector;
        f.rax = uint64_t(n);
        f.rdi = handle;
        f.rsi = msg_info;
        f.rdx = w[0];
        f.r10 = w[1];
        f.r8 = w[2];
        f.r9 = w[3];
        f.r12 = timeout;
    }

    // The stub's first step for Call and ReplyRecv, with t's frame, interrupts
    // off. On a hit it releases the scheduler lock, as the stub does once it is
    // on the partner's frame, and the partner is back in user mode.
    FastPathExit fast(Thread* t) {
        EXPECT_EQ(sched().current(), t);
        FakeCpu::irq_enabled = false;
        // A Recv resumes the next thread with its own frame's registers
        // (RESUME_EXIT); the others pass the message words through.
        // So does a Call the stub hands to mk_fastpath_queue_call (no
        // receiver: it queues).
        bool passes_words =
            frame(t).rax != uint64_t(Sys::Recv) &&
            !(frame(t).rax == uint64_t(Sys::Call) && mk_fastpath_stub_queues(&frame(t)));
        FastPathExit exit = mk_fastpath(&frame(t));
        EXPECT_EQ(this_cpu().held_locks.count(), 0u);  // raw locks, no bookkeeping
        if (exit.frame != nullptr) {
            EXPECT_TRUE(sched().lock().is_locked());  // until the stub is off t's stack
            // The stub passes the message words through in registers: the
            // partner returns to user mode with t's rdx, r10, r8 and r9.
            if (passes_words) {
                exit.frame->rdx = frame(t).rdx;
                exit.frame->r10 = frame(t).r10;
                exit.frame->r8 = frame(t).r8;
                exit.frame->r9 = frame(t).r9;
            }
            sched().lock().word()->store(0, std::memory_order_release);
            FakeCpu::irq_enabled = true;  // sysret
        } else {
            EXPECT_FALSE(sched().lock().is_locked());
        }
        return exit;
    }

    // The general path (what the stub runs on a miss): handle_syscall as t.
    Path general(Thread* t) {
        EXPECT_EQ(sched().current(), t);
        size_t left = FakeCpu::stacks_left;
        // A switch that keeps t's stack cannot be resumed on the host: unwind it.
        FakeCpu::no_return_from = &t->context;
        Path p = Path::Returned;
        try {
            handle_syscall(frame(t));
        } catch (const FakeCpu::NoReturn&) {
            p = FakeCpu::stacks_left == left + 1 ? Path::GaveStackUp : Path::SwitchedAway;
        }
        FakeCpu::no_return_from = nullptr;
        EXPECT_EQ(this_cpu().held_locks.count(), 0u);
        EXPECT_FALSE(sched().lock().is_locked());
        return p;
    }

    // A whole syscall through the stub.
    Path stub(Thread* t) {
        uint64_t n = frame(t).rax;
        bool fast_path = n <= uint64_t(Sys::ReplyRecv) || n == uint64_t(Sys::Recv) ||
                         n == uint64_t(Sys::Reply) || n == uint64_t(Sys::ReplySave);
        if (fast_path && fast(t).frame != nullptr) return Path::FastHit;
        return general(t);
    }

    // t runs again after it blocked at its frame: the switch to it handed it
    // the scheduler lock, and it finishes its syscall in mk_resume_at_frame.
    void resume_raw(Thread* t) {
        EXPECT_EQ(sched().current(), t);
        EXPECT_TRUE(t->at_frame) << t->name();
        (void)sched().lock().lock();
        mk_resume_at_frame(&frame(t));
    }
    TrapFrame& resume(Thread* t) {
        run_as(t);
        resume_raw(t);
        EXPECT_FALSE(t->at_frame);
        EXPECT_EQ(t->ipc->user_op, IpcState::UserOp::None);
        EXPECT_FALSE(t->ipc->endpoint_ref);
        return frame(t);
    }
    // The same for a thread that exits on its way back (killed).
    void resume_and_exit(Thread* t) {
        run_as(t);
        FakeCpu::no_return_from = &t->context;
        EXPECT_THROW(resume_raw(t), FakeCpu::NoReturn);
        FakeCpu::no_return_from = nullptr;
        EXPECT_EQ(t->state, ThreadState::Dead);
    }

    // Ends a user thread as on the machine: woken (killed) if it is blocked,
    // it runs, finishes its syscall if it blocked at its frame, and exits on
    // its way back to user mode.
    void end_thread(Thread* t) {
        if (t->state == ThreadState::Dead) return;
        if (t->state == ThreadState::Blocked) sched().kill(*t);
        run_as(t);
        FakeCpu::no_return_from = &t->context;
        try {
            if (t->at_frame) resume_raw(t);
            sched().exit_current();
        } catch (const FakeCpu::NoReturn&) {
        }
        FakeCpu::no_return_from = nullptr;
        EXPECT_EQ(t->state, ThreadState::Dead) << t->name();
    }

    // The reaper destroys the user threads that ended; the last thread of a
    // process ends the process (its handles are closed).
    void reap() {
        size_t dead = size_t(std::count_if(
            users_.begin(), users_.end(), [](Thread* t) { return t->state == ThreadState::Dead; }));
        if (dead == 0) return;
        run_as(reaper_);
        for (size_t i = 0; i < dead; ++i) {
            Thread* z = sched().next_zombie();
            auto it = std::find(users_.begin(), users_.end(), z);
            ASSERT_NE(it, users_.end());
            users_.erase(it);
            Thread::destroy(z);
        }
    }

    World world() {
        World w{};
        w.current = sched().current();
        for (Thread* t : users_) w.threads.push_back(view(*t));
        for (Thread* t : all_threads()) w.threads.push_back(view(*t));
        w.senders = ep_->waiting_senders();
        w.receivers = ep_->waiting_receivers();
        w.ready = sched().ready_count();
        w.endpoint_refs = ep_->refs();
        w.handles_a = a_->handles().count();
        w.handles_b = b_->handles().count();
        w.ipc = ipc_counters();
        w.sched = sched().counters();
        w.switches = FakeCpu::switches.size();
        w.stacks_left = FakeCpu::stacks_left;
        return w;
    }

    static void expect_same(const World& a, const World& b) {
        EXPECT_EQ(a.current, b.current);
        EXPECT_EQ(a.threads, b.threads);
        EXPECT_EQ(a.senders, b.senders);
        EXPECT_EQ(a.receivers, b.receivers);
        EXPECT_EQ(a.ready, b.ready);
        EXPECT_EQ(a.endpoint_refs, b.endpoint_refs);
        EXPECT_EQ(a.handles_a, b.handles_a);
        EXPECT_EQ(a.handles_b, b.handles_b);
        EXPECT_EQ(a.ipc.syscall_fastpath_hits, b.ipc.syscall_fastpath_hits);
        EXPECT_EQ(a.ipc.syscall_fastpath_misses, b.ipc.syscall_fastpath_misses);
        EXPECT_EQ(std::memcmp(&a.ipc, &b.ipc, sizeof a.ipc), 0) << "IPC counters";
        EXPECT_EQ(std::memcmp(&a.sched, &b.sched, sizeof a.sched), 0) << "scheduler counters";
        EXPECT_EQ(a.switches, b.switches);
        EXPECT_EQ(a.stacks_left, b.stacks_left);
    }

    // mk_fastpath with t's frame misses and changes nothing but the miss
    // counter; the stub then takes the general path.
    void expect_miss(Thread* t) {
        World before = world();
        FastPathExit exit = fast(t);
        EXPECT_EQ(exit.frame, nullptr);
        World after = world();
        ++before.ipc.syscall_fastpath_misses;
        expect_same(before, after);
    }

    // S waits in Recv (the general path) on the endpoint, at its frame.
    void server_waits(uint64_t timeout = abi::kForever) {
        run_as(s_);
        set_regs(s_, Sys::Recv, sh_, 0, {}, timeout);
        ASSERT_EQ(general(s_), Path::GaveStackUp);
        ASSERT_EQ(s_->state, ThreadState::Blocked);
        ASSERT_TRUE(s_->at_frame);
        ASSERT_EQ(ep_->waiting_receivers(), 1u);
    }

    // C calls S on the fast path: S runs with the call, C waits at its frame.
    void fast_call(uint32_t label, const Words& w, Thread* client = nullptr) {
        if (client == nullptr) client = c_;
        run_as(client);
        set_regs(client, Sys::Call, ch_, info(label), w);
        ASSERT_EQ(fast(client).frame, &frame(s_));
        ASSERT_TRUE(frame_holds(frame(s_), Err::Ok, kBadge, info(label) | kCallBit, w));
    }

    // S holds C's pending call (both fast-path steps of a call).
    void pending_call() {
        server_waits();
        fast_call(1, {1, 2, 3, 4});
    }

    // A round trip on the fast path: S ends blocked at its frame in ReplyRecv.
    void fast_round_trip() {
        pending_call();
        set_regs(s_, Sys::ReplyRecv, sh_, info(2), {5, 6, 7, 8});
        ASSERT_EQ(fast(s_).frame, &frame(c_));
        ASSERT_EQ(s_->state, ThreadState::Blocked);
        ASSERT_TRUE(s_->at_frame);
        ASSERT_EQ(s_->ipc->endpoint_ref.get(), ep_);
    }

    // `server` answers its pending call with Sys::Reply (the general path).
    // The reply donates: the caller runs next, and the server, Ready behind
    // it, would return from its syscall on the stack the host unwound.
    void reply_general(Thread* server, uint32_t label, const Words& w, uint32_t length = 0,
                       HandleValue saved = abi::kNoHandle) {
        run_as(server);
        set_regs(server, Sys::Reply, saved, info(label, length), w);
        ASSERT_EQ(general(server), Path::SwitchedAway);
        EXPECT_EQ(server->state, ThreadState::Ready);
        EXPECT_NE(sched().current(), server);
    }

    // A thread that switched away keeping its stack in a syscall cannot go
    // on on the host: play the end of its syscall.
    void finish_kept_syscall(Thread* t) {
        LockGuard guard(sched().lock());
        t->at_frame = false;
        t->ipc->endpoint_ref.reset();
        t->ipc->user_op = IpcState::UserOp::None;
    }

    // S saves its pending call (ReplySave, the general path): the handle.
    HandleValue save() {
        EXPECT_EQ(sched().current(), s_);
        set_regs(s_, Sys::ReplySave, abi::kNoHandle);
        EXPECT_EQ(general(s_), Path::Returned);
        EXPECT_EQ(frame(s_).rax, uint64_t(Err::Ok));
        return HandleValue(frame(s_).rdi);
    }

    // S holds C's pending call (label `label`) and the Reply object its
    // fast Reply to an earlier call kept (IpcState::spare_reply): what a
    // server's second deferred answer finds.
    Reply* pending_call_with_spare(uint32_t label) {
        pending_call();
        HandleValue first = save();  // the general path: no spare yet
        set_regs(s_, Sys::Reply, first, info(label), {1, 2, 3, 4});
        EXPECT_EQ(stub(s_), Path::FastHit);
        sched().yield_now();  // C lets S run: its Reply returns
        EXPECT_EQ(resume(s_).rax, uint64_t(Err::Ok));
        Reply* spare = s_->ipc->spare_reply;
        EXPECT_NE(spare, nullptr);
        set_regs(s_, Sys::Recv, sh_);
        EXPECT_EQ(general(s_), Path::GaveStackUp);
        fast_call(label + 1, {5, 6, 7, 8});
        return spare;
    }

    // S holds C's call; C2 (another process) calls and queues; S's
    // ReplyRecv answers C (label, w), which waits Ready at the front of the
    // hand-off queue, and takes C2's call at once. C2 into *c2_out.
    void answer_in_passing(uint32_t label, const Words& w, Thread** c2_out = nullptr) {
        Process* d = make_process("D");
        Thread* c2 = make_thread(d, "C2");
        if (c2_out != nullptr) *c2_out = c2;
        HandleValue dh = insert(d, ep_, abi::kRightSend);
        ASSERT_NO_FATAL_FAILURE(pending_call());
        run_as(c2);
        set_regs(c2, Sys::Call, dh, info(label + 100), {1, 1, 1, 1});
        ASSERT_EQ(stub(c2), Path::GaveStackUp);  // S is busy: queued
        run_as(s_);
        set_regs(s_, Sys::ReplyRecv, sh_, info(label), w);
        ASSERT_EQ(fast(s_).frame, &frame(s_));  // C answered, C2's call taken
        ASSERT_EQ(c_->state, ThreadState::Ready);
        ASSERT_TRUE(c_->lent_quantum);
    }

    // A new endpoint, as EndpointCreate makes it: `p`'s handle with every
    // right holds the endpoint's ReceiveTracker.
    HandleValue created_endpoint(Process* p, Endpoint** out) {
        Endpoint* ep = Endpoint::create().value();
        KObject* receivers = ReceiveTracker::make(ep).value();
        *out = ep;
        return p->handles()
            .insert(HandleEntry{Ref<KObject>::adopt(ep), abi::kRightsAll, 0,
                                Ref<KObject>::adopt(receivers)})
            .value();
    }

    void destroy_endpoint() {
        ep_destroyed_ = true;
        Endpoint::destroy(ep_);
    }

    HandleValue insert(Process* p, KObject* object, uint32_t rights) {
        return p->handles().insert(Ref<KObject>::retain(object), rights).value();
    }
    HandleValue stale_handle(Process* p) {
        HandleValue h = insert(p, ep_, abi::kRightsAll);
        EXPECT_EQ(p->handles().remove(h), Error::None);
        return h;
    }

    Thread* reaper_ = nullptr;
    Process* a_ = nullptr;
    Process* b_ = nullptr;
    Thread* s_ = nullptr;
    Thread* c_ = nullptr;
    Endpoint* ep_ = nullptr;
    bool ep_destroyed_ = false;
    HandleValue sh_ = 0;  // A's handle: every right, no badge
    HandleValue ch_ = 0;  // B's handle: Send, Grant, Duplicate, kBadge
    uint32_t base_refs_ = 0;
    std::vector<Process*> processes_;
    std::vector<Thread*> users_;  // user threads not reaped yet
    size_t frames_before_ = 0;
    size_t spaces_before_ = 0;
};

// --- Round trips ---

// Call and ReplyRecv both hit: the message registers land in the partner's
// frame, the caller blocks at its frame, the partner runs; and again.
TEST_F(FastPathTest, RoundTripsOnTheFastPath) {
    server_waits();
    EXPECT_EQ(s_->ipc->op, IpcState::Op::Recv);
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);  // S's receive holds one
    run_as(c_);
    uint64_t checksum = 0;
    uint64_t expected = 0;
    for (uint64_t i = 1; i <= 5; ++i) {
        SCOPED_TRACE(i);
        const Words call = {i, i << 20, ~i, 0x1111111111111111 * i};
        const uint32_t label = uint32_t(100 + i);
        const IpcCounters ipc0 = ipc_counters();
        const SchedCounters sched0 = sched().counters();
        const size_t left = FakeCpu::stacks_left;

        set_regs(c_, Sys::Call, ch_, info(label), call);
        ASSERT_EQ(fast(c_).frame, &frame(s_));
        // S runs, with the call in its registers and the reply token...
        EXPECT_EQ(sched().current(), s_);
        EXPECT_EQ(s_->state, ThreadState::Running);
        EXPECT_FALSE(s_->at_frame);
        EXPECT_EQ(s_->wake_reason, WakeReason::Woken);
        EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, kBadge, label | kCallBit, call));
        EXPECT_EQ(s_->ipc->reply.caller, c_->id());
        EXPECT_EQ(s_->ipc->reply.call, c_->ipc->call_seq);
        EXPECT_EQ(s_->ipc->user_op, IpcState::UserOp::None);
        EXPECT_FALSE(s_->ipc->endpoint_ref);
        EXPECT_EQ(ep_->waiting_receivers(), 0u);
        EXPECT_EQ(ep_->refs(), base_refs_);  // S's receive is over
        // ...and C waits for the reply at its frame.
        EXPECT_EQ(c_->state, ThreadState::Blocked);
        EXPECT_TRUE(c_->at_frame);
        EXPECT_EQ(c_->waiting_on, &s_->ipc->callers);
        EXPECT_EQ(c_->ipc->op, IpcState::Op::ReplyWait);
        EXPECT_EQ(c_->ipc->user_op, IpcState::UserOp::Call);
        EXPECT_FALSE(c_->ipc->endpoint_ref);
        ASSERT_FALSE(FakeCpu::switches.empty());
        EXPECT_EQ(FakeCpu::switches.back().from, &c_->context);
        EXPECT_EQ(FakeCpu::switches.back().to, &s_->context);
        EXPECT_EQ(ipc_counters().syscall_fastpath_hits, ipc0.syscall_fastpath_hits + 1);

        // S answers and waits for the next call.
        const Words reply = {call[0] * 3, call[1] + 7, call[2] ^ 0x55, call[3] - 1};
        set_regs(s_, Sys::ReplyRecv, sh_, info(label + 1000), reply);
        ASSERT_EQ(fast(s_).frame, &frame(c_));
        EXPECT_EQ(sched().current(), c_);
        EXPECT_EQ(c_->state, ThreadState::Running);
        EXPECT_FALSE(c_->at_frame);
        EXPECT_EQ(c_->ipc->op, IpcState::Op::None);
        EXPECT_EQ(c_->ipc->user_op, IpcState::UserOp::None);
        EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, label + 1000, reply));
        EXPECT_EQ(s_->state, ThreadState::Blocked);
        EXPECT_TRUE(s_->at_frame);
        EXPECT_EQ(ep_->waiting_receivers(), 1u);
        EXPECT_EQ(s_->ipc->op, IpcState::Op::Recv);
        EXPECT_EQ(s_->ipc->user_op, IpcState::UserOp::Recv);
        EXPECT_FALSE(s_->ipc->reply.valid());
        EXPECT_EQ(s_->ipc->endpoint_ref.get(), ep_);
        EXPECT_EQ(ep_->refs(), base_refs_ + 1);
        EXPECT_EQ(FakeCpu::switches.back().from, &s_->context);
        EXPECT_EQ(FakeCpu::switches.back().to, &c_->context);

        // Counted as a hit in the syscall counters, as a block, a wake and
        // a direct switch each in the scheduler's; no stack given up (the
        // stub returns through the partner's frame), nothing in the
        // endpoint's counters.
        const IpcCounters ipc1 = ipc_counters();
        const SchedCounters sched1 = sched().counters();
        EXPECT_EQ(ipc1.syscall_fastpath_hits, ipc0.syscall_fastpath_hits + 2);
        EXPECT_EQ(ipc1.syscall_fastpath_misses, ipc0.syscall_fastpath_misses);
        EXPECT_EQ(ipc1.calls, ipc0.calls);
        EXPECT_EQ(ipc1.receives, ipc0.receives);
        EXPECT_EQ(ipc1.replies, ipc0.replies);
        EXPECT_EQ(ipc1.fastpath_hits, ipc0.fastpath_hits);
        EXPECT_EQ(sched1.switches, sched0.switches + 2);
        EXPECT_EQ(sched1.direct_switches, sched0.direct_switches + 2);
        EXPECT_EQ(sched1.blocks, sched0.blocks + 2);
        EXPECT_EQ(sched1.wakeups, sched0.wakeups + 2);
        EXPECT_EQ(FakeCpu::stacks_left, left);

        const TrapFrame& f = frame(c_);
        checksum += f.rdx + f.r10 + f.r8 + f.r9;
        expected += reply[0] + reply[1] + reply[2] + reply[3];
    }
    EXPECT_EQ(checksum, expected);
    EXPECT_EQ(ipc_counters().syscall_fastpath_hits, 10u);
    EXPECT_EQ(ipc_counters().syscall_fastpath_misses, 0u);
}

// A donate target set when a fast-path call switches (in the kernel,
// another CPU's: "wake there, now", Scheduler::donate_elsewhere_locked) is
// left for the interrupt that CPU sent: at its end the target runs, ahead
// of z, queued before it, and the server the call switched to waits at the
// front of the hand-off queue.
TEST_F(FastPathTest, AFastCallLeavesTheDonateTargetToTheInterrupt) {
    server_waits();
    run_as(c_);
    Thread* z = spawn("z");
    Thread* w = spawn("w");
    {
        LockGuard guard(sched().lock());
        sched().set_donate_target_locked(w);
    }
    set_regs(c_, Sys::Call, ch_, info(1), {1, 2, 3, 4});
    ASSERT_EQ(fast(c_).frame, &frame(s_));
    EXPECT_EQ(sched().current(), s_);
    sched().preempt_if_needed(true);
    EXPECT_EQ(sched().current(), w);
    EXPECT_TRUE(s_->lent_quantum);
    EXPECT_EQ(z->state, ThreadState::Ready);
}

// What the assembly of the fast path (arch/x86_64/syscall.S) assumes of
// Boost.Intrusive's layouts, which no offsetof can check (the field offsets
// are static_asserted in fastpath.cpp): a wait queue is its header node,
// next then prev; a thread's queue hook is next then prev, both null once
// unlinked; an unlinked timeout hook's first word (its parent) is null; an
// endpoint's notice list keeps its size in its first word.
TEST_F(FastPathTest, TheListsAreLaidOutAsTheAssemblyReadsThem) {
    run_as(c_);  // the running thread: on no queue
    Thread& t = *c_;
    ASSERT_FALSE(t.queue_hook.is_linked());
    WaitQueue::List list;
    auto* header = reinterpret_cast<void**>(&list);
    auto* hook = reinterpret_cast<void**>(&t.queue_hook);
    EXPECT_EQ(header[0], header);
    EXPECT_EQ(header[1], header);
    list.push_back(t);
    EXPECT_EQ(header[0], hook);
    EXPECT_EQ(header[1], hook);
    EXPECT_EQ(hook[0], header);
    EXPECT_EQ(hook[1], header);
    list.pop_front();
    EXPECT_EQ(hook[0], nullptr);
    EXPECT_EQ(hook[1], nullptr);
    // The assembly unlinks with the neighbours' two stores and a null next,
    // leaving prev as it was: safe mode reads next alone, and a link
    // writes both.
    list.push_back(t);
    header[0] = header;
    header[1] = header;
    hook[0] = nullptr;  // prev still names the header
    EXPECT_FALSE(t.queue_hook.is_linked());
    list.push_back(t);  // safe mode asserts an unlinked hook here
    EXPECT_EQ(hook[0], header);
    EXPECT_EQ(hook[1], header);
    list.pop_front();
    EXPECT_FALSE(t.timeout_hook.is_linked());
    EXPECT_EQ(*reinterpret_cast<void**>(&t.timeout_hook), nullptr);
    // A linked timeout hook's first word is not null (a set of the hook's
    // type, as the scheduler's timeout set is).
    struct Timed {
        TimeoutHook hook;
        uint64_t deadline;
        bool operator<(const Timed& other) const { return deadline < other.deadline; }
    };
    bi::set<Timed, bi::member_hook<Timed, TimeoutHook, &Timed::hook>> timeouts;
    Timed timed{{}, 5};
    timeouts.insert(timed);
    EXPECT_NE(*reinterpret_cast<void**>(&timed.hook), nullptr);
    timeouts.erase(timeouts.iterator_to(timed));
    EXPECT_EQ(*reinterpret_cast<void**>(&timed.hook), nullptr);

    NoticeList notices;
    Notice n;
    auto* size = reinterpret_cast<uint32_t*>(&notices);
    EXPECT_EQ(*size, 0u);
    notices.push_back(n);
    EXPECT_EQ(*size, 1u);
    notices.pop_front();
    EXPECT_EQ(*size, 0u);
}

// --- Call misses: each changes nothing, and the general path completes it ---

// The largest label user code may send takes the fast path.
TEST_F(FastPathTest, LargestUserLabelHits) {
    server_waits();
    fast_call(abi::kNoticeLabelBase - 1, {1, 2, 3, 4});
    set_regs(s_, Sys::ReplyRecv, sh_, info(abi::kNoticeLabelBase - 1), {5, 6, 7, 8});
    ASSERT_EQ(fast(s_).frame, &frame(c_));
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(abi::kNoticeLabelBase - 1), {5, 6, 7, 8}));
}

// Info words the general path refuses: a notice label, reserved bits, the
// call bit (received only).
constexpr uint64_t kMalformedInfo[] = {
    info(abi::kNoticeLabelBase),   info(abi::kLabelChildDied),    info(1) | kCallBit,
    info(1) | (uint64_t{1} << 42), info(1) | (uint64_t{1} << 63),
};

TEST_F(FastPathTest, CallWithMalformedInfoMisses) {
    server_waits();
    run_as(c_);
    for (uint64_t bad : kMalformedInfo) {
        SCOPED_TRACE(bad);
        set_regs(c_, Sys::Call, ch_, bad, {1, 2, 3, 4});
        expect_miss(c_);
        ASSERT_EQ(general(c_), Path::Returned);
        EXPECT_EQ(frame(c_).rax, uint64_t(Err::InvalidArgument));
        EXPECT_EQ(s_->state, ThreadState::Blocked);
        EXPECT_EQ(ep_->waiting_receivers(), 1u);
    }
}

TEST_F(FastPathTest, CallWithPayloadHits) {
    server_waits();
    run_as(c_);
    // Every length that is not a multiple of 8 ends in the byte copy.
    const char payload[16] = "fifteen bytes..";
    std::memcpy(buffer(c_).payload, payload, sizeof payload);
    std::memset(buffer(s_).payload, 0x5A, sizeof buffer(s_).payload);
    const Words w = {10, 11, 12, 13};
    set_regs(c_, Sys::Call, ch_, info(7, 15), w);
    ASSERT_EQ(fast(c_).frame, &frame(s_));
    EXPECT_EQ(c_->waiting_on, &s_->ipc->callers);
    EXPECT_EQ(sched().current(), s_);
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, kBadge, info(7, 15) | kCallBit, w));
    EXPECT_EQ(std::memcmp(buffer(s_).payload, payload, 15), 0);
    EXPECT_EQ(buffer(s_).payload[15], 0x5A) << "a byte past the length was copied";
    EXPECT_EQ(ipc_counters().syscall_fastpath_hits, 1u);
}

TEST_F(FastPathTest, RoundTripWithLargestPayloadHits) {
    server_waits();
    run_as(c_);
    for (unsigned i = 0; i < abi::kMaxPayload; ++i) buffer(c_).payload[i] = uint8_t(i * 7);
    set_regs(c_, Sys::Call, ch_, info(7, abi::kMaxPayload), {1, 2, 3, 4});
    ASSERT_EQ(fast(c_).frame, &frame(s_));
    EXPECT_EQ(std::memcmp(buffer(s_).payload, buffer(c_).payload, abi::kMaxPayload), 0);
    for (unsigned i = 0; i < abi::kMaxPayload; ++i) buffer(s_).payload[i] = uint8_t(i * 3);
    set_regs(s_, Sys::ReplyRecv, sh_, info(8, abi::kMaxPayload), {5, 6, 7, 8});
    ASSERT_EQ(fast(s_).frame, &frame(c_));
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(8, abi::kMaxPayload), {5, 6, 7, 8}));
    EXPECT_EQ(std::memcmp(buffer(c_).payload, buffer(s_).payload, abi::kMaxPayload), 0);
    EXPECT_EQ(ipc_counters().syscall_fastpath_hits, 2u);
    EXPECT_EQ(ipc_counters().syscall_fastpath_misses, 0u);
}

// A payload needs the sender's IPC buffer page: without one the general
// path refuses the call (BadState), whether a receiver waits or not, so the
// fast path must not take it.
TEST_F(FastPathTest, CallWithPayloadButNoIpcBufferMisses) {
    Thread* bare = b_->create_thread("bare", abi::kUserBase, 0, 0).value();
    ASSERT_EQ(sched().start(*bare), Error::None);
    users_.push_back(bare);
    server_waits();
    run_as(bare);
    set_regs(bare, Sys::Call, ch_, info(7, 8), {1, 2, 3, 4});
    expect_miss(bare);
    ASSERT_EQ(general(bare), Path::Returned);
    EXPECT_EQ(frame(bare).rax, uint64_t(Err::BadState));
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    // Register-only, it takes the fast path.
    set_regs(bare, Sys::Call, ch_, info(7), {1, 2, 3, 4});
    ASSERT_EQ(fast(bare).frame, &frame(s_));
}

TEST_F(FastPathTest, CallWithPayloadOverTheLimitMisses) {
    server_waits();
    run_as(c_);
    // The 10-bit length field holds more than kMaxPayload: the general path
    // refuses it.
    set_regs(c_, Sys::Call, ch_, info(7, abi::kMaxPayload + 1), {1, 2, 3, 4});
    expect_miss(c_);
    ASSERT_EQ(general(c_), Path::Returned);
    EXPECT_EQ(frame(c_).rax, uint64_t(Err::TooLarge));
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
}

TEST_F(FastPathTest, CallWithHandlesMisses) {
    server_waits();
    run_as(c_);
    buffer(c_).handles[0] = ch_;
    buffer(c_).handle_flags[0] = abi::kTransferCopy;
    const Words w = {30, 31, 32, 33};
    set_regs(c_, Sys::Call, ch_, info(9, 0, 1), w);
    expect_miss(c_);
    // With handles in flight C keeps its stack (they go back if the call
    // fails): it blocks in switch_context(), which the host unwinds.
    ASSERT_EQ(general(c_), Path::SwitchedAway);
    EXPECT_EQ(c_->state, ThreadState::Blocked);
    EXPECT_FALSE(c_->at_frame);
    EXPECT_EQ(c_->waiting_on, &s_->ipc->callers);
    EXPECT_TRUE(frame_holds(resume(s_), Err::Ok, kBadge, info(9, 0, 1) | kCallBit, w));
    Result<HandleEntry> e = a_->handles().lookup(buffer(s_).handles[0], ObjectType::Endpoint, 0);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e.value().object.get(), ep_);
    EXPECT_EQ(e.value().rights, kClientRights);
    EXPECT_EQ(e.value().badge, kBadge);
    reply_general(s_, 10, {40, 41, 42, 43});
    // C's syscall would finish on the stack the host could not keep.
    Result<Message> m = Endpoint::finish_call(*c_);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m.value().label, 10u);
    EXPECT_EQ(m.value().words[3], 43u);
}

// A handle that can receive on an endpoint may not travel in a message
// queued on that same endpoint (it would hold the endpoint's receive side
// open while it waits there): InvalidArgument, moved or copied, and the
// handle stays. Onto another endpoint it may.
TEST_F(FastPathTest, AReceiveHandleMayNotTravelOnItsOwnEndpoint) {
    Thread* s2 = make_thread(a_, "S2");
    Endpoint* other = nullptr;
    HandleValue oh = created_endpoint(a_, &other);
    HandleValue peer = insert(a_, other, abi::kRightsAll);  // another receive handle, on `other`
    run_as(s2);
    for (uint32_t flags : {uint32_t{abi::kTransferMove}, uint32_t{abi::kTransferCopy}}) {
        for (Sys n : {Sys::Send, Sys::Call}) {
            buffer(s2).handles[0] = sh_;
            buffer(s2).handle_flags[0] = flags;
            set_regs(s2, n, sh_, info(11, 0, 1), {1, 2, 3, 4}, abi::kNoWait);
            ASSERT_EQ(general(s2), Path::Returned);
            EXPECT_EQ(frame(s2).rax, uint64_t(Err::InvalidArgument));
            EXPECT_TRUE(a_->handles().lookup(sh_, ObjectType::Endpoint, abi::kRightReceive));
        }
    }
    // Onto ep_, a receive handle to `other` goes, and onto `other` one to
    // ep_ (a non-blocking send with nobody receiving is refused later,
    // WouldBlock: past the handle check).
    buffer(s2).handles[0] = peer;
    buffer(s2).handle_flags[0] = abi::kTransferCopy;
    set_regs(s2, Sys::Send, sh_, info(12, 0, 1), {1, 2, 3, 4}, abi::kNoWait);
    ASSERT_EQ(general(s2), Path::Returned);
    EXPECT_EQ(frame(s2).rax, uint64_t(Err::WouldBlock));
    buffer(s2).handles[0] = sh_;
    set_regs(s2, Sys::Send, oh, info(13, 0, 1), {1, 2, 3, 4}, abi::kNoWait);
    ASSERT_EQ(general(s2), Path::Returned);
    EXPECT_EQ(frame(s2).rax, uint64_t(Err::WouldBlock));
    // Copies both times: the handles stay where they were.
    EXPECT_TRUE(a_->handles().lookup(peer, ObjectType::Endpoint, abi::kRightReceive));
    EXPECT_TRUE(a_->handles().lookup(sh_, ObjectType::Endpoint, abi::kRightReceive));
}

TEST_F(FastPathTest, CallWithTimeoutMisses) {
    server_waits();
    run_as(c_);
    const Words w = {50, 51, 52, 53};
    set_regs(c_, Sys::Call, ch_, info(11), w, 5 * kMs);
    expect_miss(c_);
    // The endpoint's own direct switch, with C's timeout armed.
    ASSERT_EQ(general(c_), Path::GaveStackUp);
    EXPECT_EQ(sched().current(), s_);
    EXPECT_TRUE(c_->timeout_hook.is_linked());
    EXPECT_TRUE(frame_holds(resume(s_), Err::Ok, kBadge, info(11) | kCallBit, w));
    reply_general(s_, 12, {60, 61, 62, 63});
    EXPECT_FALSE(c_->timeout_hook.is_linked());
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(12), {60, 61, 62, 63}));
    EXPECT_EQ(ep_->refs(), base_refs_);
}

TEST_F(FastPathTest, CallThroughBadHandlesMisses) {
    server_waits();
    run_as(c_);
    struct Case {
        uint64_t handle;
        Err err;
    };
    const Case cases[] = {
        {0, Err::BadHandle},
        {(uint64_t{1} << 32) | ch_, Err::BadHandle},
        // Any bit above the 16-bit generation: the fast path compares all
        // 48 bits above the index with the slot's generation.
        {(uint64_t{1} << 47) | ch_, Err::BadHandle},
        {(uint64_t{1} << 63) | ch_, Err::BadHandle},
        {0xFFFFFFFF, Err::BadHandle},
        {stale_handle(b_), Err::BadHandle},
        {insert(b_, c_, abi::kRightsAll), Err::BadHandle},  // a thread
        {insert(b_, ep_, abi::kRightReceive | abi::kRightGrant), Err::NoRights},
    };
    const uint32_t refs = ep_->refs();  // S's receive and the handles, the new ones too
    for (const Case& k : cases) {
        SCOPED_TRACE(k.handle);
        set_regs(c_, Sys::Call, k.handle, info(13), {1, 2, 3, 4});
        expect_miss(c_);
        ASSERT_EQ(general(c_), Path::Returned);
        EXPECT_EQ(frame(c_).rax, uint64_t(k.err));
        // Refused before anything changed: S still waits at its frame.
        EXPECT_EQ(c_->ipc->op, IpcState::Op::None);
        EXPECT_EQ(s_->state, ThreadState::Blocked);
        EXPECT_TRUE(s_->at_frame);
        EXPECT_EQ(ep_->waiting_receivers(), 1u);
        EXPECT_EQ(ep_->refs(), refs);
    }
    fast_call(14, {5, 6, 7, 8});
    EXPECT_EQ(ipc_counters().syscall_fastpath_misses, std::size(cases));
}

// A stale handle whose slot holds a live endpoint handle again (a new
// generation): the value still names nothing.
TEST_F(FastPathTest, CallThroughStaleHandleOfReusedSlotMisses) {
    server_waits();
    run_as(c_);
    const HandleValue stale = stale_handle(b_);
    HandleValue reused = 0;
    for (uint32_t i = 0; i < kProcessHandleLimit && reused == 0; ++i) {
        HandleValue h = insert(b_, ep_, kClientRights);
        if ((h & HandleTable::kIndexMask) == (stale & HandleTable::kIndexMask)) reused = h;
    }
    ASSERT_NE(reused, 0u);
    ASSERT_NE(reused, stale);
    set_regs(c_, Sys::Call, stale, info(24), {1, 2, 3, 4});
    expect_miss(c_);
    ASSERT_EQ(general(c_), Path::Returned);
    EXPECT_EQ(frame(c_).rax, uint64_t(Err::BadHandle));
    EXPECT_EQ(s_->state, ThreadState::Blocked);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
}

TEST_F(FastPathTest, CallWithNoReceiverMisses) {
    run_as(c_);
    const Words w = {70, 71, 72, 73};
    set_regs(c_, Sys::Call, ch_, info(15), w);
    expect_miss(c_);
    ASSERT_EQ(general(c_), Path::GaveStackUp);  // queued as a sender
    EXPECT_EQ(ep_->waiting_senders(), 1u);
    EXPECT_EQ(c_->ipc->op, IpcState::Op::Call);
    // S's receive takes it at once.
    run_as(s_);
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, kBadge, info(15) | kCallBit, w));
    EXPECT_EQ(c_->waiting_on, &s_->ipc->callers);
    reply_general(s_, 16, {80, 81, 82, 83});
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(16), {80, 81, 82, 83}));
    EXPECT_EQ(ep_->refs(), base_refs_);
}

// A receiver not at its frame: a kernel thread in Endpoint::recv().
TEST_F(FastPathTest, CallToKernelThreadReceiverMisses) {
    Thread* k = spawn("kserver");
    run_as(k);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);  // k blocks
    EXPECT_FALSE(k->at_frame);
    run_as(c_);
    const Words w = {90, 91, 92, 93};
    set_regs(c_, Sys::Call, ch_, info(17), w);
    expect_miss(c_);
    ASSERT_EQ(general(c_), Path::GaveStackUp);  // the endpoint's direct switch to k
    EXPECT_EQ(sched().current(), k);
    Result<Received> r = Endpoint::finish_recv(*k);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().msg.label, 17u);
    EXPECT_EQ(r.value().msg.words[2], 92u);
    EXPECT_EQ(r.value().badge, kBadge);
    Message answer;
    answer.label = 18;
    answer.words[0] = 100;
    answer.words[3] = 103;
    EXPECT_EQ(Endpoint::reply(r.value().reply, answer), Error::None);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(18), {100, 0, 0, 103}));
}

// A receiver not at its frame: a user thread whose ReplyRecv carried
// handles (its reservation keeps the stack), with no call to answer.
TEST_F(FastPathTest, CallToReceiverThatKeptItsStackMisses) {
    run_as(s_);
    buffer(s_).handles[0] = sh_;
    buffer(s_).handle_flags[0] = abi::kTransferCopy;
    set_regs(s_, Sys::ReplyRecv, sh_, info(1, 0, 1));
    ASSERT_EQ(stub(s_), Path::SwitchedAway);
    EXPECT_EQ(s_->state, ThreadState::Blocked);
    EXPECT_FALSE(s_->at_frame);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    run_as(c_);
    const Words w = {110, 111, 112, 113};
    set_regs(c_, Sys::Call, ch_, info(19), w);
    expect_miss(c_);
    ASSERT_EQ(general(c_), Path::GaveStackUp);  // the endpoint's direct switch to S
    EXPECT_EQ(sched().current(), s_);
    // S's syscall would finish on the stack the host could not keep.
    Result<Received> r = Endpoint::finish_recv(*s_);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().msg.label, 19u);
    EXPECT_EQ(r.value().msg.words[1], 111u);
    EXPECT_EQ(r.value().badge, kBadge);
    EXPECT_EQ(r.value().reply.caller, c_->id());
    reply_general(s_, 20, {120, 121, 122, 123});
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(20), {120, 121, 122, 123}));
}

TEST_F(FastPathTest, CallToServerWithSupersededCallMisses) {
    Thread* c2 = make_thread(b_, "C2");
    pending_call();
    // S receives again without answering C: a message that arrives
    // supersedes C's call.
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    EXPECT_EQ(s_->ipc->superseded.caller, c_->id());
    run_as(c2);
    const Words w = {130, 131, 132, 133};
    set_regs(c2, Sys::Call, ch_, info(21), w);
    expect_miss(c2);
    ASSERT_EQ(general(c2), Path::GaveStackUp);
    EXPECT_TRUE(frame_holds(resume(s_), Err::Ok, kBadge, info(21) | kCallBit, w));
    EXPECT_EQ(s_->ipc->reply.caller, c2->id());
    EXPECT_FALSE(s_->ipc->superseded.valid());
    // The superseded call fails.
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::PeerDied));
    EXPECT_EQ(c2->waiting_on, &s_->ipc->callers);
}

// Unreachable on one CPU (kill_locked() refuses the current thread, and a
// killed thread ends before it returns to user mode): set by hand, as a kill
// from another CPU would.
TEST_F(FastPathTest, CallFromThreadAskedToExitMisses) {
    server_waits();
    run_as(c_);
    {
        LockGuard guard(sched().lock());
        c_->exit_requested = true;
    }
    set_regs(c_, Sys::Call, ch_, info(22), {1, 2, 3, 4});
    expect_miss(c_);
    ASSERT_EQ(general(c_), Path::SwitchedAway);  // refused, and it ends on its way out
    EXPECT_EQ(frame(c_).rax, uint64_t(Err::Interrupted));
    EXPECT_EQ(c_->state, ThreadState::Dead);
    EXPECT_EQ(s_->state, ThreadState::Blocked);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);
}

TEST_F(FastPathTest, CallOnDeadEndpointMisses) {
    destroy_endpoint();
    EXPECT_EQ(ep_->refs(), base_refs_ - 1);  // the handles keep it
    run_as(c_);
    set_regs(c_, Sys::Call, ch_, info(23), {1, 2, 3, 4});
    expect_miss(c_);
    ASSERT_EQ(general(c_), Path::Returned);
    EXPECT_EQ(frame(c_).rax, uint64_t(Err::Destroyed));
    EXPECT_EQ(ep_->refs(), base_refs_ - 1);
}

// --- Call that finds no receiver: queued, and the next thread resumed ---

// S deferred C's first call and answered it with a fast Reply, so it waits
// Ready at the front of the hand-off queue, at its frame: C's next call
// finds no receiver (the pipe server's echo writing while the server is
// busy). The fast path queues C on the endpoint, as the general path
// would, and returns to user mode as S, with S's own registers and its
// Reply's Ok. S's next receive takes the queued call, and its answer
// reaches C.
TEST_F(FastPathTest, CallWithNoReceiverQueuesAndResumesTheNextThread) {
    pending_call();
    HandleValue saved = save();
    set_regs(s_, Sys::Reply, saved, info(60), {6, 6, 6, 6});
    ASSERT_EQ(stub(s_), Path::FastHit);
    ASSERT_EQ(sched().current(), c_);
    ASSERT_EQ(s_->state, ThreadState::Ready);
    frame(s_).rdi = 0x5eed;  // r0 as S left it: a Reply returns none
    frame(s_).rdx = 0xd0d0;  // and its words
    const Words w = {61, 62, 63, 64};
    set_regs(c_, Sys::Call, ch_, info(61), w);
    SchedCounters before = sched().counters();
    IpcCounters ipc_before = ipc_counters();
    uint64_t call_seq = c_->ipc->call_seq;
    ASSERT_EQ(stub(c_), Path::FastHit);
    // S runs, returning from its Reply with its own registers.
    EXPECT_EQ(sched().current(), s_);
    EXPECT_EQ(s_->state, ThreadState::Running);
    EXPECT_FALSE(s_->at_frame);
    EXPECT_FALSE(s_->lent_quantum);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Ok));
    EXPECT_EQ(frame(s_).rdi, 0x5eedu);
    EXPECT_EQ(frame(s_).rdx, 0xd0d0u);
    // C waits on the endpoint with its call, as Endpoint::call() queues it.
    EXPECT_EQ(c_->state, ThreadState::Blocked);
    EXPECT_TRUE(c_->at_frame);
    EXPECT_EQ(ep_->waiting_senders(), 1u);
    EXPECT_EQ(c_->ipc->op, IpcState::Op::Call);
    EXPECT_EQ(c_->ipc->user_op, IpcState::UserOp::Call);
    EXPECT_EQ(c_->ipc->result, Error::WouldBlock);
    EXPECT_EQ(c_->ipc->endpoint_ref.get(), ep_);
    EXPECT_EQ(c_->ipc->call_seq, call_seq + 1);
    EXPECT_EQ(c_->ipc->badge, kBadge);
    EXPECT_TRUE(frame_holds(frame(c_), Err(uint64_t(Sys::Call)), ch_, info(61), w));
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);  // C's call holds one
    // Counted as the general path counts a call with no receiver, and as a
    // block, a switch and a hit.
    SchedCounters after = sched().counters();
    EXPECT_EQ(after.blocks, before.blocks + 1);
    EXPECT_EQ(after.switches, before.switches + 1);
    EXPECT_EQ(after.wakeups, before.wakeups);
    IpcCounters ipc_after = ipc_counters();
    EXPECT_EQ(ipc_after.syscall_fastpath_hits, ipc_before.syscall_fastpath_hits + 1);
    EXPECT_EQ(ipc_after.syscall_fastpath_misses, ipc_before.syscall_fastpath_misses);
    EXPECT_EQ(ipc_after.fastpath_miss_no_partner, ipc_before.fastpath_miss_no_partner + 1);
    // S's Recv (the general path: C is the only other thread, and blocked)
    // takes the call; its ReplyRecv answers C on the fast path.
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, kBadge, info(61) | kCallBit, w));
    EXPECT_EQ(s_->ipc->reply.caller, c_->id());
    EXPECT_EQ(s_->ipc->reply.call, call_seq + 1);
    set_regs(s_, Sys::ReplyRecv, sh_, info(65), {7, 7, 7, 7});
    ASSERT_EQ(fast(s_).frame, &frame(c_));
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(65), {7, 7, 7, 7}));
    EXPECT_FALSE(c_->ipc->endpoint_ref);     // dropped by the reply
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);  // S's receive holds one now
}

// Queued callers are served in arrival order: one the general path queued
// first (C2, while S was running) is taken before C, which the fast path
// queued behind it.
TEST_F(FastPathTest, CallQueuedByTheFastPathWaitsBehindEarlierCallers) {
    Process* d = make_process("D");
    Thread* c2 = make_thread(d, "C2");
    HandleValue dh = insert(d, ep_, abi::kRightSend);
    pending_call();
    HandleValue saved = save();
    run_as(c2);
    set_regs(c2, Sys::Call, dh, info(66), {2, 2, 2, 2});
    ASSERT_EQ(stub(c2), Path::GaveStackUp);  // S is Ready keeping its stack: the general path
    run_as(s_);
    set_regs(s_, Sys::Reply, saved, info(67), {6, 6, 6, 6});
    ASSERT_EQ(stub(s_), Path::FastHit);
    ASSERT_EQ(sched().current(), c_);
    set_regs(c_, Sys::Call, ch_, info(68), {3, 3, 3, 3});
    ASSERT_EQ(stub(c_), Path::FastHit);
    ASSERT_EQ(sched().current(), s_);
    EXPECT_EQ(ep_->waiting_senders(), 2u);
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, 0, info(66) | kCallBit, {2, 2, 2, 2}));
    set_regs(s_, Sys::ReplyRecv, sh_, info(69), {4, 4, 4, 4});
    ASSERT_EQ(fast(s_).frame, &frame(s_));  // C2 answered in passing, C's call taken
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, kBadge, info(68) | kCallBit, {3, 3, 3, 3}));
    EXPECT_EQ(c2->state, ThreadState::Ready);
    EXPECT_EQ(ep_->waiting_senders(), 0u);
}

// What the general path must do for a call with no receiver: a timeout
// (armed there), a payload (the assembly hands it to the C++ Call, which
// leaves it to the general path), a caller asked to exit (refused there),
// donation off (no fast switch at all), and a next thread the fast path
// cannot finish (the scheduler picks). Each misses and changes nothing;
// the general path queues or refuses it.
TEST_F(FastPathTest, CallWithNoReceiverThatTheGeneralPathMustQueueMisses) {
    pending_call();
    HandleValue saved = save();
    set_regs(s_, Sys::Reply, saved, info(70), {6, 6, 6, 6});
    ASSERT_EQ(stub(s_), Path::FastHit);
    ASSERT_EQ(sched().current(), c_);
    // A timeout.
    set_regs(c_, Sys::Call, ch_, info(71), {1, 2, 3, 4}, 5 * kMs);
    expect_miss(c_);
    // A payload.
    set_regs(c_, Sys::Call, ch_, info(71, 8), {1, 2, 3, 4});
    expect_miss(c_);
    // Donation off.
    Scheduler::set_donation_enabled(false);
    set_regs(c_, Sys::Call, ch_, info(71), {1, 2, 3, 4});
    expect_miss(c_);
    Scheduler::set_donation_enabled(true);
    // Asked to exit.
    {
        LockGuard guard(sched().lock());
        c_->exit_requested = true;
    }
    expect_miss(c_);
    {
        LockGuard guard(sched().lock());
        c_->exit_requested = false;
    }
    // The next thread asked to exit.
    {
        LockGuard guard(sched().lock());
        s_->exit_requested = true;
    }
    expect_miss(c_);
    {
        LockGuard guard(sched().lock());
        s_->exit_requested = false;
    }
    // The control: the same call, nothing in the way, queues.
    ASSERT_EQ(stub(c_), Path::FastHit);
    EXPECT_EQ(sched().current(), s_);
    EXPECT_EQ(ep_->waiting_senders(), 1u);
}

// A dead endpoint with the next thread resumable: Destroyed from the
// general path, nothing queued.
TEST_F(FastPathTest, CallWithNoReceiverOnADeadEndpointMisses) {
    pending_call();
    HandleValue saved = save();
    set_regs(s_, Sys::Reply, saved, info(72), {6, 6, 6, 6});
    ASSERT_EQ(stub(s_), Path::FastHit);
    ASSERT_EQ(sched().current(), c_);
    destroy_endpoint();
    set_regs(c_, Sys::Call, ch_, info(73), {1, 2, 3, 4});
    expect_miss(c_);
    ASSERT_EQ(general(c_), Path::Returned);
    EXPECT_EQ(frame(c_).rax, uint64_t(Err::Destroyed));
    EXPECT_EQ(ep_->waiting_senders(), 0u);
}

// --- ReplyRecv misses ---

TEST_F(FastPathTest, ReplyRecvWithPayloadHits) {
    pending_call();
    const char payload[24] = "twenty-three bytes, ok.";
    std::memcpy(buffer(s_).payload, payload, sizeof payload);
    const Words w = {140, 141, 142, 143};
    set_regs(s_, Sys::ReplyRecv, sh_, info(31, sizeof payload), w);
    ASSERT_EQ(fast(s_).frame, &frame(c_));
    EXPECT_EQ(sched().current(), c_);  // donated
    EXPECT_EQ(s_->state, ThreadState::Blocked);
    EXPECT_TRUE(s_->at_frame);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(31, sizeof payload), w));
    EXPECT_EQ(std::memcmp(buffer(c_).payload, payload, sizeof payload), 0);
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);
}

TEST_F(FastPathTest, ReplyRecvWithPayloadOverTheLimitMisses) {
    pending_call();
    set_regs(s_, Sys::ReplyRecv, sh_, info(31, abi::kMaxPayload + 1), {1, 2, 3, 4});
    expect_miss(s_);
}

TEST_F(FastPathTest, ReplyRecvWithHandlesMisses) {
    pending_call();
    buffer(s_).handles[0] = sh_;
    buffer(s_).handle_flags[0] = abi::kTransferCopy;
    const Words w = {150, 151, 152, 153};
    set_regs(s_, Sys::ReplyRecv, sh_, info(32, 0, 1), w);
    expect_miss(s_);
    // The reply first, then the receive, which keeps the stack.
    ASSERT_EQ(general(s_), Path::SwitchedAway);
    EXPECT_EQ(s_->state, ThreadState::Blocked);
    EXPECT_FALSE(s_->at_frame);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(32, 0, 1), w));
    Result<HandleEntry> e = b_->handles().lookup(buffer(c_).handles[0], ObjectType::Endpoint, 0);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e.value().object.get(), ep_);
    EXPECT_EQ(e.value().rights, uint32_t(abi::kRightsAll));
    EXPECT_EQ(e.value().badge, 0u);
}

TEST_F(FastPathTest, ReplyRecvWithTimeoutMisses) {
    pending_call();
    const Words w = {160, 161, 162, 163};
    set_regs(s_, Sys::ReplyRecv, sh_, info(33), w, 3 * kMs);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);  // the endpoint's direct switch to C
    EXPECT_EQ(sched().current(), c_);
    EXPECT_TRUE(s_->timeout_hook.is_linked());
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(33), w));
    // Nothing arrives: S's receive times out.
    for (int i = 0; i < 3; ++i) sched().on_timer_tick();
    EXPECT_EQ(s_->state, ThreadState::Ready);
    EXPECT_EQ(resume(s_).rax, uint64_t(Err::TimedOut));
    EXPECT_EQ(ep_->refs(), base_refs_);
}

TEST_F(FastPathTest, ReplyRecvThroughBadHandlesMisses) {
    pending_call();
    struct Case {
        uint64_t handle;
        Err err;
    };
    const Case cases[] = {
        {0, Err::BadHandle},
        {(uint64_t{1} << 32) | sh_, Err::BadHandle},
        {(uint64_t{1} << 47) | sh_, Err::BadHandle},
        {(uint64_t{1} << 63) | sh_, Err::BadHandle},
        {0xFFFFFFFF, Err::BadHandle},
        {stale_handle(a_), Err::BadHandle},
        {insert(a_, s_, abi::kRightsAll), Err::BadHandle},  // a thread
        {insert(a_, ep_, abi::kRightsAll & ~abi::kRightReceive), Err::NoRights},
    };
    const uint32_t refs = ep_->refs();  // the handles, the new ones too
    for (const Case& k : cases) {
        SCOPED_TRACE(k.handle);
        set_regs(s_, Sys::ReplyRecv, k.handle, info(34), {1, 2, 3, 4});
        expect_miss(s_);
        ASSERT_EQ(general(s_), Path::Returned);
        EXPECT_EQ(frame(s_).rax, uint64_t(k.err));
        // Refused before anything changed: S still holds C's call.
        EXPECT_EQ(s_->ipc->reply.caller, c_->id());
        EXPECT_EQ(c_->state, ThreadState::Blocked);
        EXPECT_EQ(c_->waiting_on, &s_->ipc->callers);
        EXPECT_EQ(ep_->refs(), refs);
    }
    set_regs(s_, Sys::ReplyRecv, sh_, info(35), {5, 6, 7, 8});
    ASSERT_EQ(fast(s_).frame, &frame(c_));
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(35), {5, 6, 7, 8}));
    EXPECT_EQ(ipc_counters().syscall_fastpath_misses, std::size(cases));
}

TEST_F(FastPathTest, ReplyRecvWithMalformedInfoMisses) {
    pending_call();
    for (uint64_t bad : kMalformedInfo) {
        SCOPED_TRACE(bad);
        set_regs(s_, Sys::ReplyRecv, sh_, bad, {1, 2, 3, 4});
        expect_miss(s_);
        ASSERT_EQ(general(s_), Path::Returned);
        EXPECT_EQ(frame(s_).rax, uint64_t(Err::InvalidArgument));
        EXPECT_EQ(s_->ipc->reply.caller, c_->id());  // refused before the reply
        EXPECT_EQ(c_->waiting_on, &s_->ipc->callers);
    }
}

TEST_F(FastPathTest, ReplyRecvWithoutPendingCallMisses) {
    run_as(s_);
    set_regs(s_, Sys::ReplyRecv, sh_, info(36), {1, 2, 3, 4});
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);  // it only receives
    EXPECT_EQ(s_->ipc->op, IpcState::Op::Recv);
    EXPECT_TRUE(s_->at_frame);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    // A receiver like any other: a call reaches it on the fast path.
    fast_call(37, {9, 9, 9, 9});
    EXPECT_EQ(ep_->refs(), base_refs_);
}

TEST_F(FastPathTest, ReplyRecvToTimedOutCallerMisses) {
    server_waits();
    run_as(c_);
    set_regs(c_, Sys::Call, ch_, info(38), {1, 2, 3, 4}, 2 * kMs);
    ASSERT_EQ(stub(c_), Path::GaveStackUp);
    EXPECT_EQ(resume(s_).rax, uint64_t(Err::Ok));
    for (int i = 0; i < 2; ++i) sched().on_timer_tick();
    EXPECT_EQ(c_->state, ThreadState::Ready);  // its call timed out
    set_regs(s_, Sys::ReplyRecv, sh_, info(39), {5, 6, 7, 8});
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);  // the stale reply dropped; it receives
    EXPECT_EQ(ipc_counters().stale_replies, 1u);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::TimedOut));
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);
}

TEST_F(FastPathTest, ReplyRecvToWokenCallerMisses) {
    pending_call();
    EXPECT_TRUE(sched().wake(*c_));  // a stray wake: the call ends Interrupted
    EXPECT_EQ(c_->state, ThreadState::Ready);
    set_regs(s_, Sys::ReplyRecv, sh_, info(40), {5, 6, 7, 8});
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    EXPECT_EQ(ipc_counters().stale_replies, 1u);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::Interrupted));
}

// A caller that is not at its frame: a kernel thread in Endpoint::call().
TEST_F(FastPathTest, ReplyRecvToKernelThreadCallerMisses) {
    server_waits();
    Thread* k = spawn("kclient");
    run_as(k);
    Message m;
    m.label = 62;
    m.words[0] = 330;
    m.words[3] = 333;
    EXPECT_EQ(ep_->call(m, 0x77).error(), Error::WouldBlock);  // k waits for the reply
    EXPECT_FALSE(k->at_frame);
    EXPECT_TRUE(frame_holds(resume(s_), Err::Ok, 0x77, info(62) | kCallBit, {330, 0, 0, 333}));
    const Words w = {340, 341, 342, 343};
    set_regs(s_, Sys::ReplyRecv, sh_, info(63), w);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);  // the endpoint's direct switch to k
    EXPECT_EQ(sched().current(), k);
    Result<Message> r = Endpoint::finish_call(*k);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().label, 63u);
    EXPECT_EQ(r.value().words[2], 342u);
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);  // S's receive
}

// A token for an earlier call of a caller that waits on S for a later one.
// Not reachable through syscalls as far as these tests see (a thread's
// pending call is always the latest it received): the token is made stale
// by hand.
TEST_F(FastPathTest, ReplyRecvWithTokenOfEarlierCallMisses) {
    pending_call();
    {
        LockGuard guard(sched().lock());
        --s_->ipc->reply.call;
    }
    set_regs(s_, Sys::ReplyRecv, sh_, info(64), {1, 2, 3, 4});
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);  // the stale reply dropped; S receives
    EXPECT_EQ(ipc_counters().stale_replies, 1u);
    EXPECT_EQ(c_->state, ThreadState::Blocked);  // still waiting for its call
    EXPECT_EQ(c_->waiting_on, &s_->ipc->callers);
}

// The switches turned off after a call that took the fast path.
TEST_F(FastPathTest, ReplyRecvWithFastPathOffMisses) {
    pending_call();
    ipc_set_fast_path(false);
    const Words w = {350, 351, 352, 353};
    set_regs(s_, Sys::ReplyRecv, sh_, info(65), w);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    EXPECT_EQ(sched().current(), c_);  // donated
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(65), w));
    EXPECT_EQ(ipc_counters().fastpath_miss_disabled, 1u);
}

// The fast path tests both settings with one byte, which follows whichever
// of the two changed last.
TEST_F(FastPathTest, TheSwitchFlagNeedsTheFastPathAndDonation) {
    sched().set_donation_enabled(false);
    ipc_set_fast_path(true);  // on again after donation went off: still no switch
    EXPECT_FALSE(ipc_fast_switch());
    sched().set_donation_enabled(true);
    EXPECT_TRUE(ipc_fast_switch());
    ipc_set_fast_path(false);
    EXPECT_FALSE(ipc_fast_switch());
    ipc_set_fast_path(true);
    EXPECT_TRUE(ipc_fast_switch());
}

TEST_F(FastPathTest, ReplyRecvWithDonationOffMisses) {
    pending_call();
    sched().set_donation_enabled(false);
    const Words w = {360, 361, 362, 363};
    set_regs(s_, Sys::ReplyRecv, sh_, info(66), w);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    EXPECT_NE(c_->state, ThreadState::Blocked);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(66), w));
    EXPECT_EQ(ipc_counters().fastpath_miss_donation_off, 1u);
    EXPECT_EQ(sched().counters().donations_taken, 0u);
}

// A Reply wakes the caller and donates: the caller runs next, the server
// waits Ready behind it (docs/ipc.md). Through a saved reply handle too, the
// deferred reply of a pipe read or a port wait.
TEST_F(FastPathTest, SavedReplyDonatesToTheCaller) {
    pending_call();
    set_regs(s_, Sys::ReplySave, abi::kNoHandle);
    ASSERT_EQ(general(s_), Path::Returned);
    ASSERT_EQ(frame(s_).rax, uint64_t(Err::Ok));
    uint64_t saved = frame(s_).rdi;
    EXPECT_EQ(c_->state, ThreadState::Blocked);
    const Words w = {370, 371, 372, 373};
    set_regs(s_, Sys::Reply, saved, info(67), w);
    ASSERT_EQ(general(s_), Path::SwitchedAway);
    EXPECT_EQ(sched().current(), c_);
    EXPECT_EQ(s_->state, ThreadState::Ready);
    EXPECT_EQ(sched().counters().donations_taken, 1u);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(67), w));
    EXPECT_EQ(ep_->refs(), base_refs_);
}

// --- Reply through a saved reply handle ---

// The fast path answers a saved reply: the caller runs with the reply, the
// handle is gone, and the server waits Ready at the front of the hand-off
// queue, at its frame, to return Ok; it keeps the Reply object, which its
// next ReplySave reuses.
TEST_F(FastPathTest, SavedReplyHits) {
    pending_call();
    HandleValue saved = save();
    uint32_t handles = a_->handles().count();
    const Words w = {390, 391, 392, 393};
    set_regs(s_, Sys::Reply, saved, info(69), w);
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_EQ(sched().current(), c_);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(69), w));
    EXPECT_EQ(c_->ipc->op, IpcState::Op::None);
    EXPECT_EQ(s_->state, ThreadState::Ready);
    EXPECT_TRUE(s_->at_frame);
    EXPECT_TRUE(s_->lent_quantum);  // first in line when C blocks
    EXPECT_EQ(a_->handles().count(), handles - 1);
    EXPECT_EQ(a_->handles().lookup(saved, ObjectType::Reply, 0).error(), Error::BadHandle);
    ASSERT_NE(s_->ipc->spare_reply, nullptr);
    EXPECT_EQ(ipc_counters().syscall_fastpath_hits, 2u);  // the call and the reply
    EXPECT_EQ(sched().counters().donations_taken, 1u);
    EXPECT_EQ(ep_->refs(), base_refs_);
    // C blocks again (a Recv it has no right to: it yields instead); S
    // runs next and its Reply returns Ok.
    sched().yield_now();
    EXPECT_EQ(resume(s_).rax, uint64_t(Err::Ok));
    EXPECT_EQ(frame(s_).rdi, saved);  // r0 as it was: a Reply returns no value
    // The next saved reply is the same object, answered again.
    Reply* spare = s_->ipc->spare_reply;
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    fast_call(3, {4, 5, 6, 7});
    HandleValue again = save();
    EXPECT_EQ(s_->ipc->spare_reply, nullptr);
    EXPECT_EQ(a_->handles().lookup(again, ObjectType::Reply, 0).value().object.get(), spare);
    set_regs(s_, Sys::Reply, again, info(70), w);
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(70), w));
    EXPECT_EQ(s_->ipc->spare_reply, spare);
}

// ReplySave with the Reply object a fast Reply kept: the fast path stores
// it as a handle with every right and returns to the server's own frame
// (no switch, nothing allocated); the caller waits on it, and the Reply
// through it hits in turn and hands the object back.
TEST_F(FastPathTest, ReplySaveWithASpareHits) {
    Reply* spare = pending_call_with_spare(85);
    uint32_t handles = a_->handles().count();
    uint64_t hits = ipc_counters().syscall_fastpath_hits;
    size_t blocks = FakeCpu::stacks_left;
    set_regs(s_, Sys::ReplySave, abi::kNoHandle);
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_EQ(sched().current(), s_);
    EXPECT_EQ(s_->state, ThreadState::Running);
    EXPECT_EQ(FakeCpu::stacks_left, blocks);  // no switch
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Ok));
    HandleValue saved = HandleValue(frame(s_).rdi);
    EXPECT_EQ(a_->handles().count(), handles + 1);
    {
        Result<HandleEntry> entry = a_->handles().lookup(saved, ObjectType::Reply, abi::kRightsAll);
        ASSERT_TRUE(entry);
        EXPECT_EQ(entry.value().object.get(), spare);
        EXPECT_EQ(entry.value().badge, 0u);
    }  // its reference gone: the handle's is the only one again
    EXPECT_EQ(s_->ipc->spare_reply, nullptr);
    EXPECT_FALSE(s_->ipc->reply.valid());
    EXPECT_EQ(c_->state, ThreadState::Blocked);
    EXPECT_EQ(ipc_counters().syscall_fastpath_hits, hits + 1);
    // The server goes on (a Reply with no pending call would be refused:
    // the pending call is the saved one now) and answers through the handle.
    set_regs(s_, Sys::Reply, saved, info(87), {9, 10, 11, 12});
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_EQ(sched().current(), c_);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(87), {9, 10, 11, 12}));
    EXPECT_EQ(s_->ipc->spare_reply, spare);
    EXPECT_EQ(ep_->refs(), base_refs_);
}

// The caller of a Reply saved on the fast path dies, or the handle is
// closed unanswered: as after the general path's ReplySave, the handle
// close fails the caller with PeerDied, and the object goes with it.
TEST_F(FastPathTest, AFastSavedReplyClosedUnansweredFailsTheCaller) {
    pending_call_with_spare(88);
    set_regs(s_, Sys::ReplySave, abi::kNoHandle);
    ASSERT_EQ(stub(s_), Path::FastHit);
    HandleValue saved = HandleValue(frame(s_).rdi);
    EXPECT_EQ(a_->handles().remove(saved), Error::None);
    EXPECT_EQ(c_->state, ThreadState::Ready);
    EXPECT_EQ(ipc_counters().peer_died_wakeups, 1u);
    sched().yield_now();
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::PeerDied));
}

// A thread's first ReplySave (no spare Reply object yet) takes the general
// path, which allocates one.
TEST_F(FastPathTest, ReplySaveWithoutASpareMisses) {
    pending_call();
    ASSERT_EQ(s_->ipc->spare_reply, nullptr);
    set_regs(s_, Sys::ReplySave, abi::kNoHandle);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Ok));
    EXPECT_TRUE(a_->handles().lookup(HandleValue(frame(s_).rdi), ObjectType::Reply, 0));
}

// Nothing to save (the pending call ended, or there was none): the fast
// path misses and changes nothing, and the general path says BadHandle.
TEST_F(FastPathTest, ReplySaveMissesAndTheGeneralPathRefuses) {
    pending_call_with_spare(89);
    // Its pending call ended (by a stray wake here): nothing to save.
    EXPECT_TRUE(sched().wake(*c_));
    set_regs(s_, Sys::ReplySave, abi::kNoHandle);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::BadHandle));
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::Interrupted));
    // No pending call at all.
    run_as(s_);
    s_->ipc->reply = {};
    set_regs(s_, Sys::ReplySave, abi::kNoHandle);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::BadHandle));
}

TEST_F(FastPathTest, ReplySaveWithAFullTableMisses) {
    pending_call_with_spare(90);
    std::vector<HandleValue> filler;
    while (true) {
        Result<HandleValue> h = a_->handles().insert(Ref<KObject>::retain(ep_), abi::kRightSend);
        if (!h) break;
        filler.push_back(h.value());
    }
    set_regs(s_, Sys::ReplySave, abi::kNoHandle);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::LimitReached));
    EXPECT_EQ(c_->state, ThreadState::Blocked);  // still S's pending call
    for (HandleValue h : filler) EXPECT_EQ(a_->handles().remove(h), Error::None);
    HandleValue saved = save();
    set_regs(s_, Sys::Reply, saved, info(91), {1, 1, 1, 1});
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(91), {1, 1, 1, 1}));
}

TEST_F(FastPathTest, ReplySaveWithFastPathOffOrKilledMisses) {
    pending_call_with_spare(92);
    ipc_set_fast_path(false);
    set_regs(s_, Sys::ReplySave, abi::kNoHandle);
    expect_miss(s_);
    ipc_set_fast_path(true);
    {
        LockGuard guard(sched().lock());
        s_->exit_requested = true;
    }
    expect_miss(s_);
    // The general path saves it, and the thread ends on its way out; the
    // handle stays with its process (another worker may answer it).
    ASSERT_EQ(general(s_), Path::SwitchedAway);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Ok));
    EXPECT_EQ(s_->state, ThreadState::Dead);
    EXPECT_EQ(c_->state, ThreadState::Blocked);
    EXPECT_EQ(a_->handles().remove(HandleValue(frame(s_).rdi)), Error::None);
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::PeerDied));
}

// --- Recv that blocks and resumes the next thread ---

// S answered C while taking C2's queued call (C waits Ready at the front of
// the hand-off queue, its reply in its IpcState), defers C2's call and
// waits: the fast path blocks S on the endpoint and returns to user mode as
// C with its reply — the pipe server's way back to a writer.
TEST_F(FastPathTest, RecvResumesTheCallerAReplyRecvAnsweredInPassing) {
    const Words w = {140, 141, 142, 143};
    Thread* c2 = nullptr;
    ASSERT_NO_FATAL_FAILURE(answer_in_passing(45, w, &c2));
    HandleValue saved = save();
    SchedCounters before = sched().counters();
    uint64_t hits = ipc_counters().syscall_fastpath_hits;
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_EQ(sched().current(), c_);
    EXPECT_EQ(c_->state, ThreadState::Running);
    EXPECT_FALSE(c_->at_frame);
    EXPECT_FALSE(c_->lent_quantum);
    EXPECT_EQ(c_->ipc->user_op, IpcState::UserOp::None);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(45), w));
    EXPECT_EQ(s_->state, ThreadState::Blocked);
    EXPECT_TRUE(s_->at_frame);
    EXPECT_EQ(s_->ipc->op, IpcState::Op::Recv);
    EXPECT_EQ(s_->ipc->endpoint_ref.get(), ep_);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_EQ(ipc_counters().syscall_fastpath_hits, hits + 1);
    SchedCounters after = sched().counters();
    EXPECT_EQ(after.blocks, before.blocks + 1);
    EXPECT_EQ(after.switches, before.switches + 1);
    EXPECT_EQ(after.wakeups, before.wakeups);
    // S waits like any receiver: C's next call reaches it on the fast path.
    fast_call(46, {2, 2, 2, 2});
    // And C2 has its answer through the saved reply.
    reply_general(s_, 47, {3, 3, 3, 3}, 0, saved);
    EXPECT_TRUE(frame_holds(resume(c2), Err::Ok, 0, info(47), {3, 3, 3, 3}));
}

// After a fast Reply the replier waits Ready at the front of the hand-off
// queue, at its frame: the caller's next Recv that blocks resumes it with
// its Reply's Ok.
TEST_F(FastPathTest, RecvResumesTheReplierAFastReplyLeftReady) {
    Endpoint* own = nullptr;
    HandleValue bh = created_endpoint(b_, &own);
    pending_call();
    HandleValue saved = save();
    set_regs(s_, Sys::Reply, saved, info(48), {4, 4, 4, 4});
    ASSERT_EQ(stub(s_), Path::FastHit);
    ASSERT_EQ(sched().current(), c_);
    frame(s_).rdi = 0x5eed;  // r0 as S left it: a Reply returns none
    set_regs(c_, Sys::Recv, bh);
    ASSERT_EQ(stub(c_), Path::FastHit);
    EXPECT_EQ(sched().current(), s_);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Ok));
    EXPECT_EQ(frame(s_).rdi, 0x5eedu);
    EXPECT_FALSE(s_->at_frame);
    EXPECT_EQ(c_->state, ThreadState::Blocked);
    EXPECT_EQ(own->waiting_receivers(), 1u);
}

// The next thread in line is not one the fast path can finish: it kept
// its stack (C was preempted, or never made a syscall), its operation
// failed (C's call timed out), or it was asked to exit. Each misses; the
// general path blocks S and switches as the scheduler picks.
TEST_F(FastPathTest, RecvWithNoResumableThreadNextMisses) {
    run_as(s_);
    set_regs(s_, Sys::Recv, sh_);
    expect_miss(s_);  // C is Ready but has its stack (no syscall yet)
    ASSERT_EQ(general(s_), Path::GaveStackUp);
}

// A thread preempted in the middle of an IPC syscall is Ready with at_frame
// set but its kernel stack still in use (Cpu::resumes_at_frame() false):
// the fast path must not resume it at its frame. Nor does it pick past a
// donation target, which schedule_locked() honours. The control: the same
// thread, once it gave its stack up and with no target set, is resumed.
TEST_F(FastPathTest, RecvResumesOnlyAThreadThatGaveItsStackUp) {
    run_as(s_);
    {
        LockGuard guard(sched().lock());
        c_->at_frame = true;  // as after begin_ipc(), before it blocked
    }
    ASSERT_FALSE(Cpu::resumes_at_frame(c_->context));
    set_regs(s_, Sys::Recv, sh_);
    expect_miss(s_);
    c_->context.gave_stack_up = true;
    {
        LockGuard guard(sched().lock());
        sched().set_donate_target_locked(c_);
    }
    expect_miss(s_);
    {
        LockGuard guard(sched().lock());
        sched().set_donate_target_locked(nullptr);
    }
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_EQ(sched().current(), c_);
    EXPECT_EQ(frame(c_).rax, uint64_t(Err::Ok));
    EXPECT_FALSE(c_->at_frame);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
}

// A caller that queued before the server received holds its call's
// reference to the endpoint until its syscall completes: resumed by the
// fast Recv, it gives it up there (S's new receive takes one: the count
// is unchanged).
TEST_F(FastPathTest, RecvDropsTheResumedCallersEndpointReference) {
    Process* d = make_process("D");
    Thread* c2 = make_thread(d, "C2");
    HandleValue dh = insert(d, ep_, abi::kRightSend);
    run_as(c_);
    set_regs(c_, Sys::Call, ch_, info(53), {1, 1, 1, 1});
    ASSERT_EQ(stub(c_), Path::GaveStackUp);  // no receiver yet: queued
    ASSERT_TRUE(c_->ipc->endpoint_ref);
    run_as(s_);
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::Returned);  // takes C's call
    run_as(c2);
    set_regs(c2, Sys::Call, dh, info(54), {2, 2, 2, 2});
    ASSERT_EQ(stub(c2), Path::GaveStackUp);
    run_as(s_);
    set_regs(s_, Sys::ReplyRecv, sh_, info(55), {3, 3, 3, 3});
    ASSERT_EQ(fast(s_).frame, &frame(s_));  // C answered in passing
    (void)save();
    uint32_t refs = ep_->refs();
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_EQ(sched().current(), c_);
    EXPECT_FALSE(c_->ipc->endpoint_ref);
    EXPECT_EQ(ep_->refs(), refs);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(55), {3, 3, 3, 3}));
}

TEST_F(FastPathTest, RecvWithATimedOutCallerNextMisses) {
    run_as(c_);
    set_regs(c_, Sys::Call, ch_, info(49), {1, 2, 3, 4}, 2 * kMs);
    ASSERT_EQ(stub(c_), Path::GaveStackUp);  // no receiver: queued
    for (int i = 0; i < 3; ++i) sched().on_timer_tick();
    ASSERT_EQ(c_->state, ThreadState::Ready);  // timed out, at its frame
    run_as(s_);
    set_regs(s_, Sys::Recv, sh_);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::TimedOut));
}

TEST_F(FastPathTest, RecvWithTheNextThreadAskedToExitMisses) {
    ASSERT_NO_FATAL_FAILURE(answer_in_passing(51, {2, 2, 2, 2}));
    sched().kill(*c_);  // Ready: it ends when it runs
    (void)save();
    set_regs(s_, Sys::Recv, sh_);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    resume_and_exit(c_);
}

// What Recv would take or drop, and a timeout, are the general path's.
TEST_F(FastPathTest, RecvThatWouldNotBlockOrHasATimeoutMisses) {
    Process* d = make_process("D");
    Thread* c2 = make_thread(d, "C2");
    HandleValue dh = insert(d, ep_, abi::kRightSend);
    pending_call();
    // A pending call it would drop (the general path fails it PeerDied).
    set_regs(s_, Sys::Recv, sh_);
    expect_miss(s_);
    // A timeout.
    (void)save();
    set_regs(s_, Sys::Recv, sh_, 0, {}, 5 * kMs);
    expect_miss(s_);
    // A queued caller: taken at once.
    run_as(c2);
    set_regs(c2, Sys::Call, dh, info(52), {5, 5, 5, 5});
    ASSERT_EQ(stub(c2), Path::GaveStackUp);
    run_as(s_);
    set_regs(s_, Sys::Recv, sh_);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, 0, info(52) | kCallBit, {5, 5, 5, 5}));
    // Through a handle without the Receive right.
    (void)save();
    set_regs(s_, Sys::Recv, insert(a_, ep_, abi::kRightSend));
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::NoRights));
}

// The guards below each have a test of their own, set up so that every
// other condition of the fast Recv holds (in the first three, C, answered
// in passing, waits Ready at its frame first in line, and S has saved its
// pending call). So each test misses only because of its one guard: a fast
// path without it would resume the next thread, and the test fails.

// A notice queued on the endpoint is the receive's to take at once, which
// only the general path does: blocking S would leave it there.
TEST_F(FastPathTest, RecvWithANoticeQueuedMisses) {
    const Words w = {92, 93, 94, 95};
    ASSERT_NO_FATAL_FAILURE(answer_in_passing(92, w));
    (void)save();
    Notice* n = knew<Notice>();
    ASSERT_NE(n, nullptr);
    n->msg.label = abi::kLabelLastHandle;
    n->msg.words[0] = 96;
    n->badge = 9;
    ASSERT_FALSE(ep_->post_notice(n));  // S runs, nobody waits: queued
    set_regs(s_, Sys::Recv, sh_);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);  // takes the notice at once
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, 9, abi::kLabelLastHandle, {96, 0, 0, 0}));
    EXPECT_EQ(ep_->waiting_receivers(), 0u);
    EXPECT_TRUE(c_->lent_quantum);  // still first in line
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(92), w));
}

// A destroyed endpoint refuses the receive (Destroyed): the fast path must
// not block S on a queue nothing will ever send to.
TEST_F(FastPathTest, RecvOnADeadEndpointMisses) {
    const Words w = {93, 94, 95, 96};
    ASSERT_NO_FATAL_FAILURE(answer_in_passing(93, w));
    (void)save();
    destroy_endpoint();
    set_regs(s_, Sys::Recv, sh_);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Destroyed));
    EXPECT_EQ(s_->state, ThreadState::Running);
    EXPECT_FALSE(s_->ipc->endpoint_ref);
    EXPECT_EQ(ep_->waiting_receivers(), 0u);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(93), w));
}

// With the quantum used up, the scheduler does not let the hand-off queue
// go first: C goes to the back of the ready queue with the others
// (schedule_locked()). The fast path, which would run C on what is left of
// a quantum, leaves that to the general path.
TEST_F(FastPathTest, RecvWithTheQuantumUsedUpMisses) {
    const Words w = {94, 95, 96, 97};
    ASSERT_NO_FATAL_FAILURE(answer_in_passing(94, w));
    (void)save();
    for (uint32_t i = 0; i < Scheduler::kQuantumTicks; ++i) sched().on_timer_tick();
    set_regs(s_, Sys::Recv, sh_);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    EXPECT_EQ(s_->state, ThreadState::Blocked);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_FALSE(c_->lent_quantum);    // no longer first in line
    EXPECT_NE(sched().current(), c_);  // it waits its turn behind the others
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(94), w));
}

// Handles in the next thread's message go into its table on its way back
// (complete_ipc()), which the fast path's resume does not do: C, answered
// with a handle, is resumed by the general path. (The reply with a handle
// takes the general path too, which wakes C without handing it the CPU:
// it is put first in line as the handle-less answer in passing does.)
TEST_F(FastPathTest, RecvWithHandlesForTheNextThreadMisses) {
    Process* d = make_process("D");
    Thread* c2 = make_thread(d, "C2");
    HandleValue dh = insert(d, ep_, abi::kRightSend);
    ASSERT_NO_FATAL_FAILURE(pending_call());
    run_as(c2);
    set_regs(c2, Sys::Call, dh, info(195), {1, 1, 1, 1});
    ASSERT_EQ(stub(c2), Path::GaveStackUp);  // S is busy: queued
    run_as(s_);
    buffer(s_).handles[0] = insert(a_, ep_, abi::kRightSend);
    buffer(s_).handle_flags[0] = abi::kTransferMove;
    const Words w = {95, 96, 97, 98};
    set_regs(s_, Sys::ReplyRecv, sh_, info(95, 0, 1), w);
    ASSERT_EQ(stub(s_), Path::Returned);  // C answered, C2's call taken
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, 0, info(195) | kCallBit, {1, 1, 1, 1}));
    ASSERT_EQ(c_->state, ThreadState::Ready);
    ASSERT_TRUE(c_->at_frame);
    ASSERT_EQ(c_->ipc->msg.handle_count, 1u);
    {
        LockGuard guard(sched().lock());
        sched().hand_off_locked(*c_);
    }
    ASSERT_TRUE(c_->lent_quantum);  // first in line
    (void)save();
    uint32_t handles = b_->handles().count();
    set_regs(s_, Sys::Recv, sh_);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    EXPECT_EQ(sched().current(), c_);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(95, 0, 1), w));
    EXPECT_EQ(b_->handles().count(), handles + 1);
    EXPECT_NE(buffer(c_).handles[0], abi::kNoHandle);
}

// A thread whose Recv replaced a pending call it never answered drops that
// call on its way back (complete_ipc(): the caller fails with PeerDied),
// which the fast path's resume does not do. S, holding C's call, waits in
// Recv and a notice wakes it; then C2's Recv on its own endpoint blocks
// with S first in line. (The notice's donation is left out: a donation
// target is a miss of its own.)
TEST_F(FastPathTest, RecvWithASupersededCallForTheNextThreadMisses) {
    Process* d = make_process("D");
    Thread* c2 = make_thread(d, "C2");
    Endpoint* own = nullptr;
    HandleValue oh = created_endpoint(d, &own);
    ASSERT_NO_FATAL_FAILURE(pending_call());
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    ASSERT_TRUE(s_->ipc->superseded.valid());  // C's call, unanswered
    run_as(c2);
    Notice* n = knew<Notice>();
    ASSERT_NE(n, nullptr);
    n->msg.label = abi::kLabelLastHandle;
    n->msg.words[0] = 97;
    n->badge = 11;
    ASSERT_TRUE(ep_->post_notice(n));  // S is Ready at its frame
    {
        LockGuard guard(sched().lock());
        sched().set_donate_target_locked(nullptr);
        sched().hand_off_locked(*s_);
    }
    ASSERT_TRUE(s_->lent_quantum);  // first in line
    ASSERT_EQ(s_->state, ThreadState::Ready);
    ASSERT_TRUE(s_->at_frame);
    set_regs(c2, Sys::Recv, oh);
    expect_miss(c2);
    ASSERT_EQ(s_->state, ThreadState::Ready);  // not resumed: no use going on
    ASSERT_EQ(general(c2), Path::GaveStackUp);
    EXPECT_EQ(own->waiting_receivers(), 1u);
    EXPECT_EQ(sched().current(), s_);
    EXPECT_TRUE(frame_holds(resume(s_), Err::Ok, 11, abi::kLabelLastHandle, {97, 0, 0, 0}));
    EXPECT_FALSE(s_->ipc->superseded.valid());
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::PeerDied));
}

// Killed while it waits Ready at its frame after a fast Reply, the replier
// ends on its way back to user mode; the caller has its reply.
TEST_F(FastPathTest, ReplierKilledWhileReadyAtItsFrameEnds) {
    pending_call();
    HandleValue saved = save();
    set_regs(s_, Sys::Reply, saved, info(81), {1, 2, 3, 4});
    ASSERT_EQ(stub(s_), Path::FastHit);
    ASSERT_EQ(s_->state, ThreadState::Ready);
    sched().kill(*s_);
    EXPECT_EQ(s_->state, ThreadState::Ready);  // it ends when it runs
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(81), {1, 2, 3, 4}));
    sched().yield_now();  // C lets it run
    resume_and_exit(s_);
}

// Any thread of the server process may answer a saved reply (a worker
// pool): the Reply object stays with the thread that answered.
TEST_F(FastPathTest, AnotherWorkerAnswersTheSavedReply) {
    Thread* s2 = make_thread(a_, "S2");
    pending_call();
    HandleValue saved = save();
    run_as(s2);
    set_regs(s2, Sys::Reply, saved, info(82), {5, 6, 7, 8});
    ASSERT_EQ(stub(s2), Path::FastHit);
    EXPECT_EQ(sched().current(), c_);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(82), {5, 6, 7, 8}));
    EXPECT_NE(s2->ipc->spare_reply, nullptr);
    EXPECT_EQ(s_->ipc->spare_reply, nullptr);
    sched().yield_now();
    EXPECT_EQ(resume(s2).rax, uint64_t(Err::Ok));
}

TEST_F(FastPathTest, SavedReplyWithPayloadHits) {
    pending_call();
    HandleValue saved = save();
    const char payload[24] = "twenty-three bytes long";
    std::memcpy(buffer(s_).payload, payload, sizeof payload);
    std::memset(buffer(c_).payload, 0x5A, sizeof buffer(c_).payload);
    set_regs(s_, Sys::Reply, saved, info(71, 23), {1, 2, 3, 4});
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(71, 23), {1, 2, 3, 4}));
    EXPECT_EQ(std::memcmp(buffer(c_).payload, payload, 23), 0);
    EXPECT_EQ(buffer(c_).payload[23], 0x5A) << "a byte past the length was copied";
}

// A caller that queued on the endpoint (the general path) holds its call's
// reference to it: the fast path drops it, as complete_ipc() would.
TEST_F(FastPathTest, SavedReplyToGeneralPathCallerHits) {
    run_as(c_);
    set_regs(c_, Sys::Call, ch_, info(15), {1, 2, 3, 4});
    ASSERT_EQ(stub(c_), Path::GaveStackUp);  // no receiver: queued
    run_as(s_);
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::Returned);
    ASSERT_EQ(c_->ipc->endpoint_ref.get(), ep_);
    HandleValue saved = save();
    set_regs(s_, Sys::Reply, saved, info(72), {5, 6, 7, 8});
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(72), {5, 6, 7, 8}));
    EXPECT_FALSE(c_->ipc->endpoint_ref);
    EXPECT_EQ(ep_->refs(), base_refs_);
}

// ...unless it is the endpoint's last reference, which the fast path may
// not drop under its locks.
TEST_F(FastPathTest, SavedReplyHoldingTheLastEndpointReferenceMisses) {
    run_as(c_);
    set_regs(c_, Sys::Call, ch_, info(15), {1, 2, 3, 4});
    ASSERT_EQ(stub(c_), Path::GaveStackUp);
    run_as(s_);
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::Returned);
    HandleValue saved = save();
    // Every other reference goes: the handles and the creator's.
    ASSERT_EQ(a_->handles().remove(sh_), Error::None);
    ASSERT_EQ(b_->handles().remove(ch_), Error::None);
    ep_destroyed_ = true;
    Endpoint::destroy(ep_);
    ASSERT_EQ(ep_->refs(), 1u);
    set_regs(s_, Sys::Reply, saved, info(73), {5, 6, 7, 8});
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::SwitchedAway);  // answered; C runs
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(73), {5, 6, 7, 8}));
}

// The Reply object would have nowhere to go: the general path frees it.
TEST_F(FastPathTest, SavedReplyWithASpareAlreadyMisses) {
    Thread* c2 = make_thread(b_, "C2");
    server_waits();
    fast_call(1, {1, 2, 3, 4});
    HandleValue first = save();
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    fast_call(2, {1, 2, 3, 4}, c2);
    HandleValue second = save();
    set_regs(s_, Sys::Reply, first, info(74), {5, 6, 7, 8});
    ASSERT_EQ(stub(s_), Path::FastHit);
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(74), {5, 6, 7, 8}));
    sched().yield_now();
    EXPECT_EQ(resume(s_).rax, uint64_t(Err::Ok));
    ASSERT_NE(s_->ipc->spare_reply, nullptr);
    set_regs(s_, Sys::Reply, second, info(75), {9, 10, 11, 12});
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::SwitchedAway);
    EXPECT_TRUE(frame_holds(resume(c2), Err::Ok, 0, info(75), {9, 10, 11, 12}));
}

// A copy of the handle holds the object too: closing one handle is not
// the end of it, which the fast path does not handle.
TEST_F(FastPathTest, SavedReplyWithAnotherHandleMisses) {
    pending_call();
    HandleValue saved = save();
    Result<HandleValue> copy = a_->handles().mint(saved, abi::kRightsAll, 0, nullptr);
    ASSERT_TRUE(copy);
    set_regs(s_, Sys::Reply, saved, info(76), {5, 6, 7, 8});
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::SwitchedAway);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(76), {5, 6, 7, 8}));
    EXPECT_EQ(a_->handles().remove(copy.value()), Error::None);
}

TEST_F(FastPathTest, ReplyThroughBadHandlesMisses) {
    pending_call();
    HandleValue saved = save();
    for (uint64_t h : {uint64_t(abi::kNoHandle), uint64_t(sh_), uint64_t(stale_handle(a_)),
                       uint64_t(saved) | (uint64_t{1} << 40)}) {
        set_regs(s_, Sys::Reply, h, info(77), {5, 6, 7, 8});
        expect_miss(s_);
    }
    EXPECT_EQ(c_->state, ThreadState::Blocked);
    set_regs(s_, Sys::Reply, saved, info(77), {5, 6, 7, 8});
    ASSERT_EQ(stub(s_), Path::FastHit);
}

TEST_F(FastPathTest, SavedReplyWithHandlesOrReservedBitsMisses) {
    pending_call();
    HandleValue saved = save();
    set_regs(s_, Sys::Reply, saved, info(78, 0, 1), {5, 6, 7, 8});
    expect_miss(s_);
    set_regs(s_, Sys::Reply, saved, info(78, abi::kMaxPayload + 1), {5, 6, 7, 8});
    expect_miss(s_);
    set_regs(s_, Sys::Reply, saved, abi::kLabelLastHandle, {5, 6, 7, 8});
    expect_miss(s_);
    // A Reply has no timeout: whatever a6 holds, it hits.
    set_regs(s_, Sys::Reply, saved, info(78), {5, 6, 7, 8}, 0);
    ASSERT_EQ(stub(s_), Path::FastHit);
}

TEST_F(FastPathTest, SavedReplyToTimedOutCallerMisses) {
    server_waits();
    run_as(c_);
    set_regs(c_, Sys::Call, ch_, info(38), {1, 2, 3, 4}, 2 * kMs);
    ASSERT_EQ(stub(c_), Path::GaveStackUp);
    EXPECT_EQ(resume(s_).rax, uint64_t(Err::Ok));
    HandleValue saved = save();
    for (int i = 0; i < 2; ++i) sched().on_timer_tick();
    EXPECT_EQ(c_->state, ThreadState::Ready);  // its call timed out
    set_regs(s_, Sys::Reply, saved, info(79), {5, 6, 7, 8});
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::BadHandle));
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::TimedOut));
}

TEST_F(FastPathTest, SavedReplyWithFastPathOrDonationOffMisses) {
    pending_call();
    HandleValue saved = save();
    set_regs(s_, Sys::Reply, saved, info(80), {5, 6, 7, 8});
    ipc_set_fast_path(false);
    expect_miss(s_);
    ipc_set_fast_path(true);
    sched().set_donation_enabled(false);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);  // wakes C, no donation
    EXPECT_EQ(c_->state, ThreadState::Ready);
}

TEST_F(FastPathTest, SavedReplyWithDonationOffOnlyWakes) {
    pending_call();
    sched().set_donation_enabled(false);
    set_regs(s_, Sys::ReplySave, abi::kNoHandle);
    ASSERT_EQ(general(s_), Path::Returned);
    uint64_t saved = frame(s_).rdi;
    const Words w = {380, 381, 382, 383};
    set_regs(s_, Sys::Reply, saved, info(68), w);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Ok));
    EXPECT_EQ(sched().current(), s_);
    EXPECT_EQ(c_->state, ThreadState::Ready);
    EXPECT_EQ(sched().counters().donations_taken, 0u);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(68), w));
}

// A busy server: its ReplyRecv finds the next call queued. The fast path
// does what the general path does: it answers C, which runs as soon as S
// stops (ahead of the ready queue), and S goes on at once with C2's call,
// returning from its own frame.
TEST_F(FastPathTest, ReplyRecvWithQueuedCallerTakesItAtOnce) {
    // C2 in a process of its own: its IPC buffer is not C's.
    Process* d = make_process("D");
    Thread* c2 = make_thread(d, "C2");
    HandleValue dh = insert(d, ep_, abi::kRightSend);
    pending_call();
    run_as(c2);
    const Words w2 = {170, 171, 172, 173};
    const char payload2[10] = "from C2..";
    std::memcpy(buffer(c2).payload, payload2, sizeof payload2);
    set_regs(c2, Sys::Call, dh, info(41, 9), w2);
    ASSERT_EQ(stub(c2), Path::GaveStackUp);  // S is busy: queued
    EXPECT_EQ(ep_->waiting_senders(), 1u);
    run_as(s_);
    const Words w = {180, 181, 182, 183};
    const char payload[13] = "reply to C..";
    std::memcpy(buffer(s_).payload, payload, sizeof payload);
    set_regs(s_, Sys::ReplyRecv, sh_, info(42, 12), w);
    uint64_t wakeups = sched().counters().wakeups;
    ASSERT_EQ(fast(s_).frame, &frame(s_));
    EXPECT_EQ(sched().current(), s_);
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, 0, info(41, 9) | kCallBit, w2));
    EXPECT_EQ(std::memcmp(buffer(s_).payload, payload2, 9), 0);
    EXPECT_EQ(s_->ipc->reply.caller, c2->id());
    EXPECT_EQ(c2->waiting_on, &s_->ipc->callers);
    EXPECT_EQ(ep_->waiting_senders(), 0u);
    EXPECT_EQ(c_->state, ThreadState::Ready);
    EXPECT_TRUE(c_->lent_quantum);
    EXPECT_EQ(sched().counters().wakeups, wakeups + 1);
    EXPECT_EQ(ipc_counters().syscall_fastpath_hits, 2u);  // C's call, and this
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(42, 12), w));
    EXPECT_EQ(std::memcmp(buffer(c_).payload, payload, 12), 0);
    reply_general(s_, 43, {190, 191, 192, 193});
    EXPECT_TRUE(frame_holds(resume(c2), Err::Ok, 0, info(43), {190, 191, 192, 193}));
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);  // D's handle
}

// The last handle that may receive on an endpoint goes (closed here; a
// server's death closes it the same way): the caller queued there wakes
// with Destroyed, and a later call fails at once.
TEST_F(FastPathTest, LastReceiveHandleGoneEndsQueuedCall) {
    Endpoint* ep2 = nullptr;
    HandleValue rh = created_endpoint(a_, &ep2);
    HandleValue ch = insert(b_, ep2, abi::kRightSend);
    // A copy that cannot receive does not keep it open.
    Result<HandleValue> sender = a_->handles().mint(rh, abi::kRightSend, 0, nullptr);
    ASSERT_TRUE(sender);
    run_as(c_);
    set_regs(c_, Sys::Call, ch, info(50), {1, 2, 3, 4});
    ASSERT_EQ(stub(c_), Path::GaveStackUp);  // no receiver: queued
    ASSERT_EQ(ep2->waiting_senders(), 1u);
    ASSERT_EQ(a_->handles().remove(rh), Error::None);
    EXPECT_EQ(c_->state, ThreadState::Ready);
    EXPECT_EQ(ep2->waiting_senders(), 0u);
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::Destroyed));
    set_regs(c_, Sys::Call, ch, info(51), {1, 2, 3, 4});
    ASSERT_EQ(stub(c_), Path::Returned);
    EXPECT_EQ(frame(c_).rax, uint64_t(Err::Destroyed));
    EXPECT_EQ(a_->handles().remove(sender.value()), Error::None);
    EXPECT_EQ(b_->handles().remove(ch), Error::None);  // the endpoint goes with it
}

// A copy that may receive keeps the endpoint open when the first goes.
TEST_F(FastPathTest, ACopyWithTheReceiveRightKeepsTheEndpointOpen) {
    Endpoint* ep2 = nullptr;
    HandleValue rh = created_endpoint(a_, &ep2);
    Result<HandleValue> copy =
        a_->handles().mint(rh, abi::kRightReceive | abi::kRightSend, 0, nullptr);
    ASSERT_TRUE(copy);
    EXPECT_EQ(a_->handles().mint(rh, abi::kRightReceive, 7, nullptr).error(),
              Error::InvalidArgument);  // a receiver carries no badge
    ASSERT_EQ(a_->handles().remove(rh), Error::None);
    run_as(s_);
    set_regs(s_, Sys::Call, copy.value(), info(52), {1, 2, 3, 4}, abi::kNoWait);
    ASSERT_EQ(stub(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::WouldBlock));  // open: nobody waiting
    ASSERT_EQ(a_->handles().remove(copy.value()), Error::None);
}

// A plain Send queued: it completes on the receive, which the general
// path does.
TEST_F(FastPathTest, ReplyRecvWithQueuedSendMisses) {
    Thread* c2 = make_thread(b_, "C2");
    pending_call();
    run_as(c2);
    const Words w2 = {170, 171, 172, 173};
    set_regs(c2, Sys::Send, ch_, info(41), w2);
    ASSERT_EQ(stub(c2), Path::GaveStackUp);  // S is busy: queued
    run_as(s_);
    const Words w = {180, 181, 182, 183};
    set_regs(s_, Sys::ReplyRecv, sh_, info(42), w);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, kBadge, info(41), w2));
    EXPECT_EQ(c2->state, ThreadState::Ready);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(42), w));
    EXPECT_EQ(resume(c2).rax, uint64_t(Err::Ok));
    EXPECT_EQ(ep_->refs(), base_refs_);
}

TEST_F(FastPathTest, ReplyRecvWithQueuedNoticeMisses) {
    pending_call();
    Notice* n = knew<Notice>();
    ASSERT_NE(n, nullptr);
    n->msg.label = abi::kLabelLastHandle;
    n->msg.words[0] = 77;
    n->badge = 5;
    ep_->post_notice(n);  // nobody waiting: queued
    const Words w = {200, 201, 202, 203};
    set_regs(s_, Sys::ReplyRecv, sh_, info(44), w);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);  // answers C, takes the notice at once
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, 5, abi::kLabelLastHandle, {77, 0, 0, 0}));
    EXPECT_TRUE(c_->lent_quantum);  // C runs as soon as S stops
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(44), w));
    EXPECT_EQ(ep_->refs(), base_refs_);
}

// On a dead endpoint the receive is refused (Destroyed), but the reply
// needs nothing of the endpoint: it goes out in every form of ReplyRecv, so
// the caller is never left waiting for an answer that was ready.
TEST_F(FastPathTest, ReplyRecvOnDeadEndpointMissesAndStillReplies) {
    pending_call();
    destroy_endpoint();
    const Words w = {370, 371, 372, 373};
    set_regs(s_, Sys::ReplyRecv, sh_, info(45), w);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Destroyed));
    EXPECT_FALSE(s_->ipc->reply.valid());
    EXPECT_EQ(ep_->refs(), base_refs_ - 1);
    ASSERT_EQ(c_->state, ThreadState::Ready);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(45), w));
}

// The same for the non-blocking form, which replies first and then finds
// the endpoint dead.
TEST_F(FastPathTest, TryReplyRecvOnDeadEndpointStillReplies) {
    pending_call();
    destroy_endpoint();
    const Words w = {380, 381, 382, 383};
    set_regs(s_, Sys::ReplyRecv, sh_, info(67), w, abi::kNoWait);
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Destroyed));
    ASSERT_EQ(c_->state, ThreadState::Ready);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(67), w));
}

TEST_F(FastPathTest, NoticeCompletesServerBlockedByFastReplyRecv) {
    fast_round_trip();
    Notice* n = knew<Notice>();
    ASSERT_NE(n, nullptr);
    n->msg.label = abi::kLabelChildDied;
    n->msg.words[0] = 12;
    n->msg.words[1] = 34;
    n->badge = 99;
    ep_->post_notice(n);
    EXPECT_EQ(s_->state, ThreadState::Ready);
    EXPECT_TRUE(frame_holds(resume(s_), Err::Ok, 99, abi::kLabelChildDied, {12, 34, 0, 0}));
    EXPECT_EQ(ep_->refs(), base_refs_);
}

// A notice posted with Donate::Yes (a death's: its poster yields next)
// wakes its receiver and the poster's yield donates to it, ahead of
// whatever else is Ready. Without (a last handle closed, whose poster
// cannot yield there) it only wakes it: no target is left behind.
TEST_F(FastPathTest, ANoticeDonatesToTheReceiverItWakes) {
    fast_round_trip();             // C runs, S waits at its frame
    Thread* busy = spawn("busy");  // Ready, ahead of S
    Notice* n = knew<Notice>();
    ASSERT_NE(n, nullptr);
    n->msg.label = abi::kLabelLastHandle;
    n->badge = 7;
    ep_->post_notice(n, Donate::Yes);
    ASSERT_EQ(s_->state, ThreadState::Ready);
    sched().yield_to_donate_target();
    EXPECT_EQ(sched().current(), s_);
    EXPECT_EQ(busy->state, ThreadState::Ready);
    EXPECT_TRUE(frame_holds(resume(s_), Err::Ok, 7, abi::kLabelLastHandle, {0, 0, 0, 0}));
}

// A last-handle notice (BadgeTracker::free_object, whose poster cannot
// yield there) only wakes its receiver: no donate target is left for a
// later yield, interrupt or direct switch to find.
TEST_F(FastPathTest, ANoticeWithoutDonationLeavesNoTarget) {
    fast_round_trip();  // C runs, S waits at its frame
    Thread* busy = spawn("busy");
    Notice* n = knew<Notice>();
    ASSERT_NE(n, nullptr);
    n->msg.label = abi::kLabelLastHandle;
    ASSERT_TRUE(ep_->post_notice(n));
    ASSERT_EQ(s_->state, ThreadState::Ready);
    unsigned yields = FakeCpu::yield_vectors;
    sched().yield_to_donate_target();
    EXPECT_EQ(FakeCpu::yield_vectors, yields);
    sched().preempt_if_needed(true);  // nothing due: C goes on
    EXPECT_EQ(sched().current(), c_);
    EXPECT_EQ(busy->state, ThreadState::Ready);
}

// A user thread that exits hands the rest of its quantum to the reaper,
// which ends its process and tells the supervisor at once, rather than
// after every Ready thread's turn.
TEST_F(FastPathTest, AnExitingUserThreadDonatesToTheReaper) {
    Thread* busy = spawn("busy");
    run_as(c_);
    ASSERT_EQ(busy->state, ThreadState::Ready);
    FakeCpu::no_return_from = &c_->context;
    EXPECT_THROW(sched().exit_current(), FakeCpu::NoReturn);
    FakeCpu::no_return_from = nullptr;
    EXPECT_EQ(sched().current(), reaper_);
    EXPECT_EQ(busy->state, ThreadState::Ready);
}

// S blocked at its frame by a fast ReplyRecv; a call with a timeout misses
// the syscall fast path and takes the endpoint's own direct switch to S.
TEST_F(FastPathTest, EndpointDirectSwitchCompletesServerBlockedByFastReplyRecv) {
    fast_round_trip();
    const Words w = {310, 311, 312, 313};
    set_regs(c_, Sys::Call, ch_, info(59), w, 10 * kMs);
    uint64_t direct = sched().counters().direct_switches;
    ASSERT_EQ(stub(c_), Path::GaveStackUp);
    EXPECT_EQ(sched().current(), s_);
    EXPECT_EQ(sched().counters().direct_switches, direct + 1);
    EXPECT_TRUE(frame_holds(resume(s_), Err::Ok, kBadge, info(59) | kCallBit, w));
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);  // C's call
    reply_general(s_, 60, {320, 321, 322, 323});
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(60), {320, 321, 322, 323}));
    EXPECT_EQ(ep_->refs(), base_refs_);
}

// S blocked at its frame by the general path's ReplyRecv (with a timeout,
// through the endpoint's own direct switch); a fast Call completes it and
// its timeout goes.
TEST_F(FastPathTest, FastCallCompletesServerBlockedByGeneralReplyRecv) {
    pending_call();
    set_regs(s_, Sys::ReplyRecv, sh_, info(57), {1, 1, 1, 1}, 5 * kMs);
    ASSERT_EQ(stub(s_), Path::GaveStackUp);
    EXPECT_TRUE(frame_holds(resume(c_), Err::Ok, 0, info(57), {1, 1, 1, 1}));
    EXPECT_TRUE(s_->at_frame);
    EXPECT_TRUE(s_->timeout_hook.is_linked());
    EXPECT_EQ(s_->ipc->endpoint_ref.get(), ep_);
    const Words w = {300, 301, 302, 303};
    set_regs(c_, Sys::Call, ch_, info(58), w);
    ASSERT_EQ(fast(c_).frame, &frame(s_));
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, kBadge, info(58) | kCallBit, w));
    EXPECT_FALSE(s_->timeout_hook.is_linked());
    EXPECT_EQ(ep_->refs(), base_refs_);
    for (int i = 0; i < 20; ++i) sched().on_timer_tick();
    EXPECT_EQ(s_->state, ThreadState::Running);
    EXPECT_EQ(c_->state, ThreadState::Blocked);
    EXPECT_EQ(ipc_counters().timeouts, 0u);
}

// --- Killing a thread blocked at its frame ---

TEST_F(FastPathTest, KilledServerBlockedByFastReplyRecvEnds) {
    fast_round_trip();
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);
    sched().kill(*s_);
    EXPECT_EQ(s_->state, ThreadState::Ready);
    EXPECT_EQ(ep_->waiting_receivers(), 0u);
    resume_and_exit(s_);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Interrupted));
    EXPECT_FALSE(s_->ipc->endpoint_ref);
    EXPECT_EQ(ep_->refs(), base_refs_);
    reap();  // A's last thread: A ends, and its handle goes
    EXPECT_TRUE(a_->dead());
    EXPECT_EQ(ep_->refs(), base_refs_ - 1);
}

TEST_F(FastPathTest, KilledClientBlockedByFastCallEnds) {
    pending_call();
    sched().kill(*c_);
    EXPECT_EQ(c_->state, ThreadState::Ready);
    EXPECT_TRUE(s_->ipc->callers.empty());
    // S's answer finds nobody: a miss, and the general path drops it.
    set_regs(s_, Sys::ReplyRecv, sh_, info(59), {1, 2, 3, 4});
    expect_miss(s_);
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    resume_and_exit(c_);
    EXPECT_EQ(frame(c_).rax, uint64_t(Err::Interrupted));
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);  // S's receive
    reap();
    EXPECT_TRUE(b_->dead());
    EXPECT_EQ(ep_->refs(), base_refs_);
}

// ProcessKill of the server's process: S, blocked at its frame, ends, and
// the caller it held fails with PeerDied.
TEST_F(FastPathTest, ProcessKillEndsServerAndFailsItsCaller) {
    pending_call();
    set_regs(s_, Sys::Recv, sh_);  // S waits for more, C's call unanswered
    ASSERT_EQ(general(s_), Path::GaveStackUp);
    run_as(boot_);
    a_->kill(abi::kStatusKilled);
    EXPECT_EQ(s_->state, ThreadState::Ready);
    resume_and_exit(s_);
    EXPECT_EQ(frame(s_).rax, uint64_t(Err::Interrupted));
    EXPECT_EQ(ep_->refs(), base_refs_);
    EXPECT_EQ(resume(c_).rax, uint64_t(Err::PeerDied));
    reap();
    EXPECT_TRUE(a_->dead());
    EXPECT_EQ(a_->exit_status(), abi::kStatusKilled);
    EXPECT_EQ(ep_->refs(), base_refs_ - 1);
}

TEST_F(FastPathTest, DestroyedEndpointWakesServerBlockedByFastReplyRecv) {
    fast_round_trip();
    destroy_endpoint();
    EXPECT_EQ(s_->state, ThreadState::Ready);
    EXPECT_EQ(ep_->refs(), base_refs_);  // two handles and S's receive
    EXPECT_EQ(resume(s_).rax, uint64_t(Err::Destroyed));
    EXPECT_EQ(ep_->refs(), base_refs_ - 1);
}

// A blocking Send with no receiver blocks at its frame; a receive completes
// it, and it returns with only its status changed.
TEST_F(FastPathTest, BlockingSendBlocksAtItsFrame) {
    run_as(c_);
    const Words w = {1000, 1001, 1002, 1003};
    set_regs(c_, Sys::Send, ch_, info(70), w);
    ASSERT_EQ(stub(c_), Path::GaveStackUp);
    EXPECT_EQ(c_->ipc->user_op, IpcState::UserOp::Send);
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);  // the send's own reference
    run_as(s_);
    set_regs(s_, Sys::Recv, sh_);
    ASSERT_EQ(general(s_), Path::Returned);
    EXPECT_TRUE(frame_holds(frame(s_), Err::Ok, kBadge, info(70), w));
    TrapFrame& f = resume(c_);
    EXPECT_EQ(f.rax, uint64_t(Err::Ok));
    EXPECT_EQ(f.rdx, 1000u);  // Send changes nothing but the status
    EXPECT_EQ(ep_->refs(), base_refs_);
}

// Call with kNoWait is no fast-path call (a timeout), but once delivered it
// waits for its reply at its frame like any call, and the reply is fast.
TEST_F(FastPathTest, NonBlockingCallWaitsForItsReplyAtItsFrame) {
    server_waits();
    run_as(c_);
    const Words w = {2000, 2001, 2002, 2003};
    set_regs(c_, Sys::Call, ch_, info(71), w, abi::kNoWait);
    expect_miss(c_);
    ASSERT_EQ(general(c_), Path::GaveStackUp);
    EXPECT_EQ(sched().current(), s_);
    EXPECT_TRUE(frame_holds(resume(s_), Err::Ok, kBadge, info(71) | kCallBit, w));
    set_regs(s_, Sys::ReplyRecv, sh_, info(72), {5, 6, 7, 8});
    ASSERT_EQ(fast(s_).frame, &frame(c_));
    EXPECT_TRUE(frame_holds(frame(c_), Err::Ok, 0, info(72), {5, 6, 7, 8}));
    EXPECT_FALSE(c_->ipc->endpoint_ref);
    EXPECT_EQ(ep_->refs(), base_refs_ + 1);
}

// With nobody to take it, Call with kNoWait returns WouldBlock at once and
// holds nothing afterwards.
TEST_F(FastPathTest, NonBlockingCallWithoutReceiverHoldsNothing) {
    run_as(c_);
    set_regs(c_, Sys::Call, ch_, info(73), {1, 2, 3, 4}, abi::kNoWait);
    expect_miss(c_);
    ASSERT_EQ(general(c_), Path::Returned);
    EXPECT_EQ(frame(c_).rax, uint64_t(Err::WouldBlock));
    EXPECT_FALSE(c_->at_frame);
    EXPECT_FALSE(c_->ipc->endpoint_ref);
    EXPECT_EQ(ep_->refs(), base_refs_);
}

// A delivered Send donates through the yield vector: the sender is Ready,
// not Blocked, so it keeps its stack (a normal switch) even at its frame.
TEST_F(FastPathTest, DeliveredSendYieldsKeepingItsStack) {
    server_waits();
    run_as(c_);
    set_regs(c_, Sys::Send, ch_, info(74), {9, 9, 9, 9});
    size_t left = FakeCpu::stacks_left;
    EXPECT_EQ(general(c_), Path::SwitchedAway);
    EXPECT_EQ(FakeCpu::stacks_left, left);
    EXPECT_EQ(c_->state, ThreadState::Ready);
    EXPECT_TRUE(frame_holds(resume(s_), Err::Ok, kBadge, info(74), {9, 9, 9, 9}));
    finish_kept_syscall(c_);
}

}  // namespace
}  // namespace mk
