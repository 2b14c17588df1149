// ipcbench: IPC latency, case by case (run by init with run=ipcbench; the
// bench ISOs, and scripts/bench, which turns the lines into a table, a CSV
// and plots). Each case warms up, then times its operations one by one with
// rdtsc and prints one line:
//
//   [ipcbench] case NAME: n=10000 median=M mean=A min=L max=H p99=P overhead=O
//
// in TSC ticks per operation; under QEMU -icount shift=0 a tick is one
// guest instruction. `overhead` is the cost of the timing itself (an empty
// rdtsc pair, measured the same way) — stated beside the figures, not
// subtracted from them. A case that cannot run prints
// `case NAME: error WHAT` instead, and the rest go on.
//
// The first line says which kernel it measures (`config: fastpath=on
// donate=on`, from the kernel command line init passes on). Without the
// fast path or without donation only the cases those switches change run.
//
// The same program is its own partner: spawned with role=echo it answers
// calls (words, payload and handles sent back as they came), with
// role=pipe_echo it copies bytes from one pipe to another, with role=exit it
// ends at once with the low half of its TSC as the status.
#include <algorithm>

#include "mk/format.hpp"
#include "mk/ipc.hpp"
#include "mk/pipe.hpp"
#include "mk/port.hpp"
#include "mk/proc.hpp"
#include "mk/runtime.hpp"
#include "mk/services.hpp"
#include "mk/sys.hpp"

using namespace mk;
using ipc::Result;
using ipc::Status;

namespace {

constexpr size_t kWarmup = 1000;
constexpr size_t kSamples = 10000;
// The load cases without donation: each round trip waits out the busy
// threads' quanta (10 ms each), so 10,000 of them would take hours.
constexpr size_t kSlowSamples = 10;
// The register round trip under load, with donation: enough samples to
// span several quanta (10 ms, 10,000,000 instructions under -icount each),
// so the busy threads do run in between.
constexpr size_t kLoadSamples = 100000;
// A busy thread per entry of the load cases' largest N.
constexpr size_t kMaxBusy = 8;
constexpr uint64_t kStopLabel = 0xFFFF;

// The samples (kLoadSamples of them), mapped by the measuring process only:
// in the BSS they would be in every partner process too, and a child that
// exits at once would take 800 KiB of pages down with it in exit_to_wait4.
uint64_t* g_samples = nullptr;
uint64_t g_overhead = 0;
bool g_donation = true;
bool g_fast_path = true;

inline uint64_t tsc() {
    uint32_t lo, hi;
    asm volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return (uint64_t(hi) << 32) | lo;
}

struct Figures {
    size_t n;
    uint64_t median, mean, min, max, p99;
};

// Runs op() `warmup` times untimed, then `n` times, each one timed by
// sample_op (which returns its ticks), and summarizes.
template <typename Sample>
Figures sample(size_t n, size_t warmup, Sample&& sample_op) {
    for (size_t i = 0; i < warmup; ++i) (void)sample_op();
    for (size_t i = 0; i < n; ++i) g_samples[i] = sample_op();
    std::sort(g_samples, g_samples + n);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; ++i) sum += g_samples[i];
    return Figures{
        n, g_samples[n / 2], sum / n, g_samples[0], g_samples[n - 1], g_samples[n * 99 / 100]};
}

// Times op() between two rdtsc reads.
template <typename Op>
Figures measure(Op&& op, size_t n = kSamples, size_t warmup = kWarmup) {
    return sample(n, warmup, [&] {
        uint64_t t0 = tsc();
        op();
        return tsc() - t0;
    });
}

void report(const char* name, const Figures& f) {
    printf("case %s: n=%zu median=%lu mean=%lu min=%lu max=%lu p99=%lu overhead=%lu\n", name, f.n,
           f.median, f.mean, f.min, f.max, f.p99, g_overhead);
}

void report_error(const char* name, const char* what, abi::Err e = abi::Err::Ok) {
    if (e == abi::Err::Ok) {
        printf("case %s: error %s\n", name, what);
    } else {
        printf("case %s: error %s (%s)\n", name, what, ipc::error_name(e));
    }
}

