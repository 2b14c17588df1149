// The syscall layer's decoding under hostile arguments: every refused call
// returns the exact error and leaves the caller's process as it was (its
// handles, its mapped pages, its registered IPC buffer). The calls go
// through mk::handle_syscall() with crafted registers, from a thread of a
// real Process whose user memory lives in host frames (tests/unit/fake).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "cpu.hpp"
#include "endpoint.hpp"
#include "kernel.hpp"
#include "mk/abi.hpp"
#include "object/boot_modules.hpp"
#include "object/handle_table.hpp"
#include "percpu.hpp"
#include "process.hpp"
#include "sched_fixture.hpp"
#include "seed.hpp"
#include "syscall/entry.hpp"
#include "thread.hpp"
#include "trap_frame.hpp"

namespace mk {
namespace {

using abi::Err;
using abi::Sys;

constexpr uint64_t kPage = abi::kPageSize;
// The caller's memory: kDataPages read-write pages (the first one is the
// IPC buffer when a test registers it), then a hole, then a read-only page.
constexpr uint64_t kData = 0x10000000;
constexpr size_t kDataPages = 4;
constexpr uint64_t kDataEnd = kData + kDataPages * kPage;
constexpr uint64_t kReadOnly = kDataEnd + kPage;
constexpr uint64_t kKernelAddress = 0xFFFF800000000000;
constexpr uint64_t kNonCanonical = 0x0000800000000000;

struct Args {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = abi::kNoWait;
};

uint64_t info(uint32_t label, uint32_t length = 0, uint32_t handles = 0) {
    return abi::MsgInfo{label, length, handles, false}.encode();
}

// What a refused call must leave as it was.
struct Snapshot {
    uint32_t handles;
    size_t pages;
    size_t space_pages;
    uint64_t buffer;
    bool operator==(const Snapshot&) const = default;
};

class SyscallTest : public testing::SchedFixture {
  protected:
    void SetUp() override {
        SchedFixture::SetUp();
        frames_before_ = frame_allocator().free_count();
        spaces_before_ = FakeCpu::user_spaces();
        proc_ = Process::create("victim").value();
        ASSERT_EQ(proc_->map_anonymous(kData, kDataPages, abi::kProtRead | abi::kProtWrite),
                  Error::None);
        ASSERT_EQ(proc_->map_anonymous(kReadOnly, 1, abi::kProtRead), Error::None);
        Result<Thread*> t = proc_->create_thread("user", abi::kUserBase, 0, 0);
        ASSERT_TRUE(t.ok());
        user_ = t.value();
        process_threads_.push_back(user_);
        ASSERT_EQ(sched().start(*user_), Error::None);
        run_as(user_);
        ep_ = make_endpoint();
    }

    void TearDown() override {
        // Every thread of the process ends as on the machine: exit_current()
        // (which never returns: the fake throws NoReturn), then the reaper
        // destroys it; the last one ends the process, closing its handles
        // and freeing its memory.
        Thread* reaper = spawn("reaper");
        sched().set_reaper(*reaper);
        for (Thread* t : process_threads_) {
            run_as(t);
            FakeCpu::no_return_from = &t->context;
            try {
                sched().exit_current();
            } catch (const FakeCpu::NoReturn&) {
            }
            FakeCpu::no_return_from = nullptr;
        }
        for (size_t i = 0; i < process_threads_.size(); ++i) {
            run_as(reaper);
            Thread::destroy(sched().next_zombie());
        }
        run_as(boot_);
        EXPECT_TRUE(proc_->dead());
        proc_->release();
        SchedFixture::TearDown();
        EXPECT_EQ(FakeCpu::user_spaces(), spaces_before_);
        EXPECT_EQ(frame_allocator().free_count(), frames_before_);
    }

    // Acting as whichever thread is current, yield until `t` runs.
    void run_as(Thread* t) {
        for (int i = 0; sched().current() != t; ++i) {
            ASSERT_LT(i, 1000) << "thread " << t->name() << " never runs";
            yield();
        }
    }

    // A syscall from the user thread; the frame's results in `out`.
    Err call(uint64_t number, const Args& a, TrapFrame* out = nullptr) {
        EXPECT_EQ(sched().current(), user_);
        TrapFrame f{};
        f.rax = number;
        f.rdi = a.a0;
        f.rsi = a.a1;
        f.rdx = a.a2;
        f.r10 = a.a3;
        f.r8 = a.a4;
        f.r9 = a.a5;
        f.r12 = a.a6;
        handle_syscall(f);
        // A yield may have switched to another thread: back to the caller.
        run_as(user_);
        if (out != nullptr) *out = f;
        if (number == uint64_t(Sys::ThreadCreate) && f.rax == uint64_t(Err::Ok)) {
            Result<HandleEntry> e =
                proc_->handles().lookup(abi::HandleValue(f.rdi), ObjectType::Thread, 0);
            EXPECT_TRUE(e.ok());
            if (e) process_threads_.push_back(static_cast<Thread*>(e.value().object.get()));
        }
        return Err(f.rax);
    }
    Err call(Sys number, const Args& a, TrapFrame* out = nullptr) {
        return call(uint64_t(number), a, out);
    }

    abi::HandleValue make_endpoint() {
        TrapFrame f;
        EXPECT_EQ(call(Sys::EndpointCreate, {}, &f), Err::Ok);
        return abi::HandleValue(f.rdi);
    }
    abi::HandleValue mint(abi::HandleValue h, uint32_t rights, uint64_t badge = 0) {
        TrapFrame f;
        EXPECT_EQ(call(Sys::HandleMint, {.a0 = h, .a1 = rights, .a2 = badge}, &f), Err::Ok);
        return abi::HandleValue(f.rdi);
    }
    abi::HandleValue insert(KObject* object, uint32_t rights) {
        return proc_->handles().insert(Ref<KObject>::retain(object), rights).value();
    }
    bool holds(abi::HandleValue h) {
        return proc_->handles().lookup(h, ObjectType::Endpoint, 0).ok();
    }

