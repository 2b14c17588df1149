// The user-mode test driver: booted as init in the usertest ISO, it spawns
// the other test programs from boot modules and checks what the kernel
// does between processes. One "ok - NAME" / "not ok - NAME" line per case;
// it exits with the number of failures (the kernel powers off on init's
// end, reporting success for status 0).
#include "common.hpp"

using namespace mk;
using utest::rdtsc;
using utest::Result;
using utest::spawn;

namespace {

int g_failures = 0;
abi::HandleValue g_modules = abi::kNoHandle;

void check(bool ok, const char* name) {
    printf("%s - %s\n", ok ? "ok" : "not ok", name);
    if (!ok) ++g_failures;
}

#define EXPECT(cond)                                             \
    do {                                                         \
        if (!(cond)) {                                           \
            printf("  failed: %s (line %d)\n", #cond, __LINE__); \
            return false;                                        \
        }                                                        \
    } while (0)

abi::Err status_of(const sys::Ret& r) {
    return r.status;
}

// The pong server, started once, its endpoint, and where this process
// learns of its children's deaths.
ipc::Endpoint g_pong_ep;
abi::HandleValue g_pong = abi::kNoHandle;
uint64_t g_pong_pid = 0;
ipc::Endpoint g_deaths;
uint32_t g_cpu = 0;             // this process's CPU (main() binds it there)
uint32_t g_cpu_count = 1;       // CPUs 0 .. g_cpu_count - 1 (an index may be missing)
uint64_t g_start_affinity = 1;  // StartInfo::affinity

bool start_pong() {
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    g_pong_ep = std::move(ep).value();
    Result<ipc::Endpoint> deaths = ipc::Endpoint::create();
    EXPECT(deaths);
    g_deaths = std::move(deaths).value();
    abi::HandleValue h = g_pong_ep.get();
    // On this CPU, for the round trips on one CPU: left to placement and the
    // balancing rule, a host too loaded to run this CPU for a tick or two
    // could see it moved to another (docs/smp.md, "The balancing rule").
    g_pong = spawn(g_modules, "pong", 0, &h, 1, true, nullptr, g_deaths.get(), &g_pong_pid, g_cpu);
    EXPECT(g_pong != abi::kNoHandle);
    return true;
}

// The next death notice on g_deaths: true when it names `pid` with `status`.
bool death_of(uint64_t pid, uint64_t status) {
    Result<ipc::Received> n = ipc::recv(g_deaths, 2000000000);
    EXPECT(n && n.value().message.label() == abi::kLabelChildDied);
    EXPECT(n.value().message.word(0) == pid);
    EXPECT(n.value().message.word(1) == status);
    return true;
}

constexpr uint64_t kRoundTrips = 100000;

bool ping_pong() {
    uint64_t sum = 0, expected = 0;
    uint32_t pong_apic = 0;
    // A warm-up round trip, then the measured ones.
    EXPECT(ipc::call(g_pong_ep, ipc::Message(1).set_word(0, 1)));
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < kRoundTrips; ++i) {
        Result<ipc::Received> r =
            ipc::call(g_pong_ep, ipc::Message(1).set_word(0, i).set_word(1, i));
        if (!r) {
            printf("  call %lu: %s\n", i, ipc::error_name(r.error()));
            return false;
        }
        sum += r.value().message.word(0) + (r.value().message.word(1) ^ 0x5555);
        expected += i * 3 + 1 + i;
        pong_apic = uint32_t(r.value().message.word(3));
    }
    uint64_t t1 = rdtsc();
    printf(
        "  %lu call/reply_recv round trips between two processes, %lu TSC ticks each, "
        "checksum %s (the server ran on %s processor)\n",
        kRoundTrips, (t1 - t0) / kRoundTrips, sum == expected ? "ok" : "BAD",
        pong_apic == utest::apic_id() ? "this" : "another");
    EXPECT(sum == expected);
    return true;
}

// The kernel's own share: raw Call / ReplyRecv syscalls on both sides,
// register-only messages (the fast path), no libipc in the loop.
bool raw_round_trips() {
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    abi::HandleValue h = ep.value().get();
    // On this CPU, bound: a measure of the same-CPU path.
    EXPECT(spawn(g_modules, "rawpong", 0, &h, 1, true, nullptr, abi::kNoHandle, nullptr, g_cpu) !=
           abi::kNoHandle);
    uint64_t info = abi::MsgInfo{1, 0, 0, false}.encode();
    EXPECT(sys::invoke(abi::Sys::Call, h, info, 0, 0, 0, 0, abi::kForever).ok());  // warm-up
    uint64_t sum = 0;
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < kRoundTrips; ++i) {
        sys::Ret r = sys::invoke(abi::Sys::Call, h, info, i, 0, 0, 0, abi::kForever);
        sum += r.words[0];
    }
    uint64_t t1 = rdtsc();
    // The loop alone, for scale.
    uint64_t t2 = rdtsc();
    for (uint64_t i = 0; i < kRoundTrips; ++i) asm volatile("" : : "r"(i) : "memory");
    uint64_t t3 = rdtsc();
    printf(
        "  %lu raw Call/ReplyRecv round trips between two processes: %lu TSC ticks each "
        "(loop alone %lu), checksum %s\n",
        kRoundTrips, (t1 - t0) / kRoundTrips, (t3 - t2) / kRoundTrips,
        sum == kRoundTrips * (kRoundTrips + 1) / 2 ? "ok" : "BAD");
    EXPECT(sum == kRoundTrips * (kRoundTrips + 1) / 2);
    EXPECT(sys::invoke(abi::Sys::Call, h, abi::MsgInfo{0xFFFF, 0, 0, false}.encode()).ok());
    return true;
}

bool missing_right_is_refused() {
    Result<ipc::Endpoint> send_only = g_pong_ep.mint(abi::kRightSend, 0);
    EXPECT(send_only);
    EXPECT(ipc::try_recv(send_only.value()).error() == abi::Err::NoRights);
    Result<ipc::Endpoint> recv_only = g_pong_ep.mint(abi::kRightReceive, 0);
    EXPECT(recv_only);
    EXPECT(ipc::call(recv_only.value(), ipc::Message(1)).error() == abi::Err::NoRights);
    // No more rights than the source; no copy without Duplicate.
    EXPECT(!send_only.value().mint(abi::kRightSend | abi::kRightReceive, 0));
    Result<ipc::Endpoint> no_dup = g_pong_ep.mint(abi::kRightSend, 0);
    EXPECT(no_dup);
    EXPECT(no_dup.value().mint(abi::kRightSend, 0).error() == abi::Err::NoRights);
    // Handles travel only through handles with Grant.
    Result<ipc::Endpoint> no_grant = g_pong_ep.mint(abi::kRightSend, 0);
    EXPECT(no_grant);
    ipc::Message m(3);
    m.copy_handle(g_pong_ep);
    EXPECT(ipc::call(no_grant.value(), m).error() == abi::Err::NoRights);
    return true;
}

bool forged_and_stale_handles_are_refused() {
    uint64_t forged[] = {0x12345, 0xFFFFFFFF, 0x1FFFF0001, 1, 0x10000};
    for (uint64_t h : forged) {
        EXPECT(status_of(sys::invoke(abi::Sys::Call, h, 1)) == abi::Err::BadHandle);
    }
    Result<ipc::Endpoint> e = ipc::Endpoint::create();
    EXPECT(e);
    abi::HandleValue old = e.value().get();
    EXPECT(e.value().close().ok());
    EXPECT(status_of(sys::invoke(abi::Sys::Call, old, 1)) == abi::Err::BadHandle);
    EXPECT(status_of(sys::invoke(abi::Sys::HandleClose, old)) == abi::Err::BadHandle);
    // Once the slot holds a newer object, the old value still names nothing
    // (the free list is FIFO: cycle through the table until the slot comes back).
    bool reused = false;
    for (int i = 0; i < 2100 && !reused; ++i) {
        Result<ipc::Endpoint> newer = ipc::Endpoint::create();
        EXPECT(newer);
        if ((newer.value().get() & 0xFFFF) == (old & 0xFFFF)) {
            reused = true;
            EXPECT(newer.value().get() != old);
            EXPECT(status_of(sys::invoke(abi::Sys::Send, old, 1, 0, 0, 0, 0, abi::kNoWait)) ==
                   abi::Err::BadHandle);
            EXPECT(status_of(sys::invoke(abi::Sys::Send, newer.value().get(), 1, 0, 0, 0, 0,
                                         abi::kNoWait)) == abi::Err::WouldBlock);
        }
    }
    EXPECT(reused);
    // A handle of the wrong type.
    EXPECT(status_of(sys::invoke(abi::Sys::Call, g_modules, 1)) == abi::Err::BadHandle);
    return true;
}

bool badge_identifies_the_sender() {
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    const uint64_t badges[2] = {0x111, 0x222};
    for (uint64_t b : badges) {
        Result<ipc::Endpoint> h = ep.value().mint(abi::kRightSend | abi::kRightDuplicate, b);
        EXPECT(h);
        abi::HandleValue v = h.value().get();
        // Each client claims the other's badge; the kernel tells the truth.
        uint64_t claim = b == 0x111 ? 0x222 : 0x111;
        EXPECT(spawn(g_modules, "client", (claim << 8) | 1, &v, 1, false) != abi::kNoHandle);
        (void)h.value().release();
    }
    uint64_t seen = 0;
    for (int i = 0; i < 2; ++i) {
        Result<ipc::Received> r = ipc::recv(ep.value(), 2000000000);
        EXPECT(r);
        // A client that sent and ended may be gone before the other sends:
        // the kernel's last-handle notice for its badge comes in between.
        if (r.value().is_notice()) {
            EXPECT(r.value().message.label() == abi::kLabelLastHandle);
            --i;
            continue;
        }
        EXPECT(r.value().message.label() == 1);
        EXPECT(r.value().badge == 0x111 || r.value().badge == 0x222);
        EXPECT(r.value().badge != r.value().message.word(0));  // the claim is not believed
        seen |= r.value().badge;
        // Re-badging its handle was refused.
        EXPECT(r.value().message.word(1) == uint64_t(abi::Err::InvalidArgument));
    }
    EXPECT(seen == (0x111 | 0x222));
    return true;
}

