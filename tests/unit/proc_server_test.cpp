// The process server's state machine (servers/proc/procs.hpp): wait4 on
// zombies and on live children, WNOHANG, ECHILD, the order of deaths,
// orphans adopted and reaped by init, waiters that died, and every bad
// request getting a clear error.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "proc/procs.hpp"
#include "server_fakes.hpp"

namespace mk::servers_test {
namespace {

using Procs = proc_server::Procs<FakeReply>;
using proc::client_badge;
using proc::supervisor_badge;

constexpr uint64_t kInitBadge = 0;

class ProcServerTest : public ::testing::Test {
  protected:
    // A child of the process with `parent_badge`, spawned as `pid`: its
    // record id.
    uint64_t spawn(uint64_t parent_badge, uint64_t pid) {
        abi::Err e = abi::Err::Ok;
        uint64_t id = procs_.reserve(parent_badge, &e);
        EXPECT_NE(id, 0u) << ipc::error_name(e);
        procs_.spawned(id, pid);
        return id;
    }
    CallRef wait(uint64_t badge, uint64_t pid, uint64_t options = 0, bool call = true) {
        return issue([this](FakeRequest& r) { return procs_.wait(r); },
                     Message(proc::kWait).set_word(0, pid).set_word(1, options), badge, call);
    }
    void die(uint64_t id, uint64_t status) { procs_.died(supervisor_badge(id), status); }
    static bool reaped(const CallRef& c, uint64_t pid, uint64_t status) {
        return c->ok() && c->words[0] == pid && c->words[1] == status;
    }