// ---------------------------------------------------------------------------
// The partners
// ---------------------------------------------------------------------------

// Answers raw calls on `ep` until one with kStopLabel: word 0 + 1, the
// other words, and the payload and handles as they came (the payload is
// still in this thread's IPC buffer, the handles in its slots: the reply
// moves them back).
void echo(uint64_t ep) {
    abi::IpcBuffer* buffer = ipc::ipc_buffer();
    if (buffer != nullptr) {
        for (uint32_t& f : buffer->handle_flags) f = abi::kTransferMove;
    }
    sys::Ret r = sys::invoke(abi::Sys::Recv, ep, 0, 0, 0, 0, 0, abi::kForever);
    // The reply's info: label 0 (Ok), the call's length and handle count.
    constexpr uint64_t kEchoed = abi::MsgInfo{0, 0x3FF, 7, false}.encode();
    while (r.ok() && uint32_t(r.r1) != kStopLabel) {
        r = sys::invoke(abi::Sys::ReplyRecv, ep, r.r1 & kEchoed, r.words[0] + 1, r.words[1],
                        r.words[2], r.words[3], abi::kForever);
    }
    if (r.ok()) (void)sys::invoke(abi::Sys::Reply, 0, 0);
}

void echo_thread(void* arg) {
    echo(*static_cast<uint64_t*>(arg));
}

// Copies pipe `in` to pipe `out` a byte at a time until EOF.
int pipe_echo(const abi::StartInfo& start) {
    if (start.handle_count < 2) return 90;
    ipc::Endpoint in(start.handles[0]);
    ipc::Endpoint out(start.handles[1]);
    for (;;) {
        uint8_t byte;
        Result<size_t> n = pipe::read(in, &byte, 1);
        if (!n) return 91;
        if (*n == 0) return 0;
        if (!pipe::write(out, &byte, 1)) return 92;
    }
}

// A thread of this process receiving on `ep`, forever.
void sink_thread(void* arg) {
    uint64_t ep = *static_cast<uint64_t*>(arg);
    // Until the case closes the endpoint: then nobody can send to it any
    // more, and the receive fails (Destroyed).
    while (sys::invoke(abi::Sys::Recv, ep, 0, 0, 0, 0, 0, abi::kForever).ok()) {
    }
}

// ---------------------------------------------------------------------------
// CPU-bound threads for the load cases
// ---------------------------------------------------------------------------
// kMaxBusy threads wait on a gate endpoint; a message through the gate sets
// one spinning until `g_spin_round` moves on, then it waits again.
uint64_t g_gate = abi::kNoHandle;
volatile uint64_t g_spin_round = 0;

void busy_thread(void*) {
    for (;;) {
        sys::Ret r = sys::invoke(abi::Sys::Recv, g_gate, 0, 0, 0, 0, 0, abi::kForever);
        if (!r.ok()) return;
        uint64_t round = r.words[0];
        // No `pause`: QEMU leaves its translated code for each one.
        while (g_spin_round == round) asm volatile("" ::: "memory");
    }
}

class BusyThreads {
  public:
    bool start() {
        Result<ipc::Endpoint> gate = ipc::Endpoint::create();
        if (!gate) return false;
        gate_ = std::move(gate).value();
        g_gate = gate_.get();
        for (size_t i = 0; i < kMaxBusy; ++i) {
            if (!ipc::start_thread(busy_thread, nullptr, 2)) return false;
        }
        return true;
    }
    // Sets n of them spinning (the ones of the last round stop).
    bool spin(size_t n) {
        uint64_t round = g_spin_round + 1;
        g_spin_round = round;
        uint64_t info = abi::MsgInfo{1, 0, 0, false}.encode();
        for (size_t i = 0; i < n; ++i) {
            if (!sys::invoke(abi::Sys::Send, g_gate, info, round, 0, 0, 0, abi::kForever).ok()) {
                return false;
            }
        }
        return true;
    }
    void stop() { g_spin_round = g_spin_round + 1; }