bool reply_reaches_only_its_call() {
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    abi::HandleValue v = ep.value().get();
    EXPECT(spawn(g_modules, "client", (100 << 8) | 2, &v, 1) != abi::kNoHandle);
    EXPECT(spawn(g_modules, "client", (200 << 8) | 2, &v, 1) != abi::kNoHandle);
    Result<ipc::Received> first = ipc::recv(ep.value(), 2000000000);
    EXPECT(first && first.value().call);
    Result<ipc::Reply> saved = ipc::reply_save();
    EXPECT(saved);
    ipc::Reply later = std::move(saved).value();
    abi::HandleValue saved_handle = later.handle();
    Result<ipc::Received> second = ipc::recv(ep.value(), 2000000000);
    EXPECT(second && second.value().call);
    // The pending call is the second one; the saved reply the first.
    EXPECT(ipc::reply(ipc::Message(0).set_word(0, second.value().message.word(0) + 1)).ok());
    EXPECT(later.send(ipc::Message(0).set_word(0, first.value().message.word(0) + 1)).ok());
    // A used reply handle is gone; there is no pending call any more.
    EXPECT(status_of(sys::invoke(abi::Sys::Reply, saved_handle, 0)) == abi::Err::BadHandle);
    EXPECT(status_of(sys::invoke(abi::Sys::Reply, 0, 0)) == abi::Err::BadHandle);
    for (int i = 0; i < 2; ++i) {
        Result<ipc::Received> r = ipc::recv(ep.value(), 2000000000);
        EXPECT(r && r.value().message.label() == 5);
        EXPECT(r.value().message.word(0) == 1);  // each got the answer to its own call
    }
    return true;
}

// A thread that receives again without answering (or saving) its pending
// call gives that call up: its caller wakes with PeerDied instead of
// waiting, while the server lives, for an answer nobody can give any more.
// (The syscall fuzzer's caller threads all ended up waiting that way.)
bool receiving_again_releases_the_pending_call() {
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    abi::HandleValue v = ep.value().get();
    // A client calls (mode 2)...
    EXPECT(spawn(g_modules, "client", (300 << 8) | 2, &v, 1) != abi::kNoHandle);
    Result<ipc::Received> first = ipc::recv(ep.value(), 2000000000);
    EXPECT(first && first.value().call && first.value().message.label() == 2);
    // ...and another message arrives (a plain send, mode 1) before an answer.
    EXPECT(spawn(g_modules, "client", (7 << 8) | 1, &v, 1) != abi::kNoHandle);
    Result<ipc::Received> second = ipc::recv(ep.value(), 2000000000);
    EXPECT(second && !second.value().call && second.value().message.label() == 1);
    // The first client learns at once that no answer comes (word 0 = 0:
    // its call failed) instead of hanging. (The second client's handle
    // minted with a badge ended with it: that lineage's last-handle notice
    // may come first.)
    Result<ipc::Received> told = ipc::recv(ep.value(), 2000000000);
    while (told && told.value().is_notice()) told = ipc::recv(ep.value(), 2000000000);
    EXPECT(told);
    EXPECT(told.value().message.label() == 5 && told.value().message.word(0) == 0);
    return true;
}

// A child may start with abi::kMaxStartHandles handles, more than a
// message carries.
bool spawn_passes_every_start_handle() {
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    abi::HandleValue handles[abi::kMaxStartHandles];
    for (abi::HandleValue& h : handles) h = ep.value().get();
    abi::Err e = abi::Err::Ok;
    // client (mode 2) calls on its first handle: it started.
    EXPECT(spawn(g_modules, "client", (400 << 8) | 2, handles, abi::kMaxStartHandles, true, &e) !=
           abi::kNoHandle);
    EXPECT(e == abi::Err::Ok);
    Result<ipc::Received> r = ipc::recv(ep.value(), 2000000000);
    EXPECT(r && r.value().call && r.value().message.word(0) == 400);
    EXPECT(ipc::reply(ipc::Message(0).set_word(0, 401)).ok());
    Result<ipc::Received> done = ipc::recv(ep.value(), 2000000000);
    EXPECT(done && done.value().message.label() == 5 && done.value().message.word(0) == 1);
    return true;
}

bool handles_travel_in_messages() {
    Result<ipc::Endpoint> mine = ipc::Endpoint::create();
    EXPECT(mine);
    Result<ipc::Endpoint> send_right = mine.value().mint(abi::kRightSend, 0x77);
    EXPECT(send_right);
    ipc::Message m(3);
    m.set_word(0, 41).move_handle(std::move(send_right).value());
    // pong receives the handle, sends on it, then answers.
    Result<ipc::Received> r = ipc::call(g_pong_ep, m);
    EXPECT(r && r.value().message.word(0) == 1);
    Result<ipc::Received> hello = ipc::recv(mine.value(), 2000000000);
    EXPECT(hello);
    EXPECT(hello.value().message.label() == 4 && hello.value().message.word(0) == 42);
    EXPECT(hello.value().badge == 0x77);
    return true;
}

// A message that is not delivered gives its moved handles back: they are
// the sender's again, under the values the kernel wrote back.
bool undelivered_handles_come_back() {
    Result<ipc::Endpoint> nobody = ipc::Endpoint::create();  // no one receives here
    EXPECT(nobody);
    Result<ipc::Endpoint> passed = ipc::Endpoint::create();
    EXPECT(passed);
    ipc::Message m(7);
    m.move_handle(std::move(passed).value());
    EXPECT(ipc::try_send(nobody.value(), m).error() == abi::Err::WouldBlock);
    ipc::Handle back = m.take_handle(0);
    EXPECT(back.valid());
    ipc::Endpoint again(std::move(back));
    EXPECT(ipc::try_recv(again).error() == abi::Err::WouldBlock);  // a live endpoint handle
    return true;
}

bool faulting_process_dies_alone() {
    uint64_t pid = 0;
    EXPECT(spawn(g_modules, "faulter", 0, nullptr, 0, true, nullptr, g_deaths.get(), &pid) !=
           abi::kNoHandle);
    EXPECT(death_of(pid, abi::status_fault(14)));
    // pong and this process go on.
    Result<ipc::Received> r = ipc::call(g_pong_ep, ipc::Message(1).set_word(0, 5));
    EXPECT(r && r.value().message.word(0) == 16);
    return true;
}

// A supervisor learns of each child's death exactly once, with its status:
// an exit code, or the fault that killed it.
bool death_notice_arrives_exactly_once() {
    Result<ipc::Endpoint> sup = ipc::Endpoint::create();
    EXPECT(sup);
    Result<ipc::Endpoint> tell = sup.value().mint(abi::kRightSend, 0x5);
    EXPECT(tell);
    struct Child {
        const char* module;
        uint64_t status;
        uint64_t pid;
    } children[2] = {{"hello", abi::status_exited(0), 0}, {"faulter", abi::status_fault(14), 0}};
    for (Child& c : children) {
        abi::Err e = abi::Err::Ok;
        EXPECT(spawn(g_modules, c.module, 0, nullptr, 0, true, &e, tell.value().get(), &c.pid) !=
               abi::kNoHandle);
    }
    int seen[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
        Result<ipc::Received> r = ipc::recv(sup.value(), 2000000000);
        EXPECT(r);
        const ipc::Received& n = r.value();
        EXPECT(n.is_notice() && n.message.label() == abi::kLabelChildDied);
        EXPECT(n.badge == 0x5 && !n.call);
        for (int k = 0; k < 2; ++k) {
            if (n.message.word(0) != children[k].pid) continue;
            EXPECT(n.message.word(1) == children[k].status);
            ++seen[k];
        }
    }
    EXPECT(seen[0] == 1 && seen[1] == 1);
    EXPECT(ipc::recv(sup.value(), 20000000).error() == abi::Err::TimedOut);  // no second notice
    return true;
}

// The server of an endpoint learns, once, that the last handle with a badge
// it minted is gone: not when a copy closes, only when every handle of the
// lineage has (here the last one dies with the process it was moved to).
bool last_handle_notice_exactly_once() {
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    Result<ipc::Endpoint> badged = ep.value().mint(abi::kRightSend | abi::kRightDuplicate, 0x42);
    EXPECT(badged);
    Result<ipc::Endpoint> dup = badged.value().mint(abi::kRightSend, 0);  // keeps the badge
    EXPECT(dup);
    EXPECT(dup.value().close().ok());
    EXPECT(ipc::try_recv(ep.value()).error() == abi::Err::WouldBlock);  // one handle is left
    abi::HandleValue v = badged.value().release();
    EXPECT(spawn(g_modules, "client", (0x42 << 8) | 1, &v, 1, false) != abi::kNoHandle);
    Result<ipc::Received> msg = ipc::recv(ep.value(), 2000000000);
    EXPECT(msg && msg.value().message.label() == 1 && msg.value().badge == 0x42);
    Result<ipc::Received> notice = ipc::recv(ep.value(), 2000000000);
    EXPECT(notice && notice.value().is_notice());
    EXPECT(notice.value().message.label() == abi::kLabelLastHandle);
    EXPECT(notice.value().message.word(0) == 0x42 && notice.value().badge == 0x42);
    EXPECT(ipc::recv(ep.value(), 20000000).error() == abi::Err::TimedOut);  // exactly once
    return true;
}