    Procs procs_;
};

TEST_F(ProcServerTest, AZombieIsReapedAtOnceAndFreed) {
    uint64_t a = spawn(kInitBadge, 10);
    die(a, 7);
    EXPECT_EQ(procs_.stats().zombies, 1u);
    EXPECT_TRUE(reaped(wait(kInitBadge, 10), 10, 7));
    EXPECT_EQ(procs_.stats().processes, 0u);
    // Reaped once: it is no child any more.
    EXPECT_EQ(wait(kInitBadge, 10)->label, proc::kNoChild);
}

TEST_F(ProcServerTest, AParentWaitingGetsTheStatusWhenTheChildDies) {
    uint64_t a = spawn(kInitBadge, 10);
    CallRef w = wait(kInitBadge, 0);
    EXPECT_TRUE(w->waiting());
    EXPECT_EQ(procs_.stats().waiters, 1u);
    die(a, abi::status_fault(14));
    EXPECT_TRUE(reaped(w, 10, abi::status_fault(14)));
    EXPECT_EQ(procs_.stats().processes, 0u);
    EXPECT_EQ(procs_.stats().waiters, 0u);
}

TEST_F(ProcServerTest, AWaitForOnePidIgnoresTheOthers) {
    uint64_t a = spawn(kInitBadge, 10);
    uint64_t b = spawn(kInitBadge, 11);
    CallRef w = wait(kInitBadge, 11);
    die(a, 1);
    EXPECT_TRUE(w->waiting());
    EXPECT_EQ(procs_.stats().zombies, 1u);
    die(b, 2);
    EXPECT_TRUE(reaped(w, 11, 2));
    EXPECT_TRUE(reaped(wait(kInitBadge, 0), 10, 1));
}

TEST_F(ProcServerTest, TheOldestDeathIsReportedFirst) {
    uint64_t a = spawn(kInitBadge, 10);
    uint64_t b = spawn(kInitBadge, 11);
    uint64_t c = spawn(kInitBadge, 12);
    die(c, 3);
    die(a, 1);
    die(b, 2);
    EXPECT_TRUE(reaped(wait(kInitBadge, 0), 12, 3));
    EXPECT_TRUE(reaped(wait(kInitBadge, 0), 10, 1));
    EXPECT_TRUE(reaped(wait(kInitBadge, 0), 11, 2));
}

// Two threads of one parent wait: each gets a child, in arrival order; the
// second never overwrites the first.
TEST_F(ProcServerTest, TwoWaitersOfOneParentEachGetAChild) {
    uint64_t a = spawn(kInitBadge, 10);
    uint64_t b = spawn(kInitBadge, 11);
    CallRef w1 = wait(kInitBadge, 0);
    CallRef w2 = wait(kInitBadge, 0);
    EXPECT_EQ(procs_.stats().waiters, 2u);
    die(b, 2);
    EXPECT_TRUE(reaped(w1, 11, 2));
    EXPECT_TRUE(w2->waiting());
    die(a, 1);
    EXPECT_TRUE(reaped(w2, 10, 1));
}

TEST_F(ProcServerTest, WnohangNeverWaits) {
    uint64_t a = spawn(kInitBadge, 10);
    CallRef w = wait(kInitBadge, 0, proc::kWaitNoHang);
    EXPECT_TRUE(reaped(w, 0, 0));  // nothing yet
    EXPECT_FALSE(w->deferred);
    EXPECT_EQ(procs_.stats().waiters, 0u);
    die(a, 5);
    EXPECT_TRUE(reaped(wait(kInitBadge, 10, proc::kWaitNoHang), 10, 5));
}

TEST_F(ProcServerTest, NoSuchChildIsEchild) {
    EXPECT_EQ(wait(kInitBadge, 0)->label, proc::kNoChild);  // no child at all
    uint64_t a = spawn(kInitBadge, 10);
    uint64_t b = spawn(client_badge(a), 20);  // a's child, not init's
    EXPECT_EQ(wait(kInitBadge, 20)->label, proc::kNoChild);
    EXPECT_EQ(wait(kInitBadge, 99)->label, proc::kNoChild);
    EXPECT_EQ(wait(client_badge(a), 10)->label, proc::kNoChild);  // its parent, not child
    EXPECT_EQ(wait(client_badge(b), 0, proc::kWaitNoHang)->label, proc::kNoChild);
}

TEST_F(ProcServerTest, BadRequestsGetClearErrors) {
    uint64_t a = spawn(kInitBadge, 10);
    EXPECT_EQ(wait(kInitBadge, 0, 0x80)->status(), abi::Err::InvalidArgument);
    EXPECT_EQ(wait(kInitBadge, 0, ~uint64_t{0})->status(), abi::Err::InvalidArgument);
    // A wait sent without waiting for the answer takes nothing.
    die(a, 4);
    CallRef sent = wait(kInitBadge, 0, 0, false);
    EXPECT_EQ(sent->answers, 0);
    EXPECT_EQ(procs_.stats().zombies, 1u);
    // Badges that name no live client: a supervisor badge, an unknown id.
    EXPECT_EQ(wait(supervisor_badge(a), 0)->status(), abi::Err::BadHandle);
    EXPECT_EQ(wait(client_badge(12345), 0)->status(), abi::Err::BadHandle);
    // A zombie asks nothing any more.
    EXPECT_EQ(wait(client_badge(a), 0)->status(), abi::Err::BadHandle);
    EXPECT_TRUE(reaped(wait(kInitBadge, 10), 10, 4));
}

TEST_F(ProcServerTest, NoticesThatNameNothingChangeNothing) {
    uint64_t a = spawn(kInitBadge, 10);
    procs_.died(client_badge(a), 1);  // not a supervisor badge
    procs_.died(supervisor_badge(999), 1);
    procs_.died(supervisor_badge(0), 1);  // init is never a zombie
    EXPECT_EQ(procs_.stats().zombies, 0u);
    die(a, 2);
    die(a, 3);  // told twice: the first status stands
    EXPECT_TRUE(reaped(wait(kInitBadge, 10), 10, 2));
}

// A child of a dead parent is init's: init reaps it, whether it died
// before its parent or after.
TEST_F(ProcServerTest, OrphansAreAdoptedAndReapedByInit) {
    uint64_t a = spawn(kInitBadge, 10);
    uint64_t early = spawn(client_badge(a), 20);
    uint64_t late = spawn(client_badge(a), 21);
    die(early, 6);                              // a zombie of a's
    CallRef init_waits = wait(kInitBadge, 20);  // not init's child yet
    EXPECT_EQ(init_waits->label, proc::kNoChild);
    CallRef w = wait(kInitBadge, 0);
    die(a, 0);  // a's children are init's now; w gets one of the three
    EXPECT_TRUE(w->ok());
    std::vector<uint64_t> pids = {w->words[0]};
    die(late, 8);
    for (int i = 0; i < 2; ++i) {
        CallRef r = wait(kInitBadge, 0);
        ASSERT_TRUE(r->ok());
        pids.push_back(r->words[0]);
    }
    std::sort(pids.begin(), pids.end());
    EXPECT_EQ(pids, (std::vector<uint64_t>{10, 20, 21}));
    EXPECT_EQ(procs_.stats().processes, 0u);
}

// A waiter that died (its reply fails) takes nothing: the zombie waits for
// the next wait.
TEST_F(ProcServerTest, AWaiterThatDiedLosesNoStatus) {
    uint64_t a = spawn(kInitBadge, 10);
    CallRef dead = wait(kInitBadge, 0);
    CallRef live = wait(kInitBadge, 10);
    dead->kill();
    die(a, 9);
    EXPECT_EQ(dead->answers, 0);
    EXPECT_TRUE(reaped(live, 10, 9));
    uint64_t b = spawn(kInitBadge, 11);
    CallRef dead2 = wait(kInitBadge, 11);
    dead2->kill();
    die(b, 1);
    EXPECT_EQ(procs_.stats().zombies, 1u);
    EXPECT_TRUE(reaped(wait(kInitBadge, 0), 11, 1));
}

// A process's own waits go with it.
TEST_F(ProcServerTest, ADeadProcessesWaitsAreDropped) {
    uint64_t a = spawn(kInitBadge, 10);
    (void)spawn(client_badge(a), 20);
    CallRef w = wait(client_badge(a), 0);
    EXPECT_TRUE(w->waiting());
    die(a, 0);
    EXPECT_TRUE(w->dropped);
    EXPECT_EQ(procs_.stats().waiters, 0u);
}

// A process's waiting wait4 calls are bounded: past kMaxWaiters the
// oldest is pushed out (proc::wait4() asks again).
TEST_F(ProcServerTest, WaitersAreBoundedByEvictingTheOldest) {
    uint64_t a = spawn(kInitBadge, 10);
    std::vector<CallRef> waits;
    for (size_t i = 0; i < proc::kMaxWaiters; ++i) waits.push_back(wait(kInitBadge, 0));
    CallRef newest = wait(kInitBadge, 0);
    EXPECT_EQ(waits[0]->label, proc::kWaitEvicted);
    EXPECT_EQ(procs_.stats().waiters, proc::kMaxWaiters);
    die(a, 3);
    EXPECT_TRUE(reaped(waits[1], 10, 3));  // the oldest still waiting
}

// Over all processes, the server keeps at most services::kMaxDeferred
// replies: a wait past it is refused, not queued.
TEST_F(ProcServerTest, DeferredRepliesAreBoundedOverAllProcesses) {
    std::vector<CallRef> waits;
    for (uint64_t pid = 100; waits.size() < services::kMaxDeferred; ++pid) {
        uint64_t parent = spawn(kInitBadge, pid);
        (void)spawn(client_badge(parent), pid + 100000);
        for (size_t i = 0; i < proc::kMaxWaiters - 1 && waits.size() < services::kMaxDeferred;
             ++i) {
            waits.push_back(wait(client_badge(parent), 0));
        }
    }
    EXPECT_EQ(procs_.stats().waiters, services::kMaxDeferred);
    uint64_t parent = spawn(kInitBadge, 5000);
    (void)spawn(client_badge(parent), 5001);
    CallRef refused = wait(client_badge(parent), 0);
    EXPECT_EQ(refused->status(), abi::Err::LimitReached);
    EXPECT_FALSE(refused->deferred);
}

TEST_F(ProcServerTest, ReserveRefusesUnknownParentsAndHasABound) {
    abi::Err e = abi::Err::Ok;
    EXPECT_EQ(procs_.reserve(client_badge(777), &e), 0u);
    EXPECT_EQ(e, abi::Err::BadHandle);
    EXPECT_EQ(procs_.reserve(supervisor_badge(0), &e), 0u);
    EXPECT_EQ(e, abi::Err::BadHandle);
    // A record reserved but not spawned yet is no child to wait for, nor
    // a parent.
    uint64_t pending = procs_.reserve(kInitBadge, &e);
    ASSERT_NE(pending, 0u);
    EXPECT_EQ(wait(kInitBadge, 0)->label, proc::kNoChild);
    EXPECT_EQ(procs_.reserve(client_badge(pending), &e), 0u);
    procs_.cancel(pending);
    std::vector<uint64_t> ids;
    for (uint64_t pid = 100;; ++pid) {
        uint64_t id = procs_.reserve(kInitBadge, &e);
        if (id == 0) break;
        procs_.spawned(id, pid);
        ids.push_back(id);
    }
    EXPECT_EQ(e, abi::Err::LimitReached);
    EXPECT_EQ(ids.size(), proc::kMaxProcs);
    die(ids[3], 0);
    EXPECT_TRUE(wait(kInitBadge, 0)->ok());
    EXPECT_NE(procs_.reserve(kInitBadge, &e), 0u);
}

TEST(ProcServerSpawnPayload, OnlyTwoBoundedStringsPass) {
    auto parse = [](const std::string& bytes, std::string* module = nullptr,
                    std::string* args = nullptr) {
        Message m(proc::kSpawn);
        m.append(bytes.data(), bytes.size());
        const char* mod = nullptr;
        const char* arg = nullptr;
        bool ok = proc_server::parse_spawn(m, &mod, &arg);
        if (ok && module != nullptr) *module = mod;
        if (ok && args != nullptr) *args = arg;
        return ok;
    };
    std::string module, args;
    EXPECT_TRUE(parse(std::string("pipe\0a=1 b\0", 11), &module, &args));
    EXPECT_EQ(module, "pipe");
    EXPECT_EQ(args, "a=1 b");
    EXPECT_TRUE(parse(std::string("x\0\0", 3), &module, &args));
    EXPECT_EQ(args, "");
    EXPECT_FALSE(parse(""));                          // nothing
    EXPECT_FALSE(parse(std::string("\0\0", 2)));      // an empty name
    EXPECT_FALSE(parse("pipe"));                      // no NUL
    EXPECT_FALSE(parse(std::string("pipe\0", 5)));    // no argument string
    EXPECT_FALSE(parse(std::string("pipe\0ab", 7)));  // an unterminated one
    EXPECT_FALSE(parse(std::string("p\0a\0x", 5)));   // bytes after it
    std::string name(abi::kModuleNameMax, 'n');
    EXPECT_FALSE(parse(name + std::string("\0\0", 2)));  // the name too long
    EXPECT_TRUE(parse(name.substr(1) + std::string("\0\0", 2)));
    std::string words(abi::kArgsMax, 'w');
    EXPECT_FALSE(parse("m" + std::string("\0", 1) + words + std::string("\0", 1)));
    EXPECT_TRUE(parse("m" + std::string("\0", 1) + words.substr(1) + std::string("\0", 1)));
}

// kSpawn's flags: kSpawnRaw and kSpawnOnCpu alone; the CPU word only with
// kSpawnOnCpu, and only a 32-bit CPU index.
TEST(ProcServerSpawnPayload, FlagsAndTheCpuWord) {
    auto parse = [](uint64_t flags, uint64_t cpu_word, uint32_t* cpu) {
        Message m(proc::kSpawn);
        m.set_word(1, flags).set_word(2, cpu_word);
        uint64_t f = 0;
        return proc_server::parse_spawn_flags(m, &f, cpu) && f == flags;
    };
    uint32_t cpu = 0;
    EXPECT_TRUE(parse(0, 7, &cpu));  // word 2 means nothing without the flag
    EXPECT_EQ(cpu, abi::kAnyCpu);
    EXPECT_TRUE(parse(proc::kSpawnRaw, 0, &cpu));
    EXPECT_EQ(cpu, abi::kAnyCpu);
    EXPECT_TRUE(parse(proc::kSpawnOnCpu, 3, &cpu));
    EXPECT_EQ(cpu, 3u);
    EXPECT_TRUE(parse(proc::kSpawnOnCpu | proc::kSpawnRaw, 0, &cpu));
    EXPECT_EQ(cpu, 0u);
    EXPECT_FALSE(parse(proc::kSpawnOnCpu, abi::kAnyCpu, &cpu));  // not an index
    EXPECT_FALSE(parse(proc::kSpawnOnCpu, uint64_t{1} << 32, &cpu));
    EXPECT_FALSE(parse(4, 0, &cpu));  // an unknown flag
    EXPECT_FALSE(parse(~uint64_t{0}, 0, &cpu));
}

TEST_F(ProcServerTest, NothingIsLeftAfterManyProcessesComeAndGo) {
    for (uint64_t round = 0; round < 2000; ++round) {
        uint64_t a = spawn(kInitBadge, 1000 + round);
        uint64_t b = spawn(client_badge(a), 100000 + round);
        CallRef w = round % 2 ? wait(kInitBadge, 1000 + round) : CallRef();
        die(round % 3 ? a : b, round & 0xFF);
        die(round % 3 ? b : a, 1);
        if (!w) w = wait(kInitBadge, 1000 + round);
        EXPECT_TRUE(w->ok());
        while (wait(kInitBadge, 0, proc::kWaitNoHang)->words[0] != 0) {
        }
    }
    Procs::Stats s = procs_.stats();
    EXPECT_EQ(s.processes, 0u);
    EXPECT_EQ(s.zombies, 0u);
    EXPECT_EQ(s.waiters, 0u);
}

}  // namespace
}  // namespace mk::servers_test