    void set_buffer(uint64_t at = kData) {
        ASSERT_EQ(call(Sys::IpcBufferSet, {.a1 = at}), Err::Ok);
    }
    abi::IpcBuffer& buffer() {
        return *reinterpret_cast<abi::IpcBuffer*>(
            Cpu::frame_to_kernel(Cpu::user_frame(proc_->root(), kData, false).value()));
    }
    // Writes bytes into the caller's memory.
    void poke(uint64_t at, const void* bytes, size_t n) {
        ASSERT_EQ(proc_->copy_to_user(at, bytes, n), Error::None);
    }

    Snapshot snapshot() {
        return Snapshot{proc_->handles().count(), proc_->mapped_pages(),
                        FakeCpu::user_pages(proc_->root()), user_->ipc->user_buffer};
    }

    Process* proc_ = nullptr;
    Thread* user_ = nullptr;
    std::vector<Thread*> process_threads_;
    abi::HandleValue ep_ = 0;
    size_t frames_before_ = 0;
    size_t spaces_before_ = 0;
};

// Expects `expr` to return `err` and to change nothing.
#define EXPECT_REFUSED(err, expr)                    \
    do {                                             \
        Snapshot before_ = snapshot();               \
        EXPECT_EQ((expr), (err)) << #expr;           \
        EXPECT_TRUE(snapshot() == before_) << #expr; \
    } while (0)

// Generation 0 (0xFFFF, 5) names nothing; nor does an index past the table.
const uint64_t kBadHandles[] = {0, 0xFFFFFFFF, uint64_t{1} << 32, ~uint64_t{0}, 0xFFFF, 5, 0x1FFFE};

TEST_F(SyscallTest, UnknownNumbers) {
    for (uint64_t n :
         {uint64_t(Sys::Count), uint64_t{21}, uint64_t{999}, uint64_t{1} << 63, ~uint64_t{0}}) {
        EXPECT_REFUSED(Err::BadSyscall, call(n, {.a0 = ep_, .a1 = kData}));
    }
}

TEST_F(SyscallTest, HandleValuesThatNameNothing) {
    set_buffer();
    abi::HandleValue stale = make_endpoint();
    ASSERT_EQ(call(Sys::HandleClose, {.a0 = stale}), Err::Ok);
    std::vector<uint64_t> bad(std::begin(kBadHandles), std::end(kBadHandles));
    bad.push_back(stale);
    bad.push_back((uint64_t{1} << 32) | ep_);  // a real handle above 32 bits
    for (uint64_t h : bad) {
        for (Sys s : {Sys::Call, Sys::Send, Sys::Recv, Sys::ReplyRecv, Sys::HandleClose,
                      Sys::HandleMint, Sys::ProcessKill, Sys::ProcessSpawn}) {
            EXPECT_REFUSED(Err::BadHandle, call(s, {.a0 = h, .a1 = 0, .a2 = 1}));
        }
        if (h != 0) {
            EXPECT_REFUSED(Err::BadHandle, call(Sys::Yield, {.a0 = h}));
            EXPECT_REFUSED(Err::BadHandle, call(Sys::Reply, {.a0 = h}));
        }
    }
    // A second close.
    EXPECT_REFUSED(Err::BadHandle, call(Sys::HandleClose, {.a0 = stale}));
}

TEST_F(SyscallTest, HandlesOfTheWrongType) {
    Process* other = Process::create("other").value();
    abi::HandleValue proc =
        proc_->handles().insert(Ref<KObject>::adopt(other), abi::kRightsAll).value();
    abi::HandleValue thread = insert(user_, abi::kRightsAll);
    for (abi::HandleValue h : {proc, thread}) {
        for (Sys s : {Sys::Call, Sys::Send, Sys::Recv, Sys::ReplyRecv, Sys::Reply}) {
            EXPECT_REFUSED(Err::BadHandle, call(s, {.a0 = h}));
        }
        EXPECT_REFUSED(Err::BadHandle, call(Sys::ProcessSpawn, {.a0 = h, .a1 = kData}));
    }
    EXPECT_REFUSED(Err::BadHandle, call(Sys::ProcessKill, {.a0 = ep_}));
    EXPECT_REFUSED(Err::BadHandle, call(Sys::ProcessKill, {.a0 = thread}));
    EXPECT_REFUSED(Err::BadHandle, call(Sys::Yield, {.a0 = ep_}));
    EXPECT_REFUSED(Err::BadHandle, call(Sys::Yield, {.a0 = proc}));
    EXPECT_REFUSED(Err::BadHandle, call(Sys::Reply, {.a0 = ep_}));
    EXPECT_REFUSED(Err::BadHandle, call(Sys::ProcessSpawn, {.a0 = ep_, .a1 = kData}));
}

TEST_F(SyscallTest, MissingRights) {
    set_buffer();
    abi::HandleValue send_only = mint(ep_, abi::kRightSend | abi::kRightDuplicate);
    abi::HandleValue recv_only = mint(ep_, abi::kRightReceive);
    EXPECT_REFUSED(Err::NoRights, call(Sys::Recv, {.a0 = send_only}));
    EXPECT_REFUSED(Err::NoRights, call(Sys::ReplyRecv, {.a0 = send_only}));
    EXPECT_REFUSED(Err::NoRights, call(Sys::Send, {.a0 = recv_only}));
    EXPECT_REFUSED(Err::NoRights, call(Sys::Call, {.a0 = recv_only}));
    // Handles through an endpoint handle without Grant.
    buffer().handles[0] = ep_;
    buffer().handle_flags[0] = abi::kTransferMove;
    EXPECT_REFUSED(Err::NoRights, call(Sys::Send, {.a0 = send_only, .a1 = info(1, 0, 1)}));
    EXPECT_REFUSED(Err::NoRights, call(Sys::Call, {.a0 = send_only, .a1 = info(1, 0, 1)}));
    EXPECT_TRUE(holds(ep_));
    // Copying (in a message) or minting a handle without Duplicate.
    buffer().handles[0] = recv_only;
    buffer().handle_flags[0] = abi::kTransferCopy;
    EXPECT_REFUSED(Err::NoRights, call(Sys::Send, {.a0 = ep_, .a1 = info(1, 0, 1)}));
    EXPECT_TRUE(holds(recv_only));
    EXPECT_REFUSED(Err::NoRights,
                   call(Sys::HandleMint, {.a0 = recv_only, .a1 = abi::kRightReceive}));
    // Killing without Manage.
    Process* other = Process::create("other").value();
    abi::HandleValue proc =
        proc_->handles()
            .insert(Ref<KObject>::adopt(other), abi::kRightsAll & ~abi::kRightManage)
            .value();
    EXPECT_REFUSED(Err::NoRights, call(Sys::ProcessKill, {.a0 = proc}));
    EXPECT_FALSE(other->exiting());
}

TEST_F(SyscallTest, MalformedMessageInfo) {
    set_buffer();
    const uint64_t bad_bits[] = {uint64_t{1} << 42, uint64_t{1} << 43, uint64_t{1} << 47,
                                 uint64_t{1} << 48, uint64_t{1} << 63, ~uint64_t{0}};
    const uint32_t notices[] = {abi::kNoticeLabelBase, abi::kLabelLastHandle, abi::kLabelChildDied,
                                0xFFFFFFFF};
    for (Sys s : {Sys::Call, Sys::Send, Sys::ReplyRecv, Sys::Reply}) {
        for (uint64_t bits : bad_bits) {
            EXPECT_REFUSED(Err::InvalidArgument,
                           call(s, {.a0 = s == Sys::Reply ? 0 : ep_, .a1 = info(1) | bits}));
        }
        for (uint32_t label : notices) {
            EXPECT_REFUSED(Err::InvalidArgument,
                           call(s, {.a0 = s == Sys::Reply ? 0 : ep_, .a1 = info(label)}));
        }
        uint64_t a0 = s == Sys::Reply ? 0 : ep_;
        EXPECT_REFUSED(Err::TooLarge, call(s, {.a0 = a0, .a1 = info(1, abi::kMaxPayload + 1)}));
        EXPECT_REFUSED(Err::TooLarge, call(s, {.a0 = a0, .a1 = info(1, 1023)}));
        EXPECT_REFUSED(Err::TooLarge, call(s, {.a0 = a0, .a1 = info(1, 0, abi::kMaxHandles + 1)}));
        EXPECT_REFUSED(Err::TooLarge, call(s, {.a0 = a0, .a1 = info(1, 0, 7)}));
    }
}

TEST_F(SyscallTest, PayloadOrHandlesWithoutAnIpcBuffer) {
    for (Sys s : {Sys::Call, Sys::Send, Sys::ReplyRecv, Sys::Reply}) {
        uint64_t a0 = s == Sys::Reply ? 0 : ep_;
        EXPECT_REFUSED(Err::BadState, call(s, {.a0 = a0, .a1 = info(1, 1)}));
        EXPECT_REFUSED(Err::BadState, call(s, {.a0 = a0, .a1 = info(1, abi::kMaxPayload)}));
        EXPECT_REFUSED(Err::BadState, call(s, {.a0 = a0, .a1 = info(1, 0, 1)}));
    }
}

TEST_F(SyscallTest, BadHandleDescriptorsTakeNothing) {
    set_buffer();
    abi::HandleValue a = make_endpoint();
    abi::HandleValue b = make_endpoint();
    abi::HandleValue stale = make_endpoint();
    ASSERT_EQ(call(Sys::HandleClose, {.a0 = stale}), Err::Ok);
    struct Case {
        abi::HandleValue h[2];
        uint32_t flags[2];
        Err err;
    };
    const Case cases[] = {
        {{a, 0}, {abi::kTransferMove, abi::kTransferMove}, Err::BadHandle},
        {{a, stale}, {abi::kTransferMove, abi::kTransferMove}, Err::BadHandle},
        {{a, 0xFFFFFFFF}, {abi::kTransferCopy, abi::kTransferMove}, Err::BadHandle},
        {{a, a}, {abi::kTransferMove, abi::kTransferMove}, Err::BadHandle},  // moved twice
        {{a, b}, {abi::kTransferMove, 2}, Err::InvalidArgument},
        {{a, b}, {0xFFFFFFFF, abi::kTransferMove}, Err::InvalidArgument},
    };
    for (Sys s : {Sys::Send, Sys::Call, Sys::ReplyRecv, Sys::Reply}) {
        for (const Case& c : cases) {
            for (int i = 0; i < 2; ++i) {
                buffer().handles[i] = c.h[i];
                buffer().handle_flags[i] = c.flags[i];
            }
            uint64_t a0 = s == Sys::Reply ? 0 : ep_;
            EXPECT_REFUSED(c.err, call(s, {.a0 = a0, .a1 = info(7, 0, 2)}));
            EXPECT_TRUE(holds(a));
            EXPECT_TRUE(holds(b));
            EXPECT_EQ(buffer().handles[0], c.h[0]);
            EXPECT_EQ(buffer().handles[1], c.h[1]);
        }
    }
}

// A well-formed send that finds no receiver gives its moved handles back
// (under new values, in the IPC buffer) and drops its copies.
TEST_F(SyscallTest, UndeliveredHandlesComeBack) {
    set_buffer();
    abi::HandleValue a = make_endpoint();
    abi::HandleValue b = make_endpoint();
    buffer().handles[0] = a;
    buffer().handle_flags[0] = abi::kTransferMove;
    buffer().handles[1] = b;
    buffer().handle_flags[1] = abi::kTransferCopy;
    EXPECT_REFUSED(Err::WouldBlock, call(Sys::Send, {.a0 = ep_, .a1 = info(7, 16, 2)}));
    EXPECT_TRUE(holds(buffer().handles[0]));
    EXPECT_TRUE(holds(b));
    EXPECT_EQ(buffer().handles[1], b);
}

// A Reply with no pending call is refused before anything is taken: the
// handles it carried stay with the caller.
TEST_F(SyscallTest, ReplyWithoutAPendingCallKeepsItsHandles) {
    set_buffer();
    abi::HandleValue a = make_endpoint();
    buffer().handles[0] = a;
    buffer().handle_flags[0] = abi::kTransferMove;
    EXPECT_REFUSED(Err::BadHandle, call(Sys::Reply, {.a0 = 0, .a1 = info(1, 0, 1)}));
    EXPECT_TRUE(holds(a));
    EXPECT_EQ(buffer().handles[0], a);
    EXPECT_REFUSED(Err::BadHandle, call(Sys::Reply, {.a0 = 0, .a1 = info(1)}));
    EXPECT_REFUSED(Err::BadHandle, call(Sys::ReplySave, {}));
}

const uint64_t kBadPointers[] = {0,
                                 abi::kUserBase - 1,
                                 abi::kUserBase,
                                 kDataEnd,
                                 kDataEnd - 1,  // crosses into the hole (for lengths > 1)
                                 abi::kUserEnd,
                                 abi::kUserEnd - 1,
                                 kNonCanonical,
                                 kKernelAddress,
                                 ~uint64_t{0}};

TEST_F(SyscallTest, DebugLogPointersAndLengths) {
    for (uint64_t p : kBadPointers) {
        EXPECT_REFUSED(Err::BadAddress, call(Sys::DebugLog, {.a1 = p, .a2 = 2}));
        EXPECT_REFUSED(Err::BadAddress, call(Sys::DebugLog, {.a1 = p, .a2 = abi::kDebugLogMax}));
    }
    for (uint64_t len : {abi::kDebugLogMax + 1, uint64_t{4095}, uint64_t{1} << 40, ~uint64_t{0}}) {
        EXPECT_REFUSED(Err::TooLarge, call(Sys::DebugLog, {.a1 = kData, .a2 = len}));
    }
    // The read-only page is readable; the last bytes of the mapping too.
    const char text[] = "hello";
    poke(kDataEnd - 5, text, 5);
    FakeCpu::log.clear();
    EXPECT_REFUSED(Err::Ok, call(Sys::DebugLog, {.a1 = kDataEnd - 5, .a2 = 5}));
    EXPECT_NE(FakeCpu::log.find("hello"), std::string::npos);
    EXPECT_REFUSED(Err::Ok, call(Sys::DebugLog, {.a1 = kReadOnly, .a2 = 16}));
    EXPECT_REFUSED(Err::BadAddress, call(Sys::DebugLog, {.a1 = kReadOnly - 1, .a2 = 2}));
}

TEST_F(SyscallTest, IpcBufferSetRefusals) {
    set_buffer(kData + kPage);
    for (uint64_t p : {kData + 1, kData + kPage - 1, ~uint64_t{0}, abi::kUserBase - 1}) {
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::IpcBufferSet, {.a1 = p}));
    }
    for (uint64_t p : {uint64_t{0x1000}, abi::kUserBase - kPage, kDataEnd, kReadOnly, abi::kUserEnd,
                       kNonCanonical, kKernelAddress, ~uint64_t{0} & ~(kPage - 1)}) {
        EXPECT_REFUSED(Err::BadAddress, call(Sys::IpcBufferSet, {.a1 = p}));
    }
    EXPECT_EQ(user_->ipc->user_buffer, kData + kPage);
    // 0 unregisters.
    EXPECT_EQ(call(Sys::IpcBufferSet, {.a1 = 0}), Err::Ok);
    EXPECT_EQ(user_->ipc->user_buffer, 0u);
}