bool bad_syscalls_are_refused() {
    EXPECT(status_of(sys::invoke(abi::Sys(999))) == abi::Err::BadSyscall);
    EXPECT(status_of(sys::invoke(abi::Sys(uint64_t{1} << 63))) == abi::Err::BadSyscall);
    // A message info with reserved bits, a notice label, a payload too long.
    EXPECT(status_of(sys::invoke(abi::Sys::Send, g_pong_ep.get(), uint64_t{1} << 60, 0, 0, 0, 0,
                                 abi::kNoWait)) == abi::Err::InvalidArgument);
    EXPECT(status_of(sys::invoke(abi::Sys::Send, g_pong_ep.get(), abi::kLabelLastHandle, 0, 0, 0, 0,
                                 abi::kNoWait)) == abi::Err::InvalidArgument);
    EXPECT(status_of(sys::invoke(abi::Sys::Send, g_pong_ep.get(), abi::MsgInfo{1, 481, 0}.encode(),
                                 0, 0, 0, 0, abi::kNoWait)) == abi::Err::TooLarge);
    // Spawning needs the modules handle; a module that is not there.
    abi::Err e = abi::Err::Ok;
    EXPECT(spawn(g_pong_ep.get(), "pong", 0, nullptr, 0, true, &e) == abi::kNoHandle);
    EXPECT(e == abi::Err::BadHandle);
    EXPECT(spawn(g_modules, "no-such-module", 0, nullptr, 0, true, &e) == abi::kNoHandle);
    EXPECT(e == abi::Err::InvalidArgument);
    // Memory: bad lengths, W^X, an IPC buffer that is not a mapped page.
    EXPECT(status_of(sys::invoke(abi::Sys::MemMap, 0, 0, abi::kProtRead)) ==
           abi::Err::InvalidArgument);
    EXPECT(status_of(sys::invoke(abi::Sys::MemMap, 0, 4096,
                                 abi::kProtRead | abi::kProtWrite | abi::kProtExec)) ==
           abi::Err::InvalidArgument);
    EXPECT(status_of(sys::invoke(abi::Sys::MemMap, 0, uint64_t{1} << 40, abi::kProtRead)) ==
           abi::Err::LimitReached);
    EXPECT(status_of(sys::invoke(abi::Sys::IpcBufferSet, 0, 0x123000)) == abi::Err::BadAddress);
    // The registered IPC buffer page cannot be unmapped under the kernel.
    uint64_t buffer = reinterpret_cast<uint64_t>(ipc::ipc_buffer());
    EXPECT(status_of(sys::invoke(abi::Sys::MemUnmap, 0, buffer, 4096)) == abi::Err::BadState);
    return true;
}

// Ring 3 may set RFLAGS.NT (popf); the kernel must not run with it. An
// iretq with NT set faults (#GP) in 64-bit mode, and a blocking syscall
// switches to another thread with the flags it entered with: the idle
// thread, last switched away from inside the timer interrupt, then faulted
// on its iretq. (Found by the syscall fuzzer, seed 0x5eedf022.)
bool nt_flag_stays_in_user_mode() {
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    for (int i = 0; i < 20; ++i) {
        register uint64_t rax asm("rax") = uint64_t(abi::Sys::Recv);
        register uint64_t rdi asm("rdi") = ep.value().get();
        register uint64_t r12 asm("r12") = 1000000;  // 1 ms: it blocks, then times out
        uint64_t flags_after = 0;
        // Below the red zone; NT on for the syscall only, then the flags back.
        asm volatile(
            "sub $128, %%rsp\n\t"
            "pushfq\n\t"
            "pushfq\n\t"
            "orq $0x4000, (%%rsp)\n\t"
            "popfq\n\t"
            "syscall\n\t"
            "pushfq\n\t"
            "pop %[after]\n\t"
            "popfq\n\t"
            "add $128, %%rsp"
            : "+r"(rax), "+r"(rdi), [after] "=r"(flags_after)
            : "r"(r12)
            : "rcx", "r11", "rsi", "rdx", "r8", "r9", "r10", "memory", "cc");
        EXPECT(abi::Err(rax) == abi::Err::TimedOut);
        EXPECT((flags_after & 0x4000) != 0);  // the user's flags come back as they were
    }
    return true;
}

// Two threads of one process map and unmap at the same time (each is
// preempted in the middle of its syscalls now and then): every MemMap
// succeeds with fresh memory of its own, never BadState, never an address
// the other thread got. (Found by the syscall fuzzer's memory thread.)
struct MapRace {
    uint64_t recent[2];  // each thread's current mapping (address), 0: none
    bool stop;
    bool done;
    int failures;
};
constexpr uint64_t kRacePages = 16;

bool map_once(MapRace& race, int me) {
    sys::Ret m = sys::invoke(abi::Sys::MemMap, 0, kRacePages * abi::kPageSize,
                             abi::kProtRead | abi::kProtWrite);
    if (!m.ok()) {
        printf("  thread %d: MemMap: %s\n", me, ipc::error_name(m.status));
        return false;
    }
    uint64_t other = __atomic_load_n(&race.recent[1 - me], __ATOMIC_RELAXED);
    if (other != 0 && m.r0 < other + kRacePages * abi::kPageSize &&
        other < m.r0 + kRacePages * abi::kPageSize) {
        printf("  thread %d: MemMap gave %#lx, which the other thread holds at %#lx\n", me, m.r0,
               other);
        return false;
    }
    __atomic_store_n(&race.recent[me], m.r0, __ATOMIC_RELAXED);
    auto* words = reinterpret_cast<volatile uint64_t*>(m.r0);
    for (uint64_t i = 0; i < kRacePages; ++i) words[i * 512] = m.r0 + uint64_t(me);
    for (uint64_t i = 0; i < kRacePages; ++i) {
        if (words[i * 512] != m.r0 + uint64_t(me)) {
            printf("  thread %d: page %lu of %#lx changed under it\n", me, i, m.r0);
            return false;
        }
    }
    __atomic_store_n(&race.recent[me], 0, __ATOMIC_RELAXED);
    return sys::invoke(abi::Sys::MemUnmap, 0, m.r0, kRacePages * abi::kPageSize).ok();
}

void map_race_thread(void* arg) {
    auto& race = *static_cast<MapRace*>(arg);
    while (!__atomic_load_n(&race.stop, __ATOMIC_RELAXED)) {
        if (!map_once(race, 1)) __atomic_fetch_add(&race.failures, 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&race.done, true, __ATOMIC_RELEASE);
}

bool concurrent_maps_stay_apart() {
    static MapRace race{};
    Result<ipc::Handle> helper = ipc::start_thread(&map_race_thread, &race, 4);
    EXPECT(helper);
    int failures = 0;
    uint64_t t0 = rdtsc();
    for (int i = 0; i < 4000; ++i) failures += map_once(race, 0) ? 0 : 1;
    __atomic_store_n(&race.stop, true, __ATOMIC_RELAXED);
    while (!__atomic_load_n(&race.done, __ATOMIC_ACQUIRE)) (void)sys::yield();
    printf("  4000 maps against a thread mapping too, %lu TSC ticks; %d + %d failed\n",
           rdtsc() - t0, failures, race.failures);
    EXPECT(failures == 0 && race.failures == 0);
    return true;
}

// A large MemMap reads zero in every word, also where its frames held
// something before: a first mapping is filled and unmapped, and the next
// one (which gets frames back from the same pool) must read zero. The
// kernel zeroes them before it takes the address-space lock; with it held,
// interrupts would be off for the whole of it.
bool large_map_reads_zero() {
    constexpr uint64_t kPages = 4096;  // 16 MiB: the qemu64 boot has 64 MiB in all
    constexpr uint64_t kBytes = kPages * abi::kPageSize;
    constexpr uint64_t kRw = abi::kProtRead | abi::kProtWrite;
    sys::Ret first = sys::invoke(abi::Sys::MemMap, 0, kBytes, kRw);
    EXPECT(first.ok());
    auto* words = reinterpret_cast<volatile uint64_t*>(first.r0);
    for (uint64_t i = 0; i < kBytes / 8; ++i) words[i] = ~i;
    EXPECT(sys::invoke(abi::Sys::MemUnmap, 0, first.r0, kBytes).ok());
    uint64_t t0 = rdtsc();
    sys::Ret second = sys::invoke(abi::Sys::MemMap, 0, kBytes, kRw);
    uint64_t t1 = rdtsc();
    EXPECT(second.ok());
    words = reinterpret_cast<volatile uint64_t*>(second.r0);
    uint64_t nonzero = 0;
    for (uint64_t i = 0; i < kBytes / 8; ++i) nonzero += words[i] != 0 ? 1 : 0;
    printf("  MemMap of %lu pages: %lu TSC ticks; %lu words not zero\n", kPages, t1 - t0, nonzero);
    EXPECT(sys::invoke(abi::Sys::MemUnmap, 0, second.r0, kBytes).ok());
    EXPECT(nonzero == 0);
    return true;
}

// --- FS base (ThreadSetFsBase) ---
//
// Each thread points FS at a record of its own whose first word points at
// itself (as a TLS block does), so `mov %fs:0` says whose FS base the CPU
// holds.
struct FsRecord {
    FsRecord* self;
    uint64_t tag;
};

FsRecord* fs_self() {
    FsRecord* v;
    asm volatile("mov %%fs:0, %0" : "=r"(v)::"memory");
    return v;
}
uint64_t fs_tag() {
    uint64_t v;
    asm volatile("mov %%fs:8, %0" : "=r"(v)::"memory");
    return v;
}

struct FsRace {
    FsRecord record[2];
    bool ready;
    bool stop;
    bool done;
    int failures;
};
constexpr int kFsRounds = 300;

// The helper thread's half: its own record, checked around yields while
// the main thread does the same with its own.
void fs_race_thread(void* arg) {
    auto& race = *static_cast<FsRace*>(arg);
    FsRecord& mine = race.record[1];
    if (sys::set_fs_base(reinterpret_cast<uint64_t>(&mine)) != abi::Err::Ok) {
        __atomic_fetch_add(&race.failures, 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&race.ready, true, __ATOMIC_RELEASE);
    for (int i = 0; !__atomic_load_n(&race.stop, __ATOMIC_ACQUIRE); ++i) {
        if (fs_self() != &mine || fs_tag() != mine.tag) {
            if (__atomic_fetch_add(&race.failures, 1, __ATOMIC_RELAXED) == 0) {
                printf("  helper: %%fs:0 reads %p, not its own record %p\n",
                       static_cast<void*>(fs_self()), static_cast<void*>(&mine));
            }
        }
        (void)sys::yield();
    }
    __atomic_store_n(&race.done, true, __ATOMIC_RELEASE);
}

// Two threads of one process, each with its FS base: every read of %fs:0
// finds its own record, across yields between them, calls to another
// process (whose threads have FS base 0) and the timer's preemptions. A
// value outside the user half is refused and changes nothing.
bool fs_base_is_per_thread() {
    static FsRace race{};
    race.record[0] = FsRecord{&race.record[0], 0xF5000};
    race.record[1] = FsRecord{&race.record[1], 0xF5001};
    FsRecord& mine = race.record[0];
    EXPECT(sys::set_fs_base(reinterpret_cast<uint64_t>(&mine)) == abi::Err::Ok);
    EXPECT(fs_self() == &mine && fs_tag() == mine.tag);
    Result<ipc::Handle> helper = ipc::start_thread(&fs_race_thread, &race, 4);
    EXPECT(helper);
    while (!__atomic_load_n(&race.ready, __ATOMIC_ACQUIRE)) (void)sys::yield(helper.value().get());
    int failures = 0, calls_failed = 0;
    for (int i = 0; i < kFsRounds; ++i) {
        if (i % 3 == 0) {
            if (!ipc::call(g_pong_ep, ipc::Message(1).set_word(0, uint64_t(i)))) ++calls_failed;
        } else {
            (void)sys::yield(i % 3 == 1 ? helper.value().get() : abi::kNoHandle);
        }
        if (fs_self() != &mine || fs_tag() != mine.tag) ++failures;
    }
    // Refused: the first value past the user half, the kernel half, ~0.
    const uint64_t bad[] = {abi::kFsBaseEnd, 0xFFFF800000000000, 0xFFFFFFFF80000000, ~0ull};
    int accepted = 0;
    for (uint64_t b : bad) {
        if (sys::set_fs_base(b) != abi::Err::InvalidArgument) ++accepted;
        if (fs_self() != &mine) ++failures;
    }
    __atomic_store_n(&race.stop, true, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&race.done, __ATOMIC_ACQUIRE)) (void)sys::yield();
    printf("  %d rounds: main thread %d, helper %d wrong reads of %%fs:0\n", kFsRounds, failures,
           race.failures);
    EXPECT(sys::set_fs_base(0) == abi::Err::Ok);
    EXPECT(failures == 0 && race.failures == 0);
    EXPECT(calls_failed == 0 && accepted == 0);
    return true;
}

// Ring 3 can clear its own FS base behind the kernel's back: loading a
// selector into FS loads that descriptor's base, 0. Another thread with the
// same FS base value must still get that value when it runs next, though
// the kernel last wrote that very value. The FS base here is an offset
// (8), not a pointer: %fs:ADDR reads markers[1] with it, markers[0] with
// base 0, and faults with neither.
struct FsSame {
    uint64_t markers[2];
    bool ready;
    bool go;
    bool done;
    uint64_t seen;  // what the helper read once the main thread had cleared its own
};

uint64_t fs_read_at(const uint64_t* address) {
    uint64_t v;
    asm volatile("mov %%fs:(%1), %0" : "=r"(v) : "r"(address) : "memory");
    return v;
}

void fs_same_thread(void* arg) {
    auto& t = *static_cast<FsSame*>(arg);
    (void)sys::set_fs_base(8);
    __atomic_store_n(&t.ready, true, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&t.go, __ATOMIC_ACQUIRE)) (void)sys::yield();
    __atomic_store_n(&t.seen, fs_read_at(&t.markers[0]), __ATOMIC_RELAXED);
    __atomic_store_n(&t.done, true, __ATOMIC_RELEASE);
}

