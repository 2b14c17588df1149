// ipcbench: IPC latency, case by case (run by init with run=ipcbench; the
// bench ISO). Each case warms up, then times kSamples operations one by one
// with rdtsc and prints one line:
//
//   [ipcbench] case NAME: n=10000 median=M mean=A min=L max=H p99=P overhead=O
//
// in TSC ticks per operation; under QEMU -icount shift=0 a tick is one
// guest instruction. `overhead` is the cost of the timing itself (an empty
// rdtsc pair, measured the same way) — stated beside the figures, not
// subtracted from them.
#include <algorithm>

#include "mk/ipc.hpp"
#include "mk/proc.hpp"
#include "mk/runtime.hpp"
#include "mk/services.hpp"
#include "mk/sys.hpp"

using namespace mk;
using ipc::Result;

namespace {

constexpr size_t kWarmup = 1000;
constexpr size_t kSamples = 10000;

uint64_t g_samples[kSamples];

inline uint64_t tsc() {
    uint32_t lo, hi;
    asm volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return (uint64_t(hi) << 32) | lo;
}

struct Figures {
    uint64_t median, mean, min, max, p99;
};

Figures summarize() {
    std::sort(g_samples, g_samples + kSamples);
    uint64_t sum = 0;
    for (uint64_t s : g_samples) sum += s;
    return Figures{g_samples[kSamples / 2], sum / kSamples, g_samples[0], g_samples[kSamples - 1],
                   g_samples[kSamples * 99 / 100]};
}

// Times op() kSamples times after kWarmup untimed runs.
template <typename Op>
Figures measure(Op&& op) {
    for (size_t i = 0; i < kWarmup; ++i) op();
    for (size_t i = 0; i < kSamples; ++i) {
        uint64_t t0 = tsc();
        op();
        g_samples[i] = tsc() - t0;
    }
    return summarize();
}

uint64_t g_overhead = 0;

void report(const char* name, const Figures& f) {
    printf("case %s: n=%zu median=%lu mean=%lu min=%lu max=%lu p99=%lu overhead=%lu\n", name,
           kSamples, f.median, f.mean, f.min, f.max, f.p99, g_overhead);
}

// A thread of this process answering raw calls on `ep` (word 0 + 1).
void echo_thread(void* arg) {
    uint64_t ep = *static_cast<uint64_t*>(arg);
    sys::Ret r = sys::invoke(abi::Sys::Recv, ep, 0, 0, 0, 0, 0, abi::kForever);
    while (r.ok()) {
        r = sys::invoke(abi::Sys::ReplyRecv, ep, abi::MsgInfo{0, 0, 0, false}.encode(),
                        r.words[0] + 1, 0, 0, 0, abi::kForever);
    }
}

// A thread of this process receiving on `ep`, forever.
void sink_thread(void* arg) {
    uint64_t ep = *static_cast<uint64_t*>(arg);
    for (;;) (void)sys::invoke(abi::Sys::Recv, ep, 0, 0, 0, 0, 0, abi::kForever);
}

// Call + ReplyRecv, a register-only message, to the server behind `ep`.
Figures call_round_trips(uint64_t ep) {
    uint64_t info = abi::MsgInfo{1, 0, 0, false}.encode();
    uint64_t i = 0;
    return measure(
        [&] { (void)sys::invoke(abi::Sys::Call, ep, info, i++, 0, 0, 0, abi::kForever); });
}

}  // namespace

int main(uint64_t arg) {
    const abi::StartInfo& start = services::start_info(arg);
    services::Services s = services::take(start);
    printf("warm-up %zu, samples %zu per case; TSC ticks per operation\n", kWarmup, kSamples);

    Figures timer = measure([] {});
    g_overhead = timer.median;
    report("timer_overhead", timer);

    // The cost floor: a syscall the kernel refuses at once (no such
    // number), and the yield vector with nothing else ready.
    report("null_syscall", measure([] { (void)sys::invoke(abi::Sys::Count); }));
    report("yield_int50_idle", measure([] { asm volatile("int $0x50" ::"D"(0) : "memory"); }));

    // Call + ReplyRecv between two processes (the headline) and between two
    // threads of this one.
    Result<ipc::Endpoint> ep = ipc::Endpoint::create();
    if (!ep) return 1;
    Result<ipc::Endpoint> copy = ep->mint(abi::kRightSend | abi::kRightReceive, 0);
    if (!copy) return 2;
    ipc::Handle h = std::move(copy).value();
    Result<proc::Child> pong = proc::spawn_raw(s.proc, "rawpong", "", 0, &h, 1);
    if (!pong) return 3;
    report("call_reply_recv_two_processes", call_round_trips(ep->get()));
    (void)sys::invoke(abi::Sys::Call, ep->get(), abi::MsgInfo{0xFFFF, 0, 0, false}.encode());
    (void)proc::wait4(s.proc, pong->pid);

    Result<ipc::Endpoint> local = ipc::Endpoint::create();
    if (!local) return 4;
    uint64_t local_ep = local->get();
    if (!ipc::start_thread(echo_thread, &local_ep)) return 5;
    report("call_reply_recv_two_threads", call_round_trips(local_ep));

    // Send one way to a receiver waiting in another thread: the send hands
    // it the message and the CPU, and it is back in Recv when this thread
    // runs again.
    Result<ipc::Endpoint> sink = ipc::Endpoint::create();
    if (!sink) return 6;
    uint64_t sink_ep = sink->get();
    if (!ipc::start_thread(sink_thread, &sink_ep)) return 7;
    uint64_t send_info = abi::MsgInfo{1, 0, 0, false}.encode();
    report("send_one_way_two_threads", measure([&] {
               (void)sys::invoke(abi::Sys::Send, sink_ep, send_info, 1, 2, 3, 4, abi::kForever);
           }));

    printf("ipcbench done\n");
    return 0;
}
