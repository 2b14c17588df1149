#include "kernel.hpp"

#include "endpoint.hpp"
#include "heap.hpp"
#include "kernel_stack.hpp"
#include "object/boot_modules.hpp"
#include "process.hpp"
#include "program.hpp"

#include "log.hpp"
#include "panic.hpp"
#include "percpu.hpp"

namespace mk {

namespace {

FrameAllocator* g_frames = nullptr;
const BootModule* g_modules = nullptr;
size_t g_module_count = 0;

void idle_entry(void*) {
    this_cpu().scheduler.idle_loop();
}

// Destroys user threads once they have ended and left the CPU: the last
// one of a process ends the process (its handles, its memory).
void reaper_entry(void*) {
    Scheduler& sched = this_cpu().scheduler;
    for (;;) Thread::destroy(sched.next_zombie());
}

void print_ipc_counters(const IpcCounters& c) {
    log("ipc: sends=%lu receives=%lu calls=%lu replies=%lu fastpath_hits=%lu misses: "
        "disabled=%lu donation_off=%lu no_partner=%lu long_message=%lu sender_pending=%lu "
        "other_cpu=%lu\n",
        c.sends, c.receives, c.calls, c.replies, c.fastpath_hits, c.fastpath_miss_disabled,
        c.fastpath_miss_donation_off, c.fastpath_miss_no_partner, c.fastpath_miss_long_message,
        c.fastpath_miss_sender_pending, c.fastpath_miss_other_cpu);
    log("ipc: timeouts=%lu stale_replies=%lu destroyed_wakeups=%lu peer_died_wakeups=%lu\n",
        c.timeouts, c.stale_replies, c.destroyed_wakeups, c.peer_died_wakeups);
    log("ipc: syscall fast path hits=%lu misses=%lu\n", c.syscall_fastpath_hits,
        c.syscall_fastpath_misses);
}

void print_counters(const SchedCounters& c) {
    log("sched: ticks=%lu switches=%lu preemptions=%lu yields=%lu donations=%lu "
        "donation_fallbacks=%lu\n",
        c.ticks, c.switches, c.preemptions, c.yields, c.donations_taken, c.donation_fallbacks);
    log("sched: blocks=%lu wakeups=%lu wakes_not_blocked=%lu wake_races_caught=%lu "
        "timeouts=%lu direct_switches=%lu notifies=%lu\n",
        c.blocks, c.wakeups, c.wakes_not_blocked, c.wake_races_caught, c.timeouts,
        c.direct_switches, c.notifies);
}

// Recurses until the stack runs out: each frame holds a buffer the
// compiler must keep, and the depth test stops neither it nor the
// recursion (no depth reaches it first).
[[gnu::noinline]] uint64_t run_off_the_stack(uint64_t depth) {
    volatile uint8_t frame[256];
    frame[0] = uint8_t(depth);
    if (depth == UINT64_MAX) return 0;
    uint64_t below = run_off_the_stack(depth + 1);
    return below + frame[0];
}

void overflow_entry(void*) {
    log("ktest: thread overflow on cpu %u runs off its kernel stack\n", Cpu::cpu_index());
    uint64_t r = run_off_the_stack(0);
    log("ktest: the stack never ran out?! (%lu)\n", r);
}

bool equals(const char* s, size_t n, const char* word) {
    size_t i = 0;
    for (; i < n && word[i] != '\0'; ++i) {
        if (s[i] != word[i]) return false;
    }
    return i == n && word[i] == '\0';
}

// The boot demo: a client calls an echo server over an endpoint while a
// third thread burns CPU, so the counters show IPC round trips (direct
// switches with the fast path, donations without it) and preemptions.
struct Demo {
    Endpoint* ep = nullptr;
    volatile bool stop = false;
};

constexpr uint64_t kDemoRoundTrips = 20000;
constexpr uint64_t kDemoTicks = 1000;
constexpr uint64_t kDemoStop = ~uint64_t{0};

void demo_echo_server(void* arg) {
    auto* demo = static_cast<Demo*>(arg);
    Result<Received> r = demo->ep->recv();
    while (r.ok() && r.value().msg.label != kDemoStop) {
        Message reply;
        reply.label = r.value().msg.label;
        reply.words[0] = r.value().msg.words[0] + 1;
        r = demo->ep->reply_recv(r.value().reply, reply);
    }
    if (r.ok()) (void)Endpoint::reply(r.value().reply, Message{});
}

void demo_spinner(void* arg) {
    auto* demo = static_cast<Demo*>(arg);
    while (!demo->stop) asm volatile("" ::: "memory");
}

void run_demo() {
    Scheduler& sched = this_cpu().scheduler;
    Demo demo;
    Result<Endpoint*> ep = Endpoint::create();
    Result<Thread*> server = Thread::create("echo", demo_echo_server, &demo);
    Result<Thread*> spinner = Thread::create("spinner", demo_spinner, &demo);
    if (!ep || !server || !spinner) {
        log("demo: out of memory\n");
        if (ep) Endpoint::destroy(ep.value());
        if (server) Thread::destroy(server.value());
        if (spinner) Thread::destroy(spinner.value());
        return;
    }
    demo.ep = ep.value();
    // Both were just created: start() cannot refuse them.
    Status started = sched.start(*server.value());
    MK_ASSERT(started == Error::None);
    started = sched.start(*spinner.value());
    MK_ASSERT(started == Error::None);
    uint64_t ticks0 = sched.ticks();
    uint64_t tsc0 = Cpu::timestamp();
    uint64_t sum = 0;
    uint64_t done = 0;
    // Bounded in time too: with donation off, every hop waits behind the
    // spinner's quantum.
    for (uint64_t i = 0; i < kDemoRoundTrips && sched.ticks() - ticks0 < kDemoTicks; ++i) {
        Message m;
        m.label = 1;
        m.words[0] = i;
        Result<Message> r = demo.ep->call(m, 0);
        if (!r.ok()) {
            log("demo: call failed: %s\n", error_name(r.error()));
            break;
        }
        sum += r.value().words[0];
        ++done;
    }
    uint64_t tsc1 = Cpu::timestamp();
    Message stop;
    stop.label = kDemoStop;
    (void)demo.ep->call(stop, 0);
    demo.stop = true;
    // Thread::destroy waits until no CPU is on a dead thread's stack.
    sched.join(*server.value());
    sched.join(*spinner.value());
    Thread::destroy(server.value());
    Thread::destroy(spinner.value());
    Endpoint::destroy(demo.ep);
    log("demo: %lu call/reply round trips next to a CPU-bound thread in %lu ticks, "
        "%lu TSC ticks each (checksum %s)\n",
        done, sched.ticks() - ticks0, done == 0 ? 0 : (tsc1 - tsc0) / done,
        sum == done * (done + 1) / 2 ? "ok" : "BAD");
}

Process* g_init = nullptr;
bool g_memstat = false;

// init's end is the system's: the machine powers off, reporting success
// when init exited with status 0 (what the boot tests of user programs read).
// With memstat=on every process's end logs what the kernel holds then, so a
// test can run the same program before and after a workload and compare:
// any difference is kernel memory the workload left behind (a leak).
// Called with no lock held (after the process's address space is gone).
void on_process_death(Process& p) {
    if (g_memstat) {
        // Dead threads' stacks kept for reuse are heap memory that nothing
        // leaked, as many as threads ended lately: given back first.
        kernel_stack_cache_drain();
        HeapStats h = kernel_heap().stats();
        log("memstat: %s (process %lu) ended: heap %zu bytes in %zu blocks, %zu frames free\n",
            p.name(), p.id(), h.bytes_used, h.used_blocks, frame_allocator().free_count());
    }
    if (&p != g_init) return;
    log("boot: init ended with status %#lx; powering off\n", p.exit_status());
    print_counters(Scheduler::total_counters());
    print_ipc_counters(total_ipc_counters());
    Cpu::shutdown(p.exit_status() == 0);
}

// The first user process: the module named "init", given the boot
// modules with every right (so it alone can spawn programs) and the kernel
// command line as its argument string. It starts on the boot CPU, named
// rather than left to placement (the boot tests speak of init's CPU as
// cpu 0), and may run on every CPU. Returns false when there is no init
// module (the in-kernel demo runs instead).
bool start_init(const KernelConfig& config) {
    Result<ModuleImage> image = boot_module("init");
    if (!image) return false;
    HandleEntry modules{Ref<KObject>::retain(&BootModules::instance()), abi::kRightsAll, 0, {}};
    const char* reason = "";
    Result<Program> init = spawn_program("init", image.value().data, image.value().size, 0,
                                         config.cmdline, config.cmdline_length, &modules, 1,
                                         &reason, Cpu::cpu_index(), Scheduler::online_mask());
    if (!init) MK_PANIC("boot: cannot start init: %s (%s)", error_name(init.error()), reason);
    log("boot: starting init (process %lu) in user mode\n", init.value().process->id());
    g_init = init.value().process;
    Process::set_death_hook(on_process_death);
    MK_ASSERT(this_cpu().scheduler.start(*init.value().thread) == Error::None);
    // The kernel keeps its reference (g_init) for good.
    return true;
}

}  // namespace

FrameAllocator& frame_allocator() {
    return *g_frames;
}

Result<ModuleImage> boot_module(const char* name) {
    size_t n = 0;
    while (name[n] != '\0') ++n;
    return BootModules::instance().find(name, n);
}

BootModules BootModules::instance_;

Result<ModuleImage> BootModules::find(const char* name, size_t length) const {
    for (size_t i = 0; i < g_module_count; ++i) {
        const BootModule& m = g_modules[i];
        if (m.string_length != length) continue;
        bool same = true;
        for (size_t j = 0; j < length && same; ++j) same = m.string[j] == name[j];
        if (same) return ModuleImage{Cpu::frame_to_kernel(m.start), size_t(m.end - m.start)};
    }
    return Error::InvalidArgument;
}

void kernel_start(const StartInfo& info) {
    g_frames = info.frames;
    g_modules = info.modules;
    g_module_count = info.module_count;
    PerCpu& cpu = *info.boot_cpu;
    Scheduler& sched = cpu.scheduler;

    Result<Thread*> boot = Thread::adopt_boot_thread("boot");
    Result<Thread*> idle = Thread::create("idle", idle_entry, nullptr);
    if (!boot || !idle) MK_PANIC("cannot create the boot and idle threads: out of memory");
    sched.init(*boot.value(), *idle.value());
    Result<Thread*> reaper = Thread::create("reaper", reaper_entry, nullptr);
    if (!reaper) MK_PANIC("cannot create the reaper thread: out of memory");
    sched.set_reaper(*reaper.value());
    MK_ASSERT(sched.start(*reaper.value()) == Error::None);
    sched.set_donation_enabled(info.config.donation);
    g_memstat = info.config.memstat;
    ipc_set_fast_path(info.config.fast_path);
    log("sched: round-robin, %u ms quantum, donation %s, fast path %s\n",
        Scheduler::kQuantumTicks * 1000 / info.timer_hz, info.config.donation ? "on" : "off",
        !info.config.fast_path ? "off"
        : info.config.donation ? "on"
                               : "on but unused (a direct switch is a donation)");
    Cpu::restore_interrupts(true);

    if (info.config.ktest != nullptr) {
        const char* which = info.config.ktest;
        size_t n = info.config.ktest_length;
        if (equals(which, n, "panic") || equals(which, n, "fault") || equals(which, n, "hang") ||
            equals(which, n, "overflow") || equals(which, n, "overflow-boot")) {
            provoke_failure(which, n);
        }
        int failed = run_kernel_tests(which, n);
        print_counters(Scheduler::total_counters());
        print_ipc_counters(total_ipc_counters());
        if (failed < 0) log("ktest: no test named '%.*s'\n", int(n), which);
        Cpu::shutdown(failed == 0);
    }

    if (info.config.cmdline_length >= abi::kArgsMax) {
        log("boot: the command line is longer than init's argument string; init gets %u bytes\n",
            abi::kArgsMax - 1);
    }
    if (!start_init(info.config)) {
        run_demo();
        print_counters(Scheduler::total_counters());
        print_ipc_counters(total_ipc_counters());
        log("boot: done; the kernel idles now (QEMU: Ctrl-A X quits)\n");
    }
    for (;;) sched.block(nullptr, 0);
}

bool cpu_join() {
    Result<Thread*> idle = Thread::adopt_boot_thread("idle");
    if (!idle) return false;
    this_cpu().scheduler.init(*idle.value(), *idle.value());
    return true;
}

void provoke_failure(const char* which, size_t length) {
    if (equals(which, length, "hang")) {
        log("ktest: hanging on purpose, interrupts off\n");
        Cpu::save_and_disable_interrupts();
        for (;;) asm volatile("" ::: "memory");
    }
    if (equals(which, length, "overflow")) {
        // On the last CPU: with several, an application processor's
        // double-fault stack (a kernel stack too) takes the report.
        log("ktest: overflowing a kernel thread's stack on purpose\n");
        Result<Thread*> t = Thread::create("overflow", overflow_entry, nullptr);
        MK_ASSERT(t.ok());
        {
            LockGuard guard(this_cpu().scheduler.lock());
            Scheduler::set_home_locked(*t.value(), cpu_count() - 1);
        }
        MK_ASSERT(this_cpu().scheduler.start(*t.value()) == Error::None);
        const uint64_t t0 = this_cpu().scheduler.ticks();
        while (this_cpu().scheduler.ticks() - t0 < 2000) this_cpu().scheduler.yield_now();
        log("ktest: no fault two seconds after the overflow?!\n");
    }
    if (equals(which, length, "overflow-boot")) {
        log("ktest: overflowing the boot thread's stack on purpose\n");
        uint64_t r = run_off_the_stack(0);
        log("ktest: the boot stack never ran out?! (%lu)\n", r);
    }
    if (equals(which, length, "fault")) {
        log("ktest: reading an unmapped address on purpose\n");
        volatile uint64_t* bad = reinterpret_cast<volatile uint64_t*>(0xdead0000ull);
        uint64_t v = *bad;
        log("ktest: read %lu from an unmapped address?!\n", v);
    }
    log("ktest: breaking an assertion on purpose\n");
    volatile int one = 1;
    MK_ASSERT(one + one == 3);
    MK_PANIC("unreachable");
}

}  // namespace mk