bool fs_base_survives_a_selector_load_elsewhere() {
    constexpr uint64_t kRight = 0x5157, kWrong = 0xBAD;
    static FsSame t{};
    t.markers[0] = kWrong;
    t.markers[1] = kRight;
    EXPECT(sys::set_fs_base(8) == abi::Err::Ok);
    EXPECT(fs_read_at(&t.markers[0]) == kRight);
    Result<ipc::Handle> helper = ipc::start_thread(&fs_same_thread, &t, 4);
    EXPECT(helper);
    while (!__atomic_load_n(&t.ready, __ATOMIC_ACQUIRE)) (void)sys::yield(helper.value().get());
    // The user data selector (what SS holds) into FS: base 0 for this thread.
    uint16_t data;
    asm volatile("mov %%ss, %0; mov %0, %%fs" : "=r"(data)::"memory");
    uint64_t own = fs_read_at(&t.markers[0]);
    __atomic_store_n(&t.go, true, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&t.done, __ATOMIC_ACQUIRE)) (void)sys::yield(helper.value().get());
    // The null selector back, and an FS base the kernel knows.
    asm volatile("mov %0, %%fs" ::"r"(uint16_t{0}) : "memory");
    EXPECT(sys::set_fs_base(0) == abi::Err::Ok);
    EXPECT(own == kWrong);  // the premise: this thread's FS base was 0 then
    EXPECT(t.seen == kRight);
    return true;
}

// When the last handle that may receive on an endpoint goes, nobody can
// ever answer what waits there: a caller queued on it wakes with Destroyed,
// and later calls fail at once, instead of waiting for ever (a server that
// died). A copy with the Receive right keeps it open.
struct QueuedCall {
    abi::HandleValue send = abi::kNoHandle;
    volatile int state = 0;  // 1: calling, 2: returned
    volatile uint64_t err = 0;
};

void queued_caller(void* arg) {
    auto& q = *static_cast<QueuedCall*>(arg);
    q.state = 1;
    ipc::Endpoint send(q.send);
    Result<ipc::Received> r = ipc::call(send, ipc::Message(7));
    (void)send.release();  // the test's handle
    q.err = r ? 0 : uint64_t(r.error());
    q.state = 2;
}

bool last_receive_handle_ends_queued_calls() {
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    Result<ipc::Endpoint> send = ep->mint(abi::kRightSend, 0);
    EXPECT(send);
    static QueuedCall q;
    q.send = send->get();
    Result<ipc::Handle> caller = ipc::start_thread(&queued_caller, &q, 4);
    EXPECT(caller);
    while (q.state == 0) (void)sys::yield();
    for (int i = 0; i < 10; ++i) (void)sys::yield();  // it queues its call and blocks
    EXPECT(q.state == 1);
    EXPECT(ep->close());  // the only handle that could receive
    for (int i = 0; i < 1000 && q.state != 2; ++i) (void)sys::yield();
    EXPECT(q.state == 2);
    EXPECT(abi::Err(q.err) == abi::Err::Destroyed);
    EXPECT(ipc::call(*send, ipc::Message(8)).error() == abi::Err::Destroyed);

    Result<ipc::Endpoint> ep2 = ipc::Endpoint::create();
    EXPECT(ep2);
    Result<ipc::Endpoint> receiver = ep2->mint(abi::kRightReceive, 0);
    Result<ipc::Endpoint> send2 = ep2->mint(abi::kRightSend, 0);
    EXPECT(receiver && send2);
    EXPECT(ep2->close());
    EXPECT(ipc::call(*send2, ipc::Message(9), abi::kNoWait).error() == abi::Err::WouldBlock);
    EXPECT(receiver->close());
    EXPECT(ipc::call(*send2, ipc::Message(9), abi::kNoWait).error() == abi::Err::Destroyed);
    // A badge names a sender: no handle that may receive carries one.
    Result<ipc::Endpoint> ep3 = ipc::Endpoint::create();
    EXPECT(ep3);
    EXPECT(ep3->mint(abi::kRightSend | abi::kRightReceive, 0x99).error() ==
           abi::Err::InvalidArgument);
    return true;
}

// A call, recv or reply_recv that fails returns 0 in its message
// registers r0..r5 (docs/syscalls.md): nothing arrived. Also when it blocked
// in the entry stub's hit path, which keeps no argument of the thread it
// blocks (what its frame held there is stale kernel stack): a Call that a
// server took and never answered (the server ends: PeerDied), a ReplyRecv
// whose receive waited on an endpoint that then died (Destroyed); and when
// it was refused at once (a bad handle, nothing to receive without waiting).
struct FailedIpc {
    abi::HandleValue ep = abi::kNoHandle;
    bool exit_unanswered = false;  // else: wait in ReplyRecv until the endpoint dies
    sys::Ret answer{};             // what the ReplyRecv returned
    volatile int state = 0;        // 1: it answered the first call; 2: its ReplyRecv returned
};

constexpr uint64_t kFailedIpcReply = abi::MsgInfo{3, 0, 0, false}.encode();

void failed_ipc_server(void* arg) {
    auto& f = *static_cast<FailedIpc*>(arg);
    sys::Ret r = sys::invoke(abi::Sys::Recv, f.ep, 0, 0, 0, 0, 0, abi::kForever);
    if (!r.ok()) return;
    f.state = 1;
    // Answers the first call and waits for the next one.
    r = sys::invoke(abi::Sys::ReplyRecv, f.ep, kFailedIpcReply, 21, 22, 23, 24, abi::kForever);
    if (f.exit_unanswered) return;  // the thread ends with that call unanswered
    f.answer = r;
    f.state = 2;
}

bool same_words(const sys::Ret& r, uint64_t w0, uint64_t w1, uint64_t w2, uint64_t w3) {
    return r.words[0] == w0 && r.words[1] == w1 && r.words[2] == w2 && r.words[3] == w3;
}

bool cleared(const sys::Ret& r) {
    return r.r0 == 0 && r.r1 == 0 && same_words(r, 0, 0, 0, 0);
}

bool failed_ipc_clears_its_message_registers() {
    uint64_t first = abi::MsgInfo{1, 0, 0, false}.encode();
    uint64_t second = abi::MsgInfo{2, 0, 0, false}.encode();
    {
        Result<ipc::Endpoint> ep = ipc::Endpoint::create();
        EXPECT(ep);
        static FailedIpc f;
        f.ep = ep->get();
        f.exit_unanswered = true;
        EXPECT(ipc::start_thread(&failed_ipc_server, &f, 4));
        EXPECT(sys::invoke(abi::Sys::Call, f.ep, first, 0, 0, 0, 0, abi::kForever).ok());
        // The server waits in its ReplyRecv: this call goes to it, which ends.
        sys::Ret r = sys::invoke(abi::Sys::Call, f.ep, second, 11, 12, 13, 14, abi::kForever);
        EXPECT(r.status == abi::Err::PeerDied);
        EXPECT(cleared(r));
        // Refused at once: the same.
        r = sys::invoke(abi::Sys::Call, abi::HandleValue(0xFFFF), second, 11, 12, 13, 14,
                        abi::kForever);
        EXPECT(r.status == abi::Err::BadHandle && cleared(r));
        r = sys::invoke(abi::Sys::Recv, f.ep, 5, 11, 12, 13, 14, abi::kNoWait);
        EXPECT(r.status == abi::Err::WouldBlock && cleared(r));
        r = sys::invoke(abi::Sys::ReplyRecv, f.ep, second, 11, 12, 13, 14, abi::kNoWait);
        EXPECT(r.status == abi::Err::WouldBlock && cleared(r));
        // A send has no message to receive: its registers stay.
        r = sys::invoke(abi::Sys::Send, f.ep, second, 11, 12, 13, 14, abi::kNoWait);
        EXPECT(r.status == abi::Err::WouldBlock && r.r0 == f.ep && r.r1 == second &&
               same_words(r, 11, 12, 13, 14));
    }
    {
        Result<ipc::Endpoint> ep = ipc::Endpoint::create();
        EXPECT(ep);
        static FailedIpc f;
        f.ep = ep->get();
        EXPECT(ipc::start_thread(&failed_ipc_server, &f, 4));
        sys::Ret r = sys::invoke(abi::Sys::Call, f.ep, first, 0, 0, 0, 0, abi::kForever);
        EXPECT(r.ok() && r.r1 == kFailedIpcReply && same_words(r, 21, 22, 23, 24));
        EXPECT(ep->close());  // the only handle that may receive: the endpoint dies
        for (int i = 0; i < 1000 && f.state != 2; ++i) (void)sys::yield();
        EXPECT(f.state == 2);
        EXPECT(f.answer.status == abi::Err::Destroyed);
        EXPECT(cleared(f.answer));
    }
    return true;
}