  private:
    ipc::Endpoint gate_;
};

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

// The echo partner in another process, behind `ep`.
struct EchoProcess {
    ipc::Endpoint ep;
    uint64_t pid = 0;
};

// Bound to CPU `cpu`.
Result<EchoProcess> spawn_echo(const services::Services& s, uint32_t cpu) {
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    if (!ep) return ep.error();
    // Grant: its replies move handles back.
    Result<ipc::Endpoint> copy =
        ep->mint(abi::kRightSend | abi::kRightReceive | abi::kRightGrant, 0);
    if (!copy) return copy.error();
    ipc::Handle h = std::move(copy).value();
    Result<proc::Child> child = proc::spawn_raw(s.proc, "ipcbench", "role=echo", 0, &h, 1, cpu);
    if (!child) return child.error();
    return EchoProcess{std::move(ep).value(), child->pid};
}

void stop_echo(const services::Services& s, EchoProcess& e) {
    (void)sys::invoke(abi::Sys::Call, e.ep.get(), abi::MsgInfo{kStopLabel, 0, 0, false}.encode());
    (void)proc::wait4(s.proc, e.pid);
}

// Call + ReplyRecv to the echo behind `ep` with `length` payload bytes and
// `handles` handles (moved there and back) from this thread's IPC buffer.
// Checks every answer: a wrong word or status ends the case with an error.
bool call_round_trips(const char* name, uint64_t ep, uint32_t length = 0, uint32_t handles = 0,
                      size_t n = kSamples, size_t warmup = kWarmup) {
    uint64_t info = abi::MsgInfo{1, length, handles, false}.encode();
    abi::IpcBuffer* buffer = ipc::ipc_buffer();
    if ((length != 0 || handles != 0) && buffer == nullptr) {
        report_error(name, "no IPC buffer");
        return false;
    }
    for (uint32_t i = 0; i < length; ++i) buffer->payload[i] = uint8_t(i);
    if (handles != 0) {
        Result<ipc::Endpoint> e = ipc::Endpoint::create();
        if (!e) {
            report_error(name, "endpoint", e.error());
            return false;
        }
        buffer->handles[0] = e->release();  // goes back and forth
        buffer->handle_flags[0] = abi::kTransferMove;
    }
    uint64_t i = 0;
    abi::Err failed = abi::Err::Ok;
    Figures f = measure(
        [&] {
            sys::Ret r = sys::invoke(abi::Sys::Call, ep, info, i, 0, 0, 0, abi::kForever);
            if (!r.ok() || r.words[0] != i + 1) failed = r.ok() ? abi::Err::BadState : r.status;
            ++i;
        },
        n, warmup);
    if (handles != 0) ipc::Handle closed(buffer->handles[0]);  // closed here
    if (failed != abi::Err::Ok) {
        report_error(name, "call", failed);
        return false;
    }
    report(name, f);
    return true;
}

// Pipe ping-pong: a byte to the pipe_echo process through one pipe, and
// back through another.
struct PipePair {
    ipc::Endpoint to;    // write end of the pipe to the echo
    ipc::Endpoint from;  // read end of the pipe back
    uint64_t pid = 0;
};

// Bound to CPU `cpu`, as the pipe server is to init's.
Result<PipePair> spawn_pipe_echo(const services::Services& s, uint32_t cpu) {
    Result<pipe::Pipe> there = pipe::create(s.pipe);
    if (!there) return there.error();
    Result<pipe::Pipe> back = pipe::create(s.pipe);
    if (!back) return back.error();
    ipc::Handle handles[2] = {std::move(there->read), std::move(back->write)};
    Result<proc::Child> child =
        proc::spawn_raw(s.proc, "ipcbench", "role=pipe_echo", 0, handles, 2, cpu);
    if (!child) return child.error();
    return PipePair{std::move(there->write), std::move(back->read), child->pid};
}

