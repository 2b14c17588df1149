// In-kernel tests of threads, the scheduler and memory on the real context
// switch, timer and yield vector.
#include "kernel.hpp"
#include "ktest.hpp"
#include "log.hpp"
#include "memory.hpp"
#include "percpu.hpp"

namespace mk {

namespace {

using ktest::join;
using ktest::sleep_ticks;
using ktest::spawn;

Scheduler& sched() {
    return this_cpu().scheduler;
}

// A one-slot mailbox built on the scheduler's primitives: take() checks and
// sleeps under the scheduler lock, put() fills and wakes under it, so a wake
// can never fall between the check and the sleep.
struct Mailbox {
    WaitQueue waiters;
    uint64_t value = 0;
    bool full = false;
};

void put(Mailbox& m, uint64_t v) {
    Thread* waiter;
    for (;;) {
        {
            LockGuard guard(sched().lock());
            if (!m.full) {
                m.value = v;
                m.full = true;
                waiter = m.waiters.front();
                break;
            }
        }
        sched().yield_now();  // slot still taken: let the reader run
    }
    if (waiter != nullptr) sched().unblock_yield(*waiter);
}

uint64_t take(Mailbox& m) {
    LockGuard guard(sched().lock());
    while (!m.full) sched().block_current_locked(&m.waiters, 0);
    m.full = false;
    return m.value;
}

// --- Ping-pong through block/wake ---

constexpr uint64_t kPingPongRounds = 20000;

struct PingPong {
    Mailbox to_b, to_a;
    uint64_t checksum_a = 0;
    uint64_t checksum_b = 0;
};

void ping(void* arg) {
    auto* p = static_cast<PingPong*>(arg);
    for (uint64_t i = 0; i < kPingPongRounds; ++i) {
        put(p->to_b, i);
        p->checksum_a += take(p->to_a);
    }
}

void pong(void* arg) {
    auto* p = static_cast<PingPong*>(arg);
    for (uint64_t i = 0; i < kPingPongRounds; ++i) {
        uint64_t v = take(p->to_b);
        p->checksum_b += v;
        put(p->to_a, v * 3 + 1);
    }
}

bool thread_ping_pong() {
    PingPong p;
    SchedCounters before = sched().counters();
    Thread* t[2] = {spawn("ping", ping, &p), spawn("pong", pong, &p)};
    KCHECK(t[0] != nullptr && t[1] != nullptr);
    join(t, 2);
    SchedCounters after = sched().counters();
    uint64_t n = kPingPongRounds;
    uint64_t sum = n * (n - 1) / 2;
    log("[ktest]   %lu round trips, %lu blocks, %lu wake-ups, %lu donations\n", n,
        after.blocks - before.blocks, after.wakeups - before.wakeups,
        after.donations_taken - before.donations_taken);
    KCHECK(p.checksum_b == sum);
    KCHECK(p.checksum_a == 3 * sum + n);
    KCHECK(after.wakeups - before.wakeups >= n);
    return true;
}

// --- Donation: the woken thread runs next ---

struct DonationLog {
    Mailbox box;
    char events[8] = {};
    int count = 0;
    void record(char c) {
        LockGuard guard(sched().lock());
        if (count < 7) events[count++] = c;
    }
};

void donation_waiter(void* arg) {
    auto* d = static_cast<DonationLog*>(arg);
    take(d->box);
    d->record('W');
}

void donation_other_x(void* arg) {
    static_cast<DonationLog*>(arg)->record('X');
}
void donation_other_y(void* arg) {
    static_cast<DonationLog*>(arg)->record('Y');
}

bool donation_runs_woken_thread_next() {
    DonationLog d;
    Thread* w = spawn("waiter", donation_waiter, &d);
    KCHECK(w != nullptr);
    while (w->state != ThreadState::Blocked) sched().yield_now();
    Thread* x = spawn("x", donation_other_x, &d);
    Thread* y = spawn("y", donation_other_y, &d);
    KCHECK(x != nullptr && y != nullptr);
    SchedCounters before = sched().counters();
    put(d.box, 1);  // wakes w; with donation it runs before x and y
    d.record('M');
    Thread* all[3] = {w, x, y};
    join(all, 3);
    SchedCounters after = sched().counters();
    d.events[d.count] = '\0';
    log("[ktest]   event order %s (donation %s)\n", d.events,
        sched().donation_enabled() ? "on" : "off");
    if (sched().donation_enabled()) {
        KCHECK(d.events[0] == 'W');
        KCHECK(after.donations_taken == before.donations_taken + 1);
    } else {
        // Without donation the waker keeps the CPU and the woken thread
        // waits its turn behind x and y.
        KCHECK(d.events[0] == 'M');
        KCHECK(d.events[1] == 'X' && d.events[2] == 'Y' && d.events[3] == 'W');
        KCHECK(after.donations_taken == before.donations_taken);
    }
    return true;
}

// --- Preemption interleaves CPU-bound threads ---

struct Busy {
    volatile int last = -1;
    volatile uint64_t alternations = 0;
    volatile bool stop = false;
};

struct BusyArg {
    Busy* busy;
    int me;
};

void busy_loop(void* arg) {
    auto* a = static_cast<BusyArg*>(arg);
    Busy* b = a->busy;
    while (!b->stop) {
        if (b->last != a->me) {
            b->last = a->me;
            b->alternations = b->alternations + 1;
        }
    }
}

bool preemption_interleaves_busy_threads() {
    Busy busy;
    BusyArg a0{&busy, 0}, a1{&busy, 1};
    SchedCounters before = sched().counters();
    Thread* t[2] = {spawn("busy0", busy_loop, &a0), spawn("busy1", busy_loop, &a1)};
    KCHECK(t[0] != nullptr && t[1] != nullptr);
    uint64_t start = sched().ticks();
    while (busy.alternations < 8 && sched().ticks() - start < 2000) sleep_ticks(5);
    busy.stop = true;
    join(t, 2);
    SchedCounters after = sched().counters();
    log("[ktest]   %lu alternations, %lu preemptions in %lu ticks\n", uint64_t(busy.alternations),
        after.preemptions - before.preemptions, sched().ticks() - start);
    KCHECK(busy.alternations >= 8);
    KCHECK(after.preemptions - before.preemptions >= 6);
    return true;
}

// --- Timeouts and idle ---

bool timeout_expires() {
    WaitQueue q;
    uint64_t start = sched().ticks();
    WakeReason r = sched().block(&q, 5);
    uint64_t elapsed = sched().ticks() - start;
    KCHECK(r == WakeReason::TimedOut);
    KCHECK(elapsed >= 5 && elapsed < 50);
    KCHECK(q.empty());
    return true;
}

bool idle_runs_when_nothing_is_ready() {
    SchedCounters before = sched().counters();
    sleep_ticks(3);
    SchedCounters after = sched().counters();
    KCHECK(after.switches - before.switches >= 2);  // to idle and back
    KCHECK(after.ticks - before.ticks >= 3);
    KCHECK(sched().current() != sched().idle_thread());
    return true;
}

bool wake_of_running_thread_is_harmless() {
    SchedCounters before = sched().counters();
    KCHECK(!sched().wake(*sched().current()));
    KCHECK(sched().counters().wakes_not_blocked == before.wakes_not_blocked + 1);
    return true;
}

// --- Memory ---

bool frames_exhaust_and_recover() {
    FrameAllocator& frames = frame_allocator();
    size_t free_before = frames.free_count();
    auto* list = static_cast<uint64_t*>(kalloc((free_before + 1) * sizeof(uint64_t)));
    KCHECK(list != nullptr);
    size_t available = frames.free_count();
    size_t n = 0;
    for (;;) {
        Result<uint64_t> f = frames.alloc();
        if (!f) {
            KCHECK(f.error() == Error::OutOfMemory);
            break;
        }
        KCHECK(n <= free_before);
        list[n++] = f.value();
    }
    KCHECK(n == available);
    KCHECK(frames.free_count() == 0);
    KCHECK(!frames.alloc_contiguous(1));
    for (size_t i = 0; i < n; ++i) frames.free(list[i]);
    KCHECK(frames.free_count() == available);
    kfree(list);
    log("[ktest]   %zu frames (%zu MiB) handed out, then all returned\n", n, n / 256);
    return true;
}

bool heap_exhaustion_returns_null() {
    KCHECK(kalloc(size_t(1) << 40) == nullptr);
    // Allocate 256 KiB blocks until memory runs out, then give them all back.
    constexpr size_t kBlock = 256 * 1024;
    void** blocks = nullptr;
    size_t n = 0;
    for (;;) {
        void* p = kalloc(kBlock);
        if (p == nullptr) break;
        *static_cast<void***>(p) = blocks;  // chain through the blocks themselves
        blocks = static_cast<void**>(p);
        ++n;
    }
    KCHECK(n > 0);
    while (blocks != nullptr) {
        void** next = static_cast<void**>(*blocks);
        kfree(blocks);
        blocks = next;
    }
    void* again = kalloc(kBlock);
    KCHECK(again != nullptr);
    kfree(again);
    log("[ktest]   %zu blocks of 256 KiB before exhaustion\n", n);
    return true;
}

const ktest::Case kCases[] = {
    {"wake_of_running_thread_is_harmless", wake_of_running_thread_is_harmless},
    {"timeout_expires", timeout_expires},
    {"idle_runs_when_nothing_is_ready", idle_runs_when_nothing_is_ready},
    {"thread_ping_pong", thread_ping_pong},
    {"donation_runs_woken_thread_next", donation_runs_woken_thread_next},
    {"preemption_interleaves_busy_threads", preemption_interleaves_busy_threads},
    {"frames_exhaust_and_recover", frames_exhaust_and_recover},
    {"heap_exhaustion_returns_null", heap_exhaustion_returns_null},
};

bool selected(const char* which, size_t length, const char* name) {
    if (length == 3 && which[0] == 'a' && which[1] == 'l' && which[2] == 'l') return true;
    size_t i = 0;
    for (; i < length && name[i] != '\0'; ++i) {
        if (which[i] != name[i]) return false;
    }
    return i == length && name[i] == '\0';
}

}  // namespace

ktest::CaseList ktest::core_cases() {
    return {kCases, sizeof kCases / sizeof kCases[0]};
}

int run_kernel_tests(const char* which, size_t length) {
    int passed = 0;
    int failed = 0;
    // User mode first: the heap-exhaustion case leaves no free frames on a
    // small machine (the heap keeps what it grew into).
    for (ktest::CaseList list : {ktest::user_cases(), ktest::core_cases(), ktest::ipc_cases()}) {
        for (size_t i = 0; i < list.count; ++i) {
            const ktest::Case& c = list.cases[i];
            if (!selected(which, length, c.name)) continue;
            log("[ktest] run %s\n", c.name);
            bool ok = c.run();
            log("[ktest] %s - %s\n", ok ? "ok" : "not ok", c.name);
            (ok ? passed : failed)++;
        }
    }
    log("[ktest] done: %d passed, %d failed\n", passed, failed);
    if (passed + failed == 0) return -1;
    return failed;
}

}  // namespace mk