// --- Between CPUs (docs/smp.md) ---
// With one CPU there is nothing to cross: each case says so and passes.

// A pong on the first CPU after this one that the kernel accepts.
struct Pong {
    ipc::Endpoint ep;
    uint64_t pid = 0;
    uint32_t cpu = 0;
    abi::HandleValue process = abi::kNoHandle;
};

bool spawn_pong_elsewhere(Pong* p) {
    Result<ipc::Endpoint> e = ipc::Endpoint::create();
    EXPECT(e);
    p->ep = std::move(e).value();
    abi::HandleValue h = p->ep.get();
    for (uint32_t k = 1; k < g_cpu_count; ++k) {
        p->cpu = (g_cpu + k) % g_cpu_count;
        abi::Err err = abi::Err::Ok;
        p->process =
            spawn(g_modules, "pong", 0, &h, 1, true, &err, g_deaths.get(), &p->pid, p->cpu);
        if (p->process != abi::kNoHandle) return true;
        EXPECT(err == abi::Err::InvalidArgument);  // a CPU that did not start: the next one
    }
    p->process = abi::kNoHandle;
    return true;  // no other CPU online: the caller says so
}

bool one_cpu() {
    if (g_cpu_count >= 2) return false;
    printf("  one CPU: nothing to cross\n");
    return true;
}

// After spawn_pong_elsewhere(): none spawned, as no other CPU is online.
bool no_other_cpu(const Pong& p) {
    if (p.process != abi::kNoHandle) return false;
    printf("  no other CPU online: nothing to cross\n");
    return true;
}

// Runs `body` with a pong spawned on another CPU, which `body` sees end
// (death_of), then closes the pong's process handle. With one CPU, or no
// other online, says there is nothing to cross and passes.
bool with_pong_elsewhere(bool (*body)(Pong& pong)) {
    if (one_cpu()) return true;
    Pong pong;
    EXPECT(spawn_pong_elsewhere(&pong));
    if (no_other_cpu(pong)) return true;
    EXPECT(body(pong));
    EXPECT(status_of(sys::invoke(abi::Sys::HandleClose, pong.process)) == abi::Err::Ok);
    return true;
}

constexpr uint64_t kCrossRoundTrips = 2000;

// This process and a pong on another CPU: every call a wake over there.
bool ping_pong_across_cpus(Pong& pong) {
    uint64_t sum = 0, expected = 0;
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < kCrossRoundTrips; ++i) {
        Result<ipc::Received> r = ipc::call(pong.ep, ipc::Message(1).set_word(0, i).set_word(1, i));
        EXPECT(r);
        // The CPU it was spawned on, and really another processor.
        EXPECT(r.value().message.word(2) == pong.cpu);
        EXPECT(r.value().message.word(3) != utest::apic_id());
        sum += r.value().message.word(0) + (r.value().message.word(1) ^ 0x5555);
        expected += i * 3 + 1 + i;
    }
    uint64_t t1 = rdtsc();
    printf("  %lu round trips between cpu %u and cpu %u, %lu TSC ticks each, checksum %s\n",
           kCrossRoundTrips, g_cpu, pong.cpu, (t1 - t0) / kCrossRoundTrips,
           sum == expected ? "ok" : "BAD");
    EXPECT(sum == expected);
    EXPECT(ipc::call(pong.ep, ipc::Message(0xFFFF)));
    EXPECT(death_of(pong.pid, 0));
    return true;
}

// A CPU that is not there: InvalidArgument, and nothing spawned.
bool spawn_on_a_missing_cpu_is_refused() {
    abi::HandleValue h = g_pong_ep.get();
    for (uint32_t cpu : {uint32_t(16), uint32_t(0x7FFFFFFF), g_cpu_count}) {
        abi::Err err = abi::Err::Ok;
        EXPECT(spawn(g_modules, "pong", 0, &h, 1, true, &err, abi::kNoHandle, nullptr, cpu) ==
               abi::kNoHandle);
        EXPECT(err == abi::Err::InvalidArgument);
    }
    return true;
}

// Kill of a process whose thread spins in user mode on another CPU: that
// CPU is interrupted, and the thread ends on its way back to user mode.
bool kill_on_another_cpu(Pong& pong) {
    Result<ipc::Received> r = ipc::call(pong.ep, ipc::Message(1));
    EXPECT(r && r.value().message.word(3) != utest::apic_id());  // really elsewhere
    EXPECT(ipc::call(pong.ep, ipc::Message(5).set_word(1, utest::kPongSpinKey)));  // then spins
    EXPECT(status_of(sys::invoke(abi::Sys::ProcessKill, pong.process)) == abi::Err::Ok);
    EXPECT(death_of(pong.pid, abi::kStatusKilled));
    return true;
}

// An unmap by a thread on one CPU reaches the TLB of another CPU that runs
// a thread of the same process: that thread's next read of the page faults
// (pong's label 7), though its CPU had the translation cached.
bool unmap_reaches_every_cpu(Pong& pong) {
    // Its reader thread goes to this CPU, which is not pong's.
    Result<ipc::Received> r = ipc::call(pong.ep, ipc::Message(7).set_word(0, g_cpu));
    if (r) printf("  pong answered %#lx\n", r.value().message.word(0));
    EXPECT(!r && r.error() == abi::Err::PeerDied);
    EXPECT(death_of(pong.pid, abi::status_fault(14)));
    return true;
}

// The first CPU after this one that takes the calling thread, which moves
// there; kCpuNone if none does.
constexpr uint32_t kCpuNone = ~0u;

// ThreadSetAffinity on the calling thread with xmm7 holding `value` across
// it, in one asm statement (nothing else may touch xmm7 in between);
// returns xmm7 afterwards. The move leaves the thread's FPU registers live
// in the CPU it left: the kernel must save them for the next CPU.
uint64_t set_affinity_keeping_xmm7(uint64_t mask, uint64_t value, abi::Err* err, uint32_t* cpu) {
    register uint64_t rax asm("rax") = uint64_t(abi::Sys::ThreadSetAffinity);
    register uint64_t rdi asm("rdi") = abi::kNoHandle;
    register uint64_t rsi asm("rsi") = mask;
    uint64_t out;
    asm volatile("movq %[v], %%xmm7\n\tsyscall\n\tmovq %%xmm7, %[out]"
                 : "+r"(rax), "+r"(rdi), "+r"(rsi), [out] "=&r"(out)
                 : [v] "r"(value)
                 : "rcx", "r11", "rdx", "r10", "r8", "r9", "xmm7", "memory");
    *err = abi::Err(rax);
    *cpu = uint32_t(rdi);
    return out;
}

uint64_t fs_word() {
    uint64_t v;
    asm volatile("mov %%fs:0, %0" : "=r"(v));
    return v;
}

// The calling thread moves between two CPUs, back and forth: it runs on
// the CPU each call names (CPUID says so), its FPU registers and its FS
// base go with it, and a mask that holds its CPU leaves it there.
bool thread_moves_between_cpus() {
    if (one_cpu()) return true;
    const uint32_t apic_here = utest::apic_id();
    uint32_t other = kCpuNone;
    for (uint32_t k = 1; k < g_cpu_count && other == kCpuNone; ++k) {
        uint32_t c = (g_cpu + k) % g_cpu_count;
        if (sys::set_affinity(abi::kNoHandle, (uint64_t(1) << c) | (uint64_t(1) << g_cpu)) ==
            abi::Err::Ok)
            other = c;
    }
    if (other == kCpuNone) {
        printf("  no other CPU online: nothing to cross\n");
        return true;
    }
    // Its own CPU is in that mask: it stayed.
    EXPECT(utest::apic_id() == apic_here);
    uint32_t apic_other = 0;  // learnt at the first move there
    uint64_t tls[2] = {0, 0};
    tls[0] = reinterpret_cast<uint64_t>(&tls[0]);
    tls[1] = reinterpret_cast<uint64_t>(&tls[1]);
    EXPECT(sys::set_fs_base(tls[0]) == abi::Err::Ok);
    for (uint64_t i = 0; i < 40; ++i) {
        uint32_t target = (i % 2) == 0 ? other : g_cpu;
        uint64_t value = 0x0123456789ABCDEFull ^ (i * 0x9E3779B97F4A7C15ull);
        abi::Err err = abi::Err::Ok;
        uint32_t cpu = kCpuNone;
        uint64_t got = set_affinity_keeping_xmm7(uint64_t(1) << target, value, &err, &cpu);
        EXPECT(err == abi::Err::Ok && cpu == target);
        EXPECT(got == value);
        if (i == 0) apic_other = utest::apic_id();
        EXPECT(apic_other != apic_here);
        EXPECT(utest::apic_id() == (target == g_cpu ? apic_here : apic_other));
        // The FS base set on the last CPU is the one it finds here.
        EXPECT(fs_word() == tls[i % 2]);
        EXPECT(sys::set_fs_base(tls[(i + 1) % 2]) == abi::Err::Ok);
    }
    EXPECT(utest::apic_id() == apic_here);
    EXPECT(sys::set_fs_base(0) == abi::Err::Ok);
    EXPECT(sys::set_affinity(abi::kNoHandle, 0) == abi::Err::InvalidArgument);
    EXPECT(sys::set_affinity(abi::kNoHandle, uint64_t(1) << g_cpu_count) ==
           abi::Err::InvalidArgument);
    uint32_t cpu = kCpuNone;
    EXPECT(sys::set_affinity(abi::kNoHandle, uint64_t(1) << g_cpu, &cpu) == abi::Err::Ok);
    EXPECT(cpu == g_cpu);
    return true;
}