TEST_F(SyscallTest, MemMapRefusals) {
    const uint64_t rw = abi::kProtRead | abi::kProtWrite;
    for (uint64_t len : {uint64_t{0}, uint64_t{1}, uint64_t{4095}, uint64_t{4097}, ~uint64_t{0}}) {
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::MemMap, {.a1 = len, .a2 = rw}));
    }
    for (uint64_t len :
         {uint64_t{1} << 40, ~uint64_t{0} & ~(kPage - 1), (Process::kMaxPages + 1) * kPage}) {
        EXPECT_REFUSED(Err::LimitReached, call(Sys::MemMap, {.a1 = len, .a2 = rw}));
    }
    for (uint64_t prot : {uint64_t{0}, uint64_t{abi::kProtWrite}, uint64_t{abi::kProtExec},
                          uint64_t{abi::kProtWrite | abi::kProtExec}, uint64_t{7}, uint64_t{8},
                          uint64_t{9}, uint64_t{1} << 32, uint64_t{1} << 63, ~uint64_t{0}}) {
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::MemMap, {.a1 = kPage, .a2 = prot}));
    }
    // More than the process may have left.
    size_t left = Process::kMaxPages - proc_->mapped_pages();
    EXPECT_REFUSED(Err::LimitReached, call(Sys::MemMap, {.a1 = (left + 1) * kPage, .a2 = rw}));
    TrapFrame f;
    EXPECT_EQ(call(Sys::MemMap, {.a1 = 2 * kPage, .a2 = abi::kProtRead}, &f), Err::Ok);
    EXPECT_EQ(proc_->mapped_pages(), kDataPages + 1 + 2);
    EXPECT_EQ(f.rdi % kPage, 0u);
}