bool pipe_round_trips(const char* name, PipePair& p, size_t n = kSamples, size_t warmup = kWarmup) {
    abi::Err failed = abi::Err::Ok;
    uint8_t out = 0;
    Figures f = measure(
        [&] {
            uint8_t in = 0;
            Result<size_t> w = pipe::write(p.to, &out, 1);
            Result<size_t> r = pipe::read(p.from, &in, 1);
            if (!w)
                failed = w.error();
            else if (!r)
                failed = r.error();
            else if (*r != 1 || in != out)
                failed = abi::Err::BadState;
            ++out;
        },
        n, warmup);
    if (failed != abi::Err::Ok) {
        report_error(name, "pipe", failed);
        return false;
    }
    report(name, f);
    return true;
}

void stop_pipe_echo(const services::Services& s, PipePair& p) {
    (void)pipe::close(p.to);  // the echo reads EOF and ends
    (void)proc::wait4(s.proc, p.pid);
}

// Completion port: a post by this thread to a waiter thread, timed from
// before the post to the waiter running with the packet.
struct PortWaiter {
    ipc::Endpoint* port;
    volatile uint64_t posted_at = 0;
    volatile uint64_t latency = 0;
    volatile uint64_t woken = 0;
    volatile bool bad = false;
};

void port_waiter_thread(void* arg) {
    PortWaiter& w = *static_cast<PortWaiter*>(arg);
    for (;;) {
        port::Packet p;
        Result<size_t> n = port::wait(*w.port, &p, 1, 1);
        uint64_t now = tsc();
        if (!n) return;  // closed: the case is over
        if (*n != 1 || p.key != w.woken) w.bad = true;
        w.latency = now - w.posted_at;
        w.woken = w.woken + 1;
    }
}

void port_post_to_waiter(const services::Services& s) {
    const char* name = "port_post_to_waiter";
    Result<ipc::Endpoint> port = port::create(s.port);
    if (!port) return report_error(name, "create", port.error());
    PortWaiter w;
    w.port = &port.value();
    if (!ipc::start_thread(port_waiter_thread, &w)) return report_error(name, "thread");
    abi::Err failed = abi::Err::Ok;
    uint64_t key = 0;
    Figures f = sample(kSamples, kWarmup, [&] {
        w.posted_at = tsc();
        Status st = port::post(*w.port, port::Packet{key, 0, {0, 0}});
        if (!st) failed = st.error();
        // The waiter ran before post() returned (it was woken by donation),
        // or it runs now, while this thread waits.
        while (w.woken != key + 1 && failed == abi::Err::Ok) (void)sys::yield();
        ++key;
        return w.latency;
    });
    (void)port::close(port.value());
    if (failed != abi::Err::Ok) return report_error(name, "post", failed);
    if (w.bad) return report_error(name, "wrong packet");
    report(name, f);
}

// A child's exit to its parent's wait4 returning, timed from the child's
// TSC (its exit status) to the parent's.
void exit_to_wait4(const services::Services& s, size_t n) {
    const char* name = "exit_to_wait4";
    abi::Err failed = abi::Err::Ok;
    Figures f = sample(n, 10, [&]() -> uint64_t {
        Result<proc::Child> c = proc::spawn_raw(s.proc, "ipcbench", "role=exit");
        if (!c) {
            failed = c.error();
            return 0;
        }
        Result<proc::Exited> e = proc::wait4(s.proc, c->pid);
        uint32_t now = uint32_t(tsc());
        if (!e)
            failed = e.error();
        else if (!proc::exited_normally(e->status))
            failed = abi::Err::BadState;
        return e ? uint32_t(now - proc::exit_code(e->status)) : 0;
    });
    if (failed != abi::Err::Ok) return report_error(name, "spawn/wait4", failed);
    report(name, f);
}