struct Spinner {
    bool stop = false;
    bool done = false;
    uint32_t first_apic = 0;  // where it spun first
    uint32_t apic = 0;        // where it spun last
    uint64_t spins = 0;
};

void spin_until_stopped(void* arg) {
    auto* s = static_cast<Spinner*>(arg);
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        if (s->spins == 0) __atomic_store_n(&s->first_apic, utest::apic_id(), __ATOMIC_RELAXED);
        __atomic_store_n(&s->apic, utest::apic_id(), __ATOMIC_RELAXED);
        __atomic_store_n(&s->spins, s->spins + 1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&s->done, true, __ATOMIC_RELEASE);
}

// Two CPU-bound threads made on this CPU (and bound to it, as their
// creator is) are then allowed on every CPU: they stay where they are, but
// with threads waiting for this CPU while another idles, the balancing rule
// moves them over, one at a tick (docs/smp.md, "Placement").
bool busy_threads_spread_to_idle_cpus() {
    if (one_cpu()) return true;
    const uint32_t apic_here = utest::apic_id();
    constexpr int kSpinners = 2;
    Spinner spinners[kSpinners];
    ipc::Handle threads[kSpinners];
    for (int i = 0; i < kSpinners; ++i) {
        Result<ipc::Handle> t = ipc::start_thread(spin_until_stopped, &spinners[i]);
        EXPECT(t);
        threads[i] = std::move(t).value();
    }
    for (Spinner& s : spinners) {
        while (__atomic_load_n(&s.spins, __ATOMIC_ACQUIRE) == 0) (void)sys::yield();
        EXPECT(s.apic == apic_here);
    }
    // Every CPU that takes a thread.
    uint64_t all = uint64_t(1) << g_cpu;
    for (uint32_t c = 0; c < g_cpu_count; ++c) {
        uint64_t wider = all | (uint64_t(1) << c);
        if (sys::set_affinity(threads[0].get(), wider) == abi::Err::Ok) all = wider;
    }
    for (ipc::Handle& t : threads) {
        uint32_t cpu = kCpuNone;
        EXPECT(sys::set_affinity(t.get(), all, &cpu) == abi::Err::Ok);
        // Its CPU is allowed: it stays. (The first, allowed elsewhere while
        // the mask grew, may have been moved by a tick already.)
        EXPECT(cpu == g_cpu || (&t == &threads[0] && cpu < 64 && ((all >> cpu) & 1) != 0));
    }
    int moved = 0;
    for (int y = 0; y < 2000 && moved == 0; ++y) {
        (void)sys::yield();
        for (Spinner& s : spinners)
            moved += __atomic_load_n(&s.apic, __ATOMIC_RELAXED) != apic_here;
    }
    for (Spinner& s : spinners) __atomic_store_n(&s.stop, true, __ATOMIC_RELEASE);
    for (Spinner& s : spinners) {
        while (!__atomic_load_n(&s.done, __ATOMIC_ACQUIRE)) (void)sys::yield();
    }
    EXPECT(moved > 0);
    return true;
}

// The CPUs running threads, as ThreadSetAffinity tells them: those below
// cpu_count whose bit it takes (one that did not start is refused). This
// thread stays on its CPU, and ends with the mask `restore`.
uint64_t online_cpus(uint64_t restore) {
    uint64_t online = uint64_t(1) << g_cpu;
    for (uint32_t c = 0; c < g_cpu_count && c < 64; ++c) {
        uint64_t wider = online | (uint64_t(1) << c);
        if (sys::set_affinity(abi::kNoHandle, wider) == abi::Err::Ok) online = wider;
    }
    if (sys::set_affinity(abi::kNoHandle, restore) != abi::Err::Ok) {
        printf("  cannot set the mask back to %#lx\n", restore);
    }
    return online;
}

// These two run first, while main()'s thread still has the mask it
// started with. This process is init, which the kernel starts on the boot
// CPU with every running CPU in its mask, as StartInfo::affinity says
// (docs/smp.md, "Placement").
bool init_may_run_on_every_cpu() {
    EXPECT(((g_start_affinity >> g_cpu) & 1) != 0);
    EXPECT(g_start_affinity == online_cpus(g_start_affinity));
    return true;
}

// The threads it makes take that mask, each homed on the least loaded CPU:
// with this one busy (this thread runs) and the others idle, each new
// spinner starts on another idle CPU, placed at its creation (the
// balancing rule leaves a thread that has not run yet alone).
bool new_threads_start_on_idle_cpus() {
    if (one_cpu()) return true;
    const int others = __builtin_popcountll(g_start_affinity) - 1;
    if (others == 0) {
        printf("  no other CPU online: nothing to spread to\n");
        return true;
    }
    const uint32_t apic_here = utest::apic_id();
    constexpr int kMaxSpinners = 3;
    const int n = others < kMaxSpinners ? others : kMaxSpinners;
    Spinner spinners[kMaxSpinners];
    ipc::Handle threads[kMaxSpinners];
    int started = 0;
    while (started < n) {
        Result<ipc::Handle> t = ipc::start_thread(spin_until_stopped, &spinners[started]);
        if (!t) break;
        threads[started++] = std::move(t).value();
    }
    for (int i = 0; i < started; ++i) {
        while (__atomic_load_n(&spinners[i].spins, __ATOMIC_ACQUIRE) == 0) (void)sys::yield();
    }
    int elsewhere = 0;
    bool distinct = true;
    for (int i = 0; i < started; ++i) {
        uint32_t first = __atomic_load_n(&spinners[i].first_apic, __ATOMIC_RELAXED);
        elsewhere += first != apic_here;
        for (int j = 0; j < i; ++j) distinct &= first != spinners[j].first_apic;
    }
    // Stopped, whatever the result: they use this frame.
    for (int i = 0; i < started; ++i) __atomic_store_n(&spinners[i].stop, true, __ATOMIC_RELEASE);
    for (int i = 0; i < started; ++i) {
        while (!__atomic_load_n(&spinners[i].done, __ATOMIC_ACQUIRE)) (void)sys::yield();
    }
    printf("  %d spinners started on %d other CPUs\n", started, elsewhere);
    EXPECT(started == n && elsewhere == n && distinct);
    return true;
}

constexpr uint32_t kNoCpu = ~0u;

// Spawns a pong without a CPU, asks it where it runs and stops it: the CPU
// its StartInfo names, kNoCpu when something failed.
uint32_t where_a_pong_starts() {
    Result<ipc::Endpoint> e = ipc::Endpoint::create();
    if (!e) return kNoCpu;
    abi::HandleValue h = e->get();
    uint64_t pid = 0;
    abi::HandleValue process =
        spawn(g_modules, "pong", 0, &h, 1, true, nullptr, g_deaths.get(), &pid);
    if (process == abi::kNoHandle) return kNoCpu;
    Result<ipc::Received> r = ipc::call(*e, ipc::Message(1).set_word(0, 1));
    uint32_t cpu = r ? uint32_t(r->message.word(2)) : kNoCpu;
    bool ended = ipc::call(*e, ipc::Message(0xFFFF)) && death_of(pid, 0);
    (void)sys::invoke(abi::Sys::HandleClose, process);
    return ended ? cpu : kNoCpu;
}

// A process spawned without a CPU starts on the least loaded CPU that runs
// threads, its spawner not counted and the spawner's CPU among equals
// (docs/smp.md, "Placement"): beside this thread while nothing else waits
// for this CPU, on another while a thread bound here waits for it.
bool spawn_goes_to_the_least_loaded_cpu() {
    if (one_cpu()) return true;
    const uint32_t beside = where_a_pong_starts();
    Spinner spinner;  // bound here, as this thread is
    Result<ipc::Handle> t = ipc::start_thread(spin_until_stopped, &spinner);
    EXPECT(t);
    // Once it has spun, it waits in this CPU's queue whenever this runs.
    while (__atomic_load_n(&spinner.spins, __ATOMIC_ACQUIRE) == 0) (void)sys::yield();
    const uint32_t busy_here = where_a_pong_starts();
    // Stopped, whatever the result: it uses this frame.
    __atomic_store_n(&spinner.stop, true, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&spinner.done, __ATOMIC_ACQUIRE)) (void)sys::yield();
    printf("  spawned from cpu %u: on cpu %u, then with a thread waiting here on cpu %u\n", g_cpu,
           beside, busy_here);
    EXPECT(beside == g_cpu);
    EXPECT(busy_here != kNoCpu && busy_here != g_cpu);
    return true;
}

// Threads of one process on up to four CPUs map, fill, check and unmap at
// the same time: every unmap shoots down the other CPUs, which run the same
// address space, while they shoot at it (docs/smp.md: an initiator serves
// the requests made of it while it waits). Nothing hangs, and no thread
// sees another's data in its fresh pages.
struct ShootRace {
    uint32_t cpu = 0;
    int failures = 0;
    bool moved = false;
    bool done = false;
};
constexpr int kShootRounds = 200;

int shoot_rounds(uint32_t me) {
    int failures = 0;
    for (int round = 0; round < kShootRounds; ++round) {
        sys::Ret m =
            sys::invoke(abi::Sys::MemMap, 0, 2 * abi::kPageSize, abi::kProtRead | abi::kProtWrite);
        if (!m.ok()) {
            ++failures;
            continue;
        }
        auto* words = reinterpret_cast<volatile uint64_t*>(m.r0);
        uint64_t mark = (uint64_t(me) << 32) | uint64_t(round);
        for (int w = 0; w < 1024; w += 64) {
            if (words[w] != 0) ++failures;  // fresh pages read zero
            words[w] = mark;
        }
        for (int w = 0; w < 1024; w += 64) failures += words[w] == mark ? 0 : 1;
        if (!sys::invoke(abi::Sys::MemUnmap, 0, m.r0, 2 * abi::kPageSize).ok()) ++failures;
    }
    return failures;
}