// MemMap zeroes its frames before it takes the address-space lock, with
// interrupts on (the fake counts frames zeroed with them off), and they
// read zero, though they held something before.
TEST_F(SyscallTest, MemMapZeroesWithInterruptsOn) {
    const uint64_t rw = abi::kProtRead | abi::kProtWrite;
    constexpr uint64_t kPages = 600;
    TrapFrame f;
    ASSERT_EQ(call(Sys::MemMap, {.a1 = kPages * kPage, .a2 = rw}, &f), Err::Ok);
    std::vector<unsigned char> page(kPage, 0xA5);
    for (uint64_t i = 0; i < kPages; ++i) poke(f.rdi + i * kPage, page.data(), kPage);
    ASSERT_EQ(call(Sys::MemUnmap, {.a1 = f.rdi, .a2 = kPages * kPage}), Err::Ok);
    FakeCpu::frames_zeroed = 0;
    FakeCpu::frames_zeroed_irqs_off = 0;
    ASSERT_EQ(call(Sys::MemMap, {.a1 = kPages * kPage, .a2 = rw}, &f), Err::Ok);
    EXPECT_EQ(FakeCpu::frames_zeroed, kPages);
    EXPECT_EQ(FakeCpu::frames_zeroed_irqs_off, 0u);
    const std::vector<unsigned char> zeros(kPage, 0);
    for (uint64_t i = 0; i < kPages; ++i) {
        ASSERT_EQ(proc_->copy_from_user(page.data(), f.rdi + i * kPage, kPage), Error::None);
        ASSERT_EQ(page, zeros) << "page " << i;
    }
}