// The load cases: case 2 and the pipe ping-pong while N CPU-bound threads
// run. With donation the woken side runs at once; without, it waits for
// its round-robin turn behind the busy threads.
void load(EchoProcess& echo, PipePair& pipes) {
    BusyThreads busy;
    if (!busy.start()) return report_error("call_reply_recv_busy_0", "busy threads");
    for (size_t n : {0, 1, 2, 4, 8}) {
        char name[48];
        size_t samples = (n == 0 || g_donation) ? kSamples : kSlowSamples;
        size_t warmup = (n == 0 || g_donation) ? kWarmup : 1;
        // Without the fast path a round trip is 4 times longer: a fifth of
        // the samples span as many quanta.
        size_t call_samples = !g_donation && n != 0 ? kSlowSamples
                              : g_fast_path         ? kLoadSamples
                                                    : kLoadSamples / 5;
        if (!busy.spin(n)) return report_error("busy", "gate");
        format(name, sizeof name, "call_reply_recv_busy_%zu", n);
        call_round_trips(name, echo.ep.get(), 0, 0, call_samples, warmup);
        format(name, sizeof name, "pipe_ping_pong_busy_%zu", n);
        pipe_round_trips(name, pipes, samples, warmup);
        busy.stop();
    }
}

// `cpu`: this process's CPU, where the echo runs too.
int run_cases(const services::Services& s, uint32_t cpu) {
    printf("config: fastpath=%s donate=%s\n", g_fast_path ? "on" : "off",
           g_donation ? "on" : "off");
    printf("warm-up %zu, samples %zu per case; TSC ticks per operation\n", kWarmup, kSamples);
    bool all = g_fast_path && g_donation;  // the other switches: only what they change

    Figures timer = measure([] {});
    g_overhead = timer.median;
    report("timer_overhead", timer);

    if (all) {
        // The cost floor: a syscall number the entry stub refuses before it
        // saves anything (syscall and sysret); a syscall the general path
        // refuses (entry, frame, decode, a bad handle, exit); and the yield
        // vector with nothing else ready.
        report("null_syscall", measure([] { (void)sys::invoke(abi::Sys::Count); }));
        report("bad_handle_syscall",
               measure([] { (void)sys::invoke(abi::Sys::HandleClose, abi::kNoHandle); }));
        report("yield_int50_idle", measure([] { asm volatile("int $0x50" ::"D"(0) : "memory"); }));
    }

    // Call + ReplyRecv between two processes (the headline) and between two
    // threads of this one; then payloads and a handle.
    Result<EchoProcess> echo = spawn_echo(s, cpu);
    if (!echo) {
        report_error("call_reply_recv_two_processes", "spawn", echo.error());
        return 1;
    }
    call_round_trips("call_reply_recv_two_processes", echo->ep.get());

    Result<ipc::Endpoint> local = ipc::Endpoint::create();
    if (!local) return 2;
    uint64_t local_ep = local->get();
    if (!ipc::start_thread(echo_thread, &local_ep)) return 3;
    call_round_trips("call_reply_recv_two_threads", local_ep);
    (void)sys::invoke(abi::Sys::Call, local_ep, abi::MsgInfo{kStopLabel, 0, 0, false}.encode());

    if (all) {
        call_round_trips("call_reply_recv_64_bytes", echo->ep.get(), 64);
        call_round_trips("call_reply_recv_480_bytes", echo->ep.get(), abi::kMaxPayload);
        call_round_trips("call_reply_recv_one_handle", echo->ep.get(), 0, 1);

        // Send one way to a receiver waiting in another thread: the send
        // hands it the message and the CPU, and it is back in Recv when
        // this thread runs again.
        Result<ipc::Endpoint> sink = ipc::Endpoint::create();
        if (!sink) return 4;
        uint64_t sink_ep = sink->get();
        if (!ipc::start_thread(sink_thread, &sink_ep)) return 5;
        uint64_t send_info = abi::MsgInfo{1, 0, 0, false}.encode();
        report("send_one_way_two_threads", measure([&] {
                   (void)sys::invoke(abi::Sys::Send, sink_ep, send_info, 1, 2, 3, 4, abi::kForever);
               }));
    }

    // Through the servers.
    Result<PipePair> pipes = spawn_pipe_echo(s, cpu);
    if (!pipes) {
        report_error("pipe_ping_pong", "spawn", pipes.error());
        return 6;
    }
    if (all) {
        pipe_round_trips("pipe_ping_pong", *pipes);
        port_post_to_waiter(s);
        exit_to_wait4(s, kSamples);
    }

    load(*echo, *pipes);
    stop_pipe_echo(s, *pipes);
    stop_echo(s, *echo);
    printf("ipcbench done\n");
    return 0;
}