void shoot_race_thread(void* arg) {
    auto* r = static_cast<ShootRace*>(arg);
    r->moved = sys::set_affinity(abi::kNoHandle, uint64_t(1) << r->cpu) == abi::Err::Ok;
    r->failures = r->moved ? shoot_rounds(r->cpu) : 1;
    __atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
}

bool unmaps_on_every_cpu_at_once() {
    if (one_cpu()) return true;
    constexpr uint32_t kMaxRacers = 3;
    ShootRace racers[kMaxRacers];
    uint32_t n = 0;
    for (uint32_t k = 1; k < g_cpu_count && n < kMaxRacers; ++k) {
        racers[n].cpu = (g_cpu + k) % g_cpu_count;
        Result<ipc::Handle> t = ipc::start_thread(shoot_race_thread, &racers[n], 4);
        EXPECT(t);
        ++n;
    }
    uint64_t t0 = rdtsc();
    int failures = shoot_rounds(g_cpu);
    int moved = 0;
    for (uint32_t i = 0; i < n; ++i) {
        while (!__atomic_load_n(&racers[i].done, __ATOMIC_ACQUIRE)) (void)sys::yield();
        failures += racers[i].failures;
        moved += racers[i].moved ? 1 : 0;
    }
    printf("  %d map/check/unmap rounds on each of %d CPUs at once, %lu TSC ticks; %d failed\n",
           kShootRounds, moved + 1, rdtsc() - t0, failures);
    EXPECT(failures == 0 && moved >= 1);
    return true;
}

// Threads that move while they talk across CPUs: clients call an echo
// thread of this process, each moving itself every few calls, while this
// thread moves every one of them — running, ready or blocked in a call or
// a receive — to random sets of CPUs. So a CPU finds its running thread
// and others on its move list at once, moves race with cross-CPU wakes,
// and the balancing rule joins in. Every call gets its own answer, and
// nothing hangs. (Seeded, the seed printed.)
constexpr int kMoveClients = 3;
constexpr int kMoveRounds = 400;
constexpr uint64_t kMoveCallTimeoutNs = 10'000'000'000;

struct MoveStress {
    ipc::Endpoint ep;
    uint32_t online = 0;  // the CPUs that came up, a bit each
    uint64_t seed = 0;
    int failures = 0;       // wrong or failed calls
    int move_failures = 0;  // refused moves
    int clients_done = 0;
    int clients_exited = 0;  // past every use of this struct
    bool stop = false;       // the clients may end (none is moved from then on)
    bool echo_done = false;
};

struct MoveClient {
    MoveStress* s = nullptr;
    uint32_t id = 0;
    uint64_t rng = 0;
};

uint64_t next_random(uint64_t& x) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

// A random nonempty set of the CPUs that came up.
uint64_t random_mask(uint64_t& rng, uint32_t online) {
    for (;;) {
        uint64_t m = next_random(rng) & online;
        if (m != 0) return m;
    }
}

void move_echo(void* arg) {
    auto* s = static_cast<MoveStress*>(arg);
    Result<ipc::Received> r = ipc::recv(s->ep);
    while (r && r.value().message.label() != 0xFFFF) {
        ipc::Message answer(1);
        answer.set_word(0, r.value().message.word(0) + 1);
        r = ipc::reply_recv(s->ep, answer);
    }
    if (!r)
        __atomic_fetch_add(&s->failures, 1, __ATOMIC_RELAXED);
    else
        (void)ipc::reply(ipc::Message(0));
    __atomic_store_n(&s->echo_done, true, __ATOMIC_RELEASE);
}

void move_client(void* arg) {
    auto* c = static_cast<MoveClient*>(arg);
    MoveStress& s = *c->s;
    int failures = 0;
    int move_failures = 0;
    for (uint64_t i = 0; i < kMoveRounds; ++i) {
        uint64_t word = (uint64_t(c->id) << 32) | i;
        // A timeout, so that a lost answer is a failure, not a hang.
        Result<ipc::Received> r =
            ipc::call(s.ep, ipc::Message(1).set_word(0, word), kMoveCallTimeoutNs);
        if (!r || r.value().message.word(0) != word + 1) ++failures;
        if (next_random(c->rng) % 8 == 0 &&
            sys::set_affinity(abi::kNoHandle, random_mask(c->rng, s.online)) != abi::Err::Ok)
            ++move_failures;
    }
    __atomic_fetch_add(&s.failures, failures, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s.move_failures, move_failures, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s.clients_done, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&s.stop, __ATOMIC_ACQUIRE)) (void)sys::yield();
    __atomic_fetch_add(&s.clients_exited, 1, __ATOMIC_RELEASE);
}

// Not on the stack: a check that fails part way returns with the threads
// still running, and they use these.
MoveStress g_move_stress;
MoveClient g_move_clients[kMoveClients];

bool moves_during_cross_cpu_ipc() {
    if (one_cpu()) return true;
    MoveStress& s = g_move_stress;
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    s.ep = std::move(ep).value();
    s.seed = 0x9E3779B97F4A7C15ull ^ rdtsc();
    printf("  seed %#lx\n", s.seed);
    uint64_t rng = s.seed | 1;
    ipc::Handle threads[kMoveClients + 1];
    Result<ipc::Handle> echo = ipc::start_thread(move_echo, &s);
    EXPECT(echo);
    threads[0] = std::move(echo).value();
    // The CPUs that came up: those the echo thread may be bound to.
    for (uint32_t c = 0; c < g_cpu_count && c < 64; ++c) {
        if (sys::set_affinity(threads[0].get(), uint64_t(1) << c) == abi::Err::Ok)
            s.online |= 1u << c;
    }
    EXPECT(s.online != 0);
    MoveClient* clients = g_move_clients;
    for (int i = 0; i < kMoveClients; ++i) {
        clients[i] = MoveClient{&s, uint32_t(i + 1), next_random(rng) | 1};
        Result<ipc::Handle> t = ipc::start_thread(move_client, &clients[i]);
        EXPECT(t);
        threads[i + 1] = std::move(t).value();
    }
    uint64_t moves = 0;
    uint64_t t0 = rdtsc();
    while (__atomic_load_n(&s.clients_done, __ATOMIC_ACQUIRE) < kMoveClients) {
        for (ipc::Handle& t : threads) {
            if (sys::set_affinity(t.get(), random_mask(rng, s.online)) != abi::Err::Ok)
                __atomic_fetch_add(&s.move_failures, 1, __ATOMIC_RELAXED);
            ++moves;
        }
        if (next_random(rng) % 4 == 0) (void)sys::yield();
    }
    __atomic_store_n(&s.stop, true, __ATOMIC_RELEASE);
    bool echo_stopped = bool(ipc::call(s.ep, ipc::Message(0xFFFF), kMoveCallTimeoutNs));
    // Every thread done: the process goes on with other tests.
    while (!__atomic_load_n(&s.echo_done, __ATOMIC_ACQUIRE) ||
           __atomic_load_n(&s.clients_exited, __ATOMIC_ACQUIRE) < kMoveClients)
        (void)sys::yield();
    EXPECT(echo_stopped);
    printf(
        "  %d clients x %d calls, %lu moves asked from outside, %lu TSC ticks; %d calls and %d "
        "moves failed\n",
        kMoveClients, kMoveRounds, moves, rdtsc() - t0, s.failures, s.move_failures);
    EXPECT(s.failures == 0 && s.move_failures == 0);
    return true;
}

// Reply waits ended from every CPU (docs/locking.md, "Reply waits are
// guarded by a scheduler lock"): clients on the other CPUs call a server
// thread of this CPU, which answers some calls at once, saves others and
// hands them to an answerer thread on yet another CPU, drops some (the
// caller fails with PeerDied) and holds some until their caller timed out
// on its own CPU, after which the answer is refused. So replies, drops and
// timeouts end reply waits on a server's callers queue and on saved
// replies, each from a CPU other than the waiter's, all at once. Every
// call gets exactly the outcome its kind says; nothing hangs.
constexpr int kRwClients = 3;
constexpr uint64_t kRwCalls = 120;
constexpr uint64_t kRwLongNs = 10'000'000'000;
constexpr uint64_t kRwShortNs = 3'000'000;  // 3 ticks
constexpr uint32_t kRwRing = 8;

enum RwKind : uint64_t { kRwAtOnce = 0, kRwSaved = 1, kRwDropped = 2, kRwLate = 3 };

struct RwEntry {
    ipc::Reply reply;
    uint64_t word = 0;
};

struct RwStress {
    ipc::Endpoint ep;
    // Saved replies from the server to the answerer (one producer, one
    // consumer); a word of ~0 ends the answerer.
    RwEntry ring[kRwRing];
    uint32_t head = 0;  // next to take (answerer)
    uint32_t tail = 0;  // next to fill (server)
    uint64_t late_timed_out[kRwClients + 1] =
        {};  // per client: 1 + the last late call that timed out
    int failures = 0;
    int answered_late = 0;  // late answers the kernel refused, as it must
    int clients_done = 0;
    bool server_done = false;
    bool answerer_done = false;
};

RwStress g_rw;

uint64_t rw_kind(uint64_t word) {
    return (word * 0x9E3779B97F4A7C15ull >> 61) & 3;
}

void rw_push(RwStress& s, ipc::Reply reply, uint64_t word) {
    while (__atomic_load_n(&s.tail, __ATOMIC_RELAXED) -
               __atomic_load_n(&s.head, __ATOMIC_ACQUIRE) ==
           kRwRing)
        (void)sys::yield();
    RwEntry& e = s.ring[s.tail % kRwRing];
    e.reply = std::move(reply);
    e.word = word;
    __atomic_store_n(&s.tail, s.tail + 1, __ATOMIC_RELEASE);
}