// A map that fails once its frames are taken gives them all back, and its
// pages no longer count against the bound: out of frames (the host's frame
// arena is smaller than Process::kMaxPages), or over a page already mapped.
TEST_F(SyscallTest, FailedMapsGiveTheirFramesBack) {
    const uint64_t rw = abi::kProtRead | abi::kProtWrite;
    const size_t free_before = frame_allocator().free_count();
    const size_t left = Process::kMaxPages - proc_->mapped_pages();
    ASSERT_GT(left, free_before);
    for (int i = 0; i < 2; ++i) {  // the second time: not LimitReached
        EXPECT_REFUSED(Err::OutOfMemory, call(Sys::MemMap, {.a1 = left * kPage, .a2 = rw}));
        EXPECT_EQ(frame_allocator().free_count(), free_before);
    }
    EXPECT_REFUSED(Err::LimitReached, call(Sys::MemMap, {.a1 = (left + 1) * kPage, .a2 = rw}));
    // The hole after the data pages, and the read-only page after it.
    EXPECT_REFUSED(Error::BadState, proc_->map_anonymous(kDataEnd, 2, rw));
    EXPECT_FALSE(Cpu::user_frame(proc_->root(), kDataEnd, false).ok());
    EXPECT_EQ(frame_allocator().free_count(), free_before);
    TrapFrame f;
    EXPECT_EQ(call(Sys::MemMap, {.a1 = 4 * kPage, .a2 = rw}, &f), Err::Ok);
    EXPECT_EQ(frame_allocator().free_count(), free_before - 4);
}

// An unmap asks every CPU to forget the range (a TLB shootdown) before the
// frames go back to the allocator, where another process could get them;
// and it bumps the space's TLB generation before that, so a CPU that ran
// the space with a PCID and switched away flushes it when it comes back.
TEST_F(SyscallTest, MemUnmapShootsDownBeforeFreeing) {
    const uint64_t rw = abi::kProtRead | abi::kProtWrite;
    TrapFrame f;
    ASSERT_EQ(call(Sys::MemMap, {.a1 = 5 * kPage, .a2 = rw}, &f), Err::Ok);
    const size_t free_mapped = frame_allocator().free_count();
    FakeCpu::tlb_flushes.clear();
    FakeCpu::tlb_watched = &proc_->tlb();
    const uint64_t generation = proc_->tlb().generation();
    ASSERT_EQ(call(Sys::MemUnmap, {.a1 = f.rdi + kPage, .a2 = 3 * kPage}), Err::Ok);
    ASSERT_EQ(FakeCpu::tlb_flushes.size(), 1u);
    const FakeCpu::TlbFlush& flush = FakeCpu::tlb_flushes[0];
    EXPECT_EQ(flush.root, proc_->root());
    EXPECT_EQ(flush.virt, f.rdi + kPage);
    EXPECT_EQ(flush.pages, 3u);
    EXPECT_EQ(flush.free_frames, free_mapped);    // none freed yet
    EXPECT_EQ(flush.generation, generation + 1);  // bumped before the shootdown
    EXPECT_EQ(frame_allocator().free_count(), free_mapped + 3);
    EXPECT_EQ(proc_->tlb().generation(), generation + 1);
    // A refused unmap changes nothing, so it flushes nothing.
    set_buffer(f.rdi);
    EXPECT_REFUSED(Err::BadState, call(Sys::MemUnmap, {.a1 = f.rdi, .a2 = kPage}));
    EXPECT_EQ(FakeCpu::tlb_flushes.size(), 1u);
    EXPECT_EQ(proc_->tlb().generation(), generation + 1);
}