// With cross=on (bench-smp2.iso, booted on two CPUs): the headline round
// trip with the echo process on this CPU, which the other CPUs must not
// slow down (scripts/benchlib/report.py compares it with the one-CPU
// kernel's); then with the echo process on another CPU, where every call
// and every reply is a wake of a thread of the other CPU and an interrupt
// there, never a direct switch (docs/smp.md). Its own variant (cpus=N), so
// the one-CPU figures stay apart.
int run_cross_core(const abi::StartInfo& start, const services::Services& s) {
    printf("config: fastpath=%s donate=%s cpus=%u\n", g_fast_path ? "on" : "off",
           g_donation ? "on" : "off", start.cpu_count);
    Figures timer = measure([] {});
    g_overhead = timer.median;
    report("timer_overhead", timer);
    {
        Result<EchoProcess> here = spawn_echo(s, start.cpu);
        if (!here) {
            report_error("call_reply_recv_two_processes", "spawn", here.error());
        } else {
            call_round_trips("call_reply_recv_two_processes", here->ep.get());
            stop_echo(s, *here);
        }
    }
    constexpr const char* kName = "call_reply_recv_cross_core";
    abi::Err err = abi::Err::InvalidArgument;
    for (uint32_t k = 1; k < start.cpu_count; ++k) {
        Result<EchoProcess> echo = spawn_echo(s, (start.cpu + k) % start.cpu_count);
        if (!echo) {
            err = echo.error();
            continue;  // a CPU that did not start: the next one
        }
        call_round_trips(kName, echo->ep.get());
        stop_echo(s, *echo);
        printf("ipcbench done\n");
        return 0;
    }
    report_error(kName, "no other CPU to spawn on", err);
    printf("ipcbench done\n");
    return 7;
}

// Is the word `key=value` in `args`?
bool has_word(const char* args, const char* key, const char* value) {
    char found[16];
    if (!services::arg_value(args, key, found, sizeof found)) return false;
    size_t i = 0;
    for (; value[i] != 0; ++i) {
        if (found[i] != value[i]) return false;
    }
    return found[i] == 0;
}

}  // namespace

int main(uint64_t arg) {
    const abi::StartInfo& start = services::start_info(arg);
    if (has_word(start.args, "role", "exit")) proc::exit(uint32_t(tsc()));
    if (has_word(start.args, "role", "echo")) {
        if (start.handle_count < 1) return 90;
        echo(start.handles[0]);
        return 0;
    }
    if (has_word(start.args, "role", "pipe_echo")) return pipe_echo(start);
    char role[16];
    if (services::arg_value(start.args, "role", role, sizeof role)) {
        printf("unknown role %s\n", role);
        return 99;
    }
    constexpr uint64_t kSampleBytes = (kLoadSamples * sizeof(uint64_t) + 4095) & ~uint64_t{4095};
    sys::Ret map = sys::invoke(abi::Sys::MemMap, 0, kSampleBytes, abi::kProtRead | abi::kProtWrite);
    if (!map.ok()) {
        printf("no memory for the samples: %s\n", ipc::error_name(map.status));
        return 98;
    }
    g_samples = reinterpret_cast<uint64_t*>(map.r0);
    g_donation = !has_word(start.args, "donate", "off");
    g_fast_path = !has_word(start.args, "fastpath", "off");
    services::Services s = services::take(start);
    // Same-core cases stay same-core: this thread stays on its CPU (spawned
    // without one, it may run on every CPU), and so does each echo.
    if (abi::Err e = sys::set_affinity(abi::kNoHandle, uint64_t(1) << start.cpu);
        e != abi::Err::Ok) {
        printf("cannot bind to cpu %u: %s\n", start.cpu, ipc::error_name(e));
        return 97;
    }
    if (has_word(start.args, "cross", "on")) return run_cross_core(start, s);
    return run_cases(s, start.cpu);
}