void rw_server(void* arg) {
    auto* s = static_cast<RwStress*>(arg);
    Result<ipc::Received> r = ipc::recv(s->ep);
    int failures = 0;
    while (r && r.value().message.label() != 0xFFFF) {
        uint64_t word = r.value().message.word(0);
        uint64_t kind = rw_kind(word);
        if (kind == kRwAtOnce) {
            r = ipc::reply_recv(s->ep, ipc::Message(1).set_word(0, word + 1));
            continue;
        }
        Result<ipc::Reply> saved = ipc::reply_save();
        if (!saved) {
            // A late call may time out between its receive and the save:
            // there is nothing left to save then. Anything else is wrong.
            if (kind != kRwLate || saved.error() != abi::Err::BadHandle) ++failures;
        } else if (kind == kRwDropped) {
            saved.value().drop();
        } else {
            rw_push(*s, std::move(saved).value(), word);
        }
        r = ipc::recv(s->ep);
    }
    if (!r)
        ++failures;
    else
        (void)ipc::reply(ipc::Message(0));
    rw_push(*s, ipc::Reply(), ~uint64_t(0));
    __atomic_fetch_add(&s->failures, failures, __ATOMIC_RELAXED);
    __atomic_store_n(&s->server_done, true, __ATOMIC_RELEASE);
}

void rw_answerer(void* arg) {
    auto* s = static_cast<RwStress*>(arg);
    int failures = 0;
    int late = 0;
    for (;;) {
        while (__atomic_load_n(&s->head, __ATOMIC_RELAXED) ==
               __atomic_load_n(&s->tail, __ATOMIC_ACQUIRE))
            (void)sys::yield();
        RwEntry& e = s->ring[s->head % kRwRing];
        ipc::Reply reply = std::move(e.reply);
        uint64_t word = e.word;
        __atomic_store_n(&s->head, s->head + 1, __ATOMIC_RELEASE);
        if (word == ~uint64_t(0)) break;
        if (rw_kind(word) == kRwLate) {
            // Held until its caller gave up: the answer must be refused.
            uint32_t client = uint32_t(word >> 32);
            uint64_t call = word & 0xFFFFFFFF;
            while (__atomic_load_n(&s->late_timed_out[client], __ATOMIC_ACQUIRE) < call + 1)
                (void)sys::yield();
            if (reply.send(ipc::Message(1).set_word(0, word + 1)).error() == abi::Err::BadHandle)
                ++late;
            else
                ++failures;
        } else if (!reply.send(ipc::Message(1).set_word(0, word + 1))) {
            ++failures;
        }
    }
    __atomic_fetch_add(&s->failures, failures, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->answered_late, late, __ATOMIC_RELAXED);
    __atomic_store_n(&s->answerer_done, true, __ATOMIC_RELEASE);
}

void rw_client(void* arg) {
    RwStress& s = g_rw;
    uint32_t id = uint32_t(reinterpret_cast<uintptr_t>(arg));
    int failures = 0;
    for (uint64_t i = 0; i < kRwCalls; ++i) {
        uint64_t word = (uint64_t(id) << 32) | i;
        uint64_t kind = rw_kind(word);
        Result<ipc::Received> r = ipc::call(s.ep, ipc::Message(1).set_word(0, word),
                                            kind == kRwLate ? kRwShortNs : kRwLongNs);
        bool right = false;
        switch (kind) {
            case kRwAtOnce:
            case kRwSaved:
                right = r && r.value().message.word(0) == word + 1;
                break;
            case kRwDropped:
                right = !r && r.error() == abi::Err::PeerDied;
                break;
            case kRwLate:
                right = !r && r.error() == abi::Err::TimedOut;
                __atomic_store_n(&s.late_timed_out[id], i + 1, __ATOMIC_RELEASE);
                break;
        }
        if (!right) {
            printf("  client %u call %lu (kind %lu): %s\n", id, i, kind,
                   r ? "a wrong answer" : ipc::error_name(r.error()));
            ++failures;
        }
    }
    __atomic_fetch_add(&s.failures, failures, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s.clients_done, 1, __ATOMIC_RELEASE);
}

bool reply_waits_end_on_every_cpu() {
    RwStress& s = g_rw;
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    EXPECT(ep);
    s.ep = std::move(ep).value();
    auto pin = [](abi::HandleValue t, uint32_t cpu) {
        return sys::set_affinity(t, uint64_t(1) << (cpu % g_cpu_count)) == abi::Err::Ok;
    };
    Result<ipc::Handle> server = ipc::start_thread(rw_server, &s);
    EXPECT(server && pin(server.value().get(), g_cpu));
    Result<ipc::Handle> answerer = ipc::start_thread(rw_answerer, &s);
    EXPECT(answerer && pin(answerer.value().get(), g_cpu + 2));
    ipc::Handle clients[kRwClients];
    for (int i = 0; i < kRwClients; ++i) {
        Result<ipc::Handle> t =
            ipc::start_thread(rw_client, reinterpret_cast<void*>(uintptr_t(i + 1)));
        EXPECT(t && pin(t.value().get(), g_cpu + 1 + uint32_t(i)));
        clients[i] = std::move(t).value();
    }
    uint64_t t0 = rdtsc();
    while (__atomic_load_n(&s.clients_done, __ATOMIC_ACQUIRE) < kRwClients) (void)sys::yield();
    EXPECT(ipc::call(s.ep, ipc::Message(0xFFFF), kRwLongNs));
    while (!__atomic_load_n(&s.server_done, __ATOMIC_ACQUIRE) ||
           !__atomic_load_n(&s.answerer_done, __ATOMIC_ACQUIRE))
        (void)sys::yield();
    uint64_t late = 0;
    for (uint32_t c = 1; c <= kRwClients; ++c) {
        for (uint64_t i = 0; i < kRwCalls; ++i) late += rw_kind((uint64_t(c) << 32) | i) == kRwLate;
    }
    printf(
        "  %d clients x %lu calls on %u CPUs, %lu TSC ticks; %d late answers refused of %lu; "
        "%d failures\n",
        kRwClients, kRwCalls, g_cpu_count, rdtsc() - t0, s.answered_late, late, s.failures);
    EXPECT(s.failures == 0);
    // A late call that timed out before the server saved it (on the
    // endpoint, or between its receive and the save) has no answer to
    // refuse: at most that many fewer.
    EXPECT(s.answered_late > 0 && uint64_t(s.answered_late) <= late);
    return true;
}

bool kill_ends_a_process() {
    EXPECT(status_of(sys::invoke(abi::Sys::ProcessKill, g_pong)) == abi::Err::Ok);
    // Blocked in its receive, it is woken and ends: its supervisor is told.
    EXPECT(death_of(g_pong_pid, abi::kStatusKilled));
    ipc::Message probe(1);
    EXPECT(ipc::try_call(g_pong_ep, probe).error() == abi::Err::WouldBlock);
    return true;
}

}  // namespace

int main(uint64_t arg) {
    const abi::StartInfo& start = utest::start_info(arg);
    if (start.handle_count < 1) {
        printf("not ok - start: no boot-modules handle\n");
        return 1;
    }
    g_modules = start.handles[0];
    g_cpu = start.cpu;
    g_cpu_count = start.cpu_count;
    g_start_affinity = start.affinity;
    check(init_may_run_on_every_cpu(), "user_init_may_run_on_every_cpu");
    check(new_threads_start_on_idle_cpus(), "user_new_threads_start_on_idle_cpus");
    // The other cases speak of "this CPU" and "another": this thread stays
    // on its CPU, and the threads it makes take that mask of one.
    if (sys::set_affinity(abi::kNoHandle, uint64_t(1) << g_cpu) != abi::Err::Ok) {
        printf("not ok - start: cannot bind to cpu %u\n", g_cpu);
        return 1;
    }
    check(start_pong(), "user_spawn_server");
    check(ping_pong(), "user_ping_pong_100000");
    // After the ping-pong: its server, spawned above, has run and waits for
    // calls, not for this CPU.
    check(spawn_goes_to_the_least_loaded_cpu(), "user_spawn_goes_to_the_least_loaded_cpu");
    check(raw_round_trips(), "user_raw_round_trips_100000");
    check(missing_right_is_refused(), "user_missing_right_refused");
    check(forged_and_stale_handles_are_refused(), "user_forged_and_stale_handles_refused");
    check(badge_identifies_the_sender(), "user_badge_identifies_sender");
    check(reply_reaches_only_its_call(), "user_reply_reaches_only_its_call");
    check(receiving_again_releases_the_pending_call(),
          "user_receiving_again_releases_the_pending_call");
    check(spawn_passes_every_start_handle(), "user_spawn_passes_every_start_handle");
    check(handles_travel_in_messages(), "user_handles_travel_in_messages");
    check(undelivered_handles_come_back(), "user_undelivered_handles_come_back");
    check(faulting_process_dies_alone(), "user_faulting_process_dies_alone");
    check(death_notice_arrives_exactly_once(), "user_death_notice_exactly_once");
    check(last_handle_notice_exactly_once(), "user_last_handle_notice_exactly_once");
    check(bad_syscalls_are_refused(), "user_bad_syscalls_refused");
    check(nt_flag_stays_in_user_mode(), "user_nt_flag_stays_in_user_mode");
    check(concurrent_maps_stay_apart(), "user_concurrent_maps_stay_apart");
    check(large_map_reads_zero(), "user_large_map_reads_zero");
    check(fs_base_is_per_thread(), "user_fs_base_is_per_thread");
    check(fs_base_survives_a_selector_load_elsewhere(),
          "user_fs_base_survives_a_selector_load_elsewhere");
    check(with_pong_elsewhere(ping_pong_across_cpus), "user_ping_pong_across_cpus");
    check(spawn_on_a_missing_cpu_is_refused(), "user_spawn_on_a_missing_cpu_refused");
    check(with_pong_elsewhere(kill_on_another_cpu), "user_kill_on_another_cpu");
    check(with_pong_elsewhere(unmap_reaches_every_cpu), "user_unmap_reaches_every_cpu");
    check(thread_moves_between_cpus(), "user_thread_moves_between_cpus");
    check(busy_threads_spread_to_idle_cpus(), "user_busy_threads_spread_to_idle_cpus");
    check(unmaps_on_every_cpu_at_once(), "user_unmaps_on_every_cpu_at_once");
    check(moves_during_cross_cpu_ipc(), "user_moves_during_cross_cpu_ipc");
    check(reply_waits_end_on_every_cpu(), "user_reply_waits_end_on_every_cpu");
    check(kill_ends_a_process(), "user_kill_ends_a_process");
    check(last_receive_handle_ends_queued_calls(), "user_last_receive_handle_ends_queued_calls");
    check(failed_ipc_clears_its_message_registers(),
          "user_failed_ipc_clears_its_message_registers");
    printf("done: %d failed\n", g_failures);
    return g_failures;
}