TEST_F(SyscallTest, MemUnmapRefusals) {
    set_buffer(kData + kPage);
    for (uint64_t len : {uint64_t{0}, uint64_t{1}, uint64_t{4095}, ~uint64_t{0}}) {
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::MemUnmap, {.a1 = kData, .a2 = len}));
    }
    for (uint64_t len : {uint64_t{1} << 40, ~uint64_t{0} & ~(kPage - 1)}) {
        EXPECT_REFUSED(Err::LimitReached, call(Sys::MemUnmap, {.a1 = kData, .a2 = len}));
    }
    for (uint64_t at :
         {uint64_t{0}, kData + 1, abi::kUserBase - 1, abi::kUserBase - kPage, abi::kUserEnd,
          kNonCanonical, kKernelAddress, ~uint64_t{0}, ~uint64_t{0} & ~(kPage - 1)}) {
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::MemUnmap, {.a1 = at, .a2 = kPage}));
    }
    // A range running past the end of the user half.
    EXPECT_REFUSED(Err::InvalidArgument,
                   call(Sys::MemUnmap, {.a1 = abi::kUserEnd - kPage, .a2 = 2 * kPage}));
    // The registered IPC buffer's page, alone or inside a range.
    EXPECT_REFUSED(Err::BadState, call(Sys::MemUnmap, {.a1 = kData + kPage, .a2 = kPage}));
    EXPECT_REFUSED(Err::BadState, call(Sys::MemUnmap, {.a1 = kData, .a2 = kDataPages * kPage}));
    EXPECT_REFUSED(Err::BadState,
                   call(Sys::MemUnmap, {.a1 = kData - 16 * kPage, .a2 = 32 * kPage}));
    EXPECT_TRUE(Cpu::user_frame(proc_->root(), kData + kPage, true).ok());
    // Nothing mapped there: nothing to do.
    EXPECT_REFUSED(Err::Ok, call(Sys::MemUnmap, {.a1 = kDataEnd, .a2 = kPage}));
    // The pages around the buffer can go.
    EXPECT_EQ(call(Sys::MemUnmap, {.a1 = kData, .a2 = kPage}), Err::Ok);
    EXPECT_EQ(proc_->mapped_pages(), kDataPages);
}

TEST_F(SyscallTest, HandleMintRefusals) {
    abi::HandleValue narrow = mint(ep_, abi::kRightSend | abi::kRightDuplicate);
    EXPECT_REFUSED(Err::NoRights, call(Sys::HandleMint,
                                       {.a0 = narrow, .a1 = abi::kRightSend | abi::kRightReceive}));
    EXPECT_REFUSED(Err::NoRights, call(Sys::HandleMint, {.a0 = narrow, .a1 = abi::kRightsAll}));
    for (uint64_t rights : {uint64_t{0x20}, uint64_t{0xFF}, uint64_t{1} << 32, ~uint64_t{0}}) {
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::HandleMint, {.a0 = ep_, .a1 = rights}));
    }
    // A badge names a sender: a handle that may receive carries none.
    EXPECT_REFUSED(Err::InvalidArgument,
                   call(Sys::HandleMint, {.a0 = ep_, .a1 = abi::kRightsAll, .a2 = 5}));
    EXPECT_REFUSED(Err::InvalidArgument,
                   call(Sys::HandleMint, {.a0 = ep_, .a1 = abi::kRightReceive, .a2 = 5}));
    abi::HandleValue badged = mint(ep_, abi::kRightsAll & ~abi::kRightReceive, 5);
    EXPECT_REFUSED(Err::InvalidArgument,
                   call(Sys::HandleMint, {.a0 = badged, .a1 = abi::kRightSend, .a2 = 6}));
    EXPECT_REFUSED(
        Err::InvalidArgument,
        call(Sys::HandleMint, {.a0 = badged, .a1 = abi::kRightSend, .a2 = ~uint64_t{0}}));
    // The same badge, or 0, keeps it.
    TrapFrame f;
    EXPECT_EQ(call(Sys::HandleMint, {.a0 = badged, .a1 = abi::kRightSend, .a2 = 5}, &f), Err::Ok);
    EXPECT_EQ(
        proc_->handles().lookup(abi::HandleValue(f.rdi), ObjectType::Endpoint, 0).value().badge,
        5u);
}

TEST_F(SyscallTest, ProcessSpawnRefusals) {
    abi::HandleValue modules = insert(&BootModules::instance(), abi::kRightsAll);
    abi::HandleValue no_manage =
        insert(&BootModules::instance(), abi::kRightsAll & ~abi::kRightManage);
    abi::HandleValue send_less = mint(ep_, abi::kRightReceive | abi::kRightDuplicate);
    abi::SpawnArgs args{};
    std::memcpy(args.module, "init", 5);
    args.handle_count = 2;
    args.handles[0] = ep_;
    args.handle_flags[0] = abi::kTransferMove;
    args.handles[1] = send_less;
    args.handle_flags[1] = abi::kTransferCopy;
    args.supervisor = send_less;
    const uint64_t at = kData + 100;
    poke(at, &args, sizeof args);
    EXPECT_REFUSED(Err::NoRights, call(Sys::ProcessSpawn, {.a0 = no_manage, .a1 = at}));
    for (uint64_t p : kBadPointers) {
        EXPECT_REFUSED(Err::BadAddress, call(Sys::ProcessSpawn, {.a0 = modules, .a1 = p}));
    }
    EXPECT_REFUSED(Err::BadAddress,
                   call(Sys::ProcessSpawn, {.a0 = modules, .a1 = kDataEnd - sizeof args + 1}));
    auto refused = [&](abi::SpawnArgs a) {
        poke(at, &a, sizeof a);
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::ProcessSpawn, {.a0 = modules, .a1 = at}));
        EXPECT_TRUE(holds(ep_));
        EXPECT_TRUE(holds(send_less));
    };
    abi::SpawnArgs a = args;
    std::memset(a.module, 'x', sizeof a.module);  // no NUL
    refused(a);
    a = args;
    a.module[0] = '\0';  // empty
    refused(a);
    a = args;
    a.handle_count = abi::kMaxStartHandles + 1;
    refused(a);
    a.handle_count = ~uint32_t{0};
    refused(a);
    a = args;
    a.handle_flags[1] = 2;
    refused(a);
    // A CPU that is not there (this fixture's one CPU is 0), or past the
    // table, or any 32-bit value but kAnyCpu.
    for (uint32_t cpu : {1u, 15u, 16u, 0x80000000u, 0xFFFFFFFEu}) {
        a = args;
        a.cpu = cpu;
        refused(a);
    }
    a = args;
    std::memset(a.args, 'a', sizeof a.args);  // an argument string with no NUL
    refused(a);
    // Well-formed, but the host has no module of that name.
    refused(args);
}

TEST_F(SyscallTest, ThreadCreateRefusals) {
    for (uint64_t rip : {uint64_t{0}, abi::kUserBase - 1, abi::kUserEnd, kNonCanonical,
                         kKernelAddress, ~uint64_t{0}}) {
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::ThreadCreate, {.a1 = rip}));
    }
    EXPECT_EQ(process_threads_.size(), 1u);
    TrapFrame f;
    EXPECT_EQ(call(Sys::ThreadCreate, {.a1 = abi::kUserBase, .a2 = kDataEnd}, &f), Err::Ok);
    EXPECT_EQ(process_threads_.size(), 2u);
}

// ThreadSetAffinity takes a mask of CPUs that run threads (here one: CPU
// 0), for the caller or a thread it holds with Manage; r0 is the CPU the
// thread runs on.
TEST_F(SyscallTest, ThreadSetAffinity) {
    TrapFrame f;
    ASSERT_EQ(call(Sys::ThreadSetAffinity, {.a0 = 0, .a1 = 1}, &f), Err::Ok);
    EXPECT_EQ(f.rdi, 0u);
    EXPECT_EQ(user_->affinity, 1u);
    for (uint64_t mask : {uint64_t{0}, uint64_t{2}, uint64_t{3}, uint64_t{1} << 15,
                          uint64_t{1} << 32, uint64_t{1} << 40, ~uint64_t{0}}) {
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::ThreadSetAffinity, {.a0 = 0, .a1 = mask}));
        // Decoded before the handle: a bad mask is refused whatever it names.
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::ThreadSetAffinity, {.a0 = ep_, .a1 = mask}));
    }
    for (uint64_t h : kBadHandles) {
        if (h == abi::kNoHandle) continue;
        EXPECT_REFUSED(Err::BadHandle, call(Sys::ThreadSetAffinity, {.a0 = h, .a1 = 1}));
    }
    EXPECT_REFUSED(Err::BadHandle, call(Sys::ThreadSetAffinity, {.a0 = ep_, .a1 = 1}));
    ASSERT_EQ(call(Sys::ThreadCreate, {.a1 = abi::kUserBase, .a2 = kDataEnd}, &f), Err::Ok);
    auto thread = abi::HandleValue(f.rdi);
    Thread* other = process_threads_.back();
    EXPECT_EQ(other->affinity, 1u);  // the creator's
    abi::HandleValue no_manage = mint(thread, abi::kRightsAll & ~abi::kRightManage);
    EXPECT_REFUSED(Err::NoRights, call(Sys::ThreadSetAffinity, {.a0 = no_manage, .a1 = 1}));
    EXPECT_EQ(call(Sys::ThreadSetAffinity, {.a0 = thread, .a1 = 1}, &f), Err::Ok);
    EXPECT_EQ(f.rdi, 0u);
}

// The FS base is the calling thread's own, and only the user half is taken
// (any value there: whether it is mapped is the thread's affair).
TEST_F(SyscallTest, ThreadSetFsBase) {
    ASSERT_EQ(call(Sys::ThreadSetFsBase, {.a1 = kData}), Err::Ok);
    EXPECT_EQ(user_->context.fs_base, kData);
    for (uint64_t base : {abi::kFsBaseEnd, abi::kFsBaseEnd + kPage, kNonCanonical, kKernelAddress,
                          uint64_t{0xFFFFFFFF80000000}, uint64_t{1} << 63, ~uint64_t{0}}) {
        EXPECT_REFUSED(Err::InvalidArgument, call(Sys::ThreadSetFsBase, {.a1 = base}));
        EXPECT_EQ(user_->context.fs_base, kData) << base;
    }
    for (uint64_t base : {uint64_t{0}, uint64_t{8}, abi::kUserBase - 1, kDataEnd, abi::kUserEnd,
                          abi::kFsBaseEnd - 8, abi::kFsBaseEnd - 1}) {
        EXPECT_EQ(call(Sys::ThreadSetFsBase, {.a1 = base}), Err::Ok) << base;
        EXPECT_EQ(user_->context.fs_base, base);
    }
    // A new thread starts with 0; each thread sets its own.
    ASSERT_EQ(call(Sys::ThreadSetFsBase, {.a1 = kData}), Err::Ok);
    TrapFrame f;
    ASSERT_EQ(call(Sys::ThreadCreate, {.a1 = abi::kUserBase, .a2 = kDataEnd}, &f), Err::Ok);
    Thread* other = process_threads_.back();
    ASSERT_NE(other, user_);
    EXPECT_EQ(other->context.fs_base, 0u);
    EXPECT_EQ(user_->context.fs_base, kData);
}

// A full handle table refuses what would add a handle, and nothing leaks.
TEST_F(SyscallTest, FullHandleTable) {
    Err e = Err::Ok;
    while (e == Err::Ok) e = call(Sys::HandleMint, {.a0 = ep_, .a1 = abi::kRightSend});
    EXPECT_EQ(e, Err::LimitReached);
    EXPECT_EQ(proc_->handles().count(), kProcessHandleLimit);
    EXPECT_REFUSED(Err::LimitReached, call(Sys::EndpointCreate, {}));
    EXPECT_REFUSED(Err::LimitReached, call(Sys::ThreadCreate, {.a1 = abi::kUserBase}));
    EXPECT_EQ(process_threads_.size(), 1u);
    set_buffer();
    buffer().handles[0] = ep_;
    buffer().handle_flags[0] = abi::kTransferCopy;
    EXPECT_REFUSED(Err::LimitReached, call(Sys::Send, {.a0 = ep_, .a1 = info(1, 0, 1)}));
}

// Random numbers and arguments, drawn from real handle values (live and
// stale), boundary pointers and lengths and plain random values: every
// call answers an ABI error, the process stays within its bounds, and
// the teardown finds nothing leaked.
TEST_F(SyscallTest, RandomCalls) {
    std::mt19937_64 rng(testing::test_seed("SyscallTest.RandomCalls"));
    set_buffer();
    Process* other = Process::create("other").value();
    std::vector<uint64_t> handles = {
        ep_,
        mint(ep_, abi::kRightSend),
        mint(ep_, abi::kRightReceive | abi::kRightDuplicate),
        mint(ep_, abi::kRightsAll & ~abi::kRightReceive, 42),
        insert(&BootModules::instance(), abi::kRightsAll),
        insert(user_, abi::kRightsAll),
        proc_->handles().insert(Ref<KObject>::adopt(other), abi::kRightsAll).value(),
    };
    const uint64_t pointers[] = {0,
                                 abi::kUserBase - 1,
                                 abi::kUserBase,
                                 kData,
                                 kData + 100,
                                 kDataEnd - 8,
                                 kDataEnd,
                                 kReadOnly,
                                 Process::kMapBase,
                                 abi::kUserEnd - kPage,
                                 abi::kUserEnd,
                                 kNonCanonical,
                                 kKernelAddress,
                                 ~uint64_t{0}};
    const uint64_t lengths[] = {0,
                                1,
                                8,
                                4095,
                                kPage,
                                2 * kPage,
                                16 * kPage,
                                uint64_t{1} << 40,
                                ~uint64_t{0},
                                abi::kDebugLogMax,
                                abi::kDebugLogMax + 1};
    auto pick = [&](const auto& v) { return v[rng() % std::size(v)]; };
    auto arg = [&]() -> uint64_t {
        switch (rng() % 7) {
            case 0:
                return pick(handles);
            case 1:
                return pick(pointers);
            case 2:
                return pick(lengths);
            case 3:
                return rng() % 8;
            case 5:
                return 0;
            case 4:
                return info(uint32_t(rng() % 4), uint32_t(rng() % 500), uint32_t(rng() % 6));
            default:
                return rng();
        }
    };
    constexpr int kCalls = 100000;
    unsigned counts[16] = {};
    std::vector<std::pair<uint64_t, uint64_t>> maps;
    for (int i = 0; i < kCalls; ++i) {
        uint64_t n;
        do {
            n = rng() % (uint64_t(Sys::Count) + 2);
        } while (n == uint64_t(Sys::ThreadExit) || n == uint64_t(Sys::ProcessExit));
        if (n > uint64_t(Sys::Count)) n = rng();
        // Random calls unregister the IPC buffer (or unmap its page) often
        // and find a page to register rarely: now and then it comes back.
        if (user_->ipc->user_buffer == 0 && rng() % 16 == 0) {
            (void)proc_->set_ipc_buffer(*user_, rng() % 2 ? kData : kData + kPage);
        }
        // Now and then the IPC buffer gets random descriptors.
        if (rng() % 4 == 0 && user_->ipc->user_buffer != 0) {
            auto* buf = reinterpret_cast<abi::IpcBuffer*>(user_->ipc->buffer);
            for (unsigned j = 0; j < abi::kMaxHandles; ++j) {
                buf->handles[j] = uint32_t(rng() % 4 != 0 ? pick(handles) : rng());
                buf->handle_flags[j] = uint32_t(rng() % 5 == 0 ? rng() % 4 : rng() % 2);
            }
        }
        Args a{arg(), arg(), arg(), arg(), arg(), arg(), abi::kNoWait};
        TrapFrame f;
        Snapshot before = snapshot();
        Err e = call(n, a, &f);
        // A refusal changes nothing. (ReplyRecv is no refusal when it
        // finds nothing to receive: the reply part, with no call to
        // answer, has closed the handles it carried.)
        if (e != Err::Ok && n != uint64_t(Sys::ReplyRecv)) {
            ASSERT_TRUE(snapshot() == before) << "call " << i << " number " << n;
        }
        ASSERT_LE(uint64_t(e), uint64_t(Err::LimitReached)) << "call " << i << " number " << n;
        ++counts[uint64_t(e)];
        ASSERT_LE(proc_->handles().count(), kProcessHandleLimit);
        ASSERT_LE(proc_->mapped_pages(), Process::kMaxPages);
        ASSERT_EQ(proc_->mapped_pages(), FakeCpu::user_pages(proc_->root()));
        if (e == Err::Ok && (n == uint64_t(Sys::EndpointCreate) || n == uint64_t(Sys::HandleMint) ||
                             n == uint64_t(Sys::ThreadCreate) || n == uint64_t(Sys::ReplySave))) {
            handles.push_back(f.rdi);
        }
        if (e == Err::Ok && n == uint64_t(Sys::MemMap)) {
            // Keep memory for more calls: the frame arena is finite.
            maps.push_back({f.rdi, a.a1});
            if (proc_->mapped_pages() > 4096) {
                for (auto [at, len] : maps) (void)call(Sys::MemUnmap, {.a1 = at, .a2 = len});
                maps.clear();
            }
        }
        if (FakeCpu::log.size() > (1u << 20)) FakeCpu::log.clear();
    }
    for (unsigned j = 0; j < 16; ++j) {
        if (counts[j] != 0) std::printf("  err %u: %u\n", j, counts[j]);
    }
    EXPECT_GT(counts[uint64_t(Err::Ok)], 0u);
}

}  // namespace
}  // namespace mk
