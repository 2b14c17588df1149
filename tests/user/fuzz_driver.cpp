// init of the fuzz ISO: starts the canary (canary.cpp) and the syscall
// fuzzer (fuzz.cpp) with the seed FUZZ_SEED (the meson option fuzz_seed;
// 0 draws one from the TSC), pings the canary while the fuzzer runs, and
// once the fuzzer reports checks that it made its fuzz::kCalls calls
// without an anomaly and that the canary still answers. One
// "ok - NAME" / "not ok - NAME" line per check (tests/qemu reads them); it
// exits with the number of failures, which the kernel turns into the
// pass/fail status of the boot.
//
// The leak check: the ISO boots with memstat=on, so the kernel logs its
// heap use whenever a process ends. The driver runs `probe` once before the
// fuzzer and once after everything the fuzz made is gone, in the same
// state otherwise; the boot test wants both lines to say the same.
#include "common.hpp"
#include "fuzz.hpp"

#ifndef FUZZ_SEED
#define FUZZ_SEED 0
#endif

using namespace mk;
using utest::Result;

namespace {

int g_failures = 0;

void check(bool ok, const char* name) {
    printf("%s - %s\n", ok ? "ok" : "not ok", name);
    if (!ok) ++g_failures;
}

constexpr uint64_t kMillis = 1000000;  // ns
// How long the fuzzer may take, in report waits (kReportWait each).
constexpr uint64_t kReportWait = 100 * kMillis;
constexpr unsigned kMaxWaits = 2800;  // 280 s at most

// Waits `ns` (a receive on an endpoint nobody sends to).
void sleep_ns(const ipc::Endpoint& quiet, uint64_t ns) {
    (void)ipc::recv(quiet, ns);
}

// Runs probe to its end, for the kernel's memstat line (leak check); the
// process handle goes, so its process leaves nothing behind either.
bool run_probe(abi::HandleValue modules, const ipc::Endpoint& quiet) {
    abi::HandleValue probe = utest::spawn(modules, "probe", 0);
    if (probe == abi::kNoHandle) return false;
    sleep_ns(quiet, 200 * kMillis);
    return sys::invoke(abi::Sys::HandleClose, probe).ok();
}

// One call to the canary with a checksum to check; false if it did not
// answer (in time) or answered wrong.
bool canary_answers(const ipc::Endpoint& canary, uint64_t i) {
    uint64_t w[4] = {i, i * 0x10001, ~i, i << 13};
    Result<ipc::Received> r = ipc::call(
        canary,
        ipc::Message(1).set_word(0, w[0]).set_word(1, w[1]).set_word(2, w[2]).set_word(3, w[3]),
        2000 * kMillis);
    if (!r) {
        printf("  canary: %s\n", ipc::error_name(r.error()));
        return false;
    }
    const ipc::Message& m = r.value().message;
    bool ok = m.label() == fuzz::kLabelCanary &&
              m.word(0) == fuzz::canary_checksum(w[0], w[1], w[2], w[3]);
    if (!ok) printf("  canary: wrong answer (label %#x, word 0 %#lx)\n", m.label(), m.word(0));
    return ok;
}

abi::HandleValue spawn_fuzzer(abi::HandleValue modules, uint64_t seed, abi::HandleValue report,
                              abi::HandleValue canary) {
    abi::SpawnArgs a{};
    __builtin_memcpy(a.module, "fuzz", 5);
    a.arg = seed;
    a.handle_count = fuzz::kStartCount;
    a.handles[fuzz::kStartReport] = report;
    a.handle_flags[fuzz::kStartReport] = abi::kTransferMove;
    a.handles[fuzz::kStartCanary] = canary;
    a.handle_flags[fuzz::kStartCanary] = abi::kTransferMove;
    a.handles[fuzz::kStartModules] = modules;
    a.handle_flags[fuzz::kStartModules] = abi::kTransferCopy;
    sys::Ret r = sys::invoke(abi::Sys::ProcessSpawn, modules, reinterpret_cast<uint64_t>(&a));
    if (!r.ok()) {
        printf("  spawn fuzz: %s\n", ipc::error_name(r.status));
        return abi::kNoHandle;
    }
    return abi::HandleValue(r.r0);
}

}  // namespace

int main(uint64_t arg) {
    const abi::StartInfo& start = utest::start_info(arg);
    if (start.handle_count < 1) {
        printf("not ok - fuzz_start: no boot-modules handle\n");
        return 1;
    }
    abi::HandleValue modules = start.handles[0];
    uint64_t seed = FUZZ_SEED;
    if (seed == 0) seed = utest::rdtsc() | 1;
    printf("fuzz driver: seed %#lx, %lu calls\n", seed, fuzz::kCalls);

    // The canary, and a call to it before anything else happens.
    Result<ipc::Endpoint> canary_ep = ipc::Endpoint::create();
    abi::HandleValue canary_v = canary_ep ? canary_ep.value().get() : abi::kNoHandle;
    abi::HandleValue canary = utest::spawn(modules, "canary", 0, &canary_v, 1);
    bool canary_up = canary != abi::kNoHandle && canary_answers(canary_ep.value(), 0);
    check(canary_up, "fuzz_canary_started");
    if (!canary_up) return g_failures;
    Result<ipc::Endpoint> quiet = ipc::Endpoint::create();
    check(quiet && run_probe(modules, quiet.value()), "fuzz_leak_baseline");

    // The fuzzer: a send handle for its report, a badged copy of the
    // canary's endpoint (send, grant, duplicate) and the modules.
    Result<ipc::Endpoint> report = ipc::Endpoint::create();
    Result<ipc::Endpoint> report_send = report ? report.value().mint(abi::kRightSend, 0xF022)
                                               : Result<ipc::Endpoint>(abi::Err::BadState);
    Result<ipc::Endpoint> canary_for_fuzz =
        canary_ep.value().mint(abi::kRightSend | abi::kRightGrant | abi::kRightDuplicate, 0xCA4A);
    abi::HandleValue fuzzer = abi::kNoHandle;
    if (report_send && canary_for_fuzz) {
        fuzzer =
            spawn_fuzzer(modules, seed, report_send.value().get(), canary_for_fuzz.value().get());
        if (fuzzer != abi::kNoHandle) {
            (void)report_send.value().release();  // moved to the fuzzer
            (void)canary_for_fuzz.value().release();
        }
    }
    check(fuzzer != abi::kNoHandle, "fuzz_fuzzer_started");
    if (fuzzer == abi::kNoHandle) return g_failures;

    // Wait for the report, pinging the canary between waits.
    uint64_t pings = 0, pings_ok = 0, strays = 0;
    bool reported = false;
    uint64_t calls = 0, anomalies = 0, oks = 0, reported_seed = 0;
    uint64_t t0 = utest::rdtsc();
    for (unsigned waits = 0; waits < kMaxWaits && !reported; ++waits) {
        Result<ipc::Received> r = ipc::recv(report.value(), kReportWait);
        if (r) {
            const ipc::Message& m = r.value().message;
            if (m.label() == fuzz::kLabelReport && r.value().badge == 0xF022) {
                calls = m.word(0);
                reported_seed = m.word(1);
                anomalies = m.word(2);
                oks = m.word(3);
                reported = true;
            } else {
                ++strays;
                if (r.value().call) (void)ipc::reply(ipc::Message(0));
            }
            continue;
        }
        if (r.error() != abi::Err::TimedOut) {
            printf("  report endpoint: %s\n", ipc::error_name(r.error()));
            break;
        }
        ++pings;
        pings_ok += canary_answers(canary_ep.value(), pings) ? 1 : 0;
    }
    uint64_t t1 = utest::rdtsc();
    printf(
        "  fuzzer: %s: %lu calls (%lu Ok), seed %#lx, %lu anomalies, %lu TSC ticks; "
        "canary pinged %lu times meanwhile, %lu answered; %lu stray messages\n",
        reported ? "reported" : "NO REPORT", calls, oks, reported_seed, anomalies, t1 - t0, pings,
        pings_ok, strays);
    check(reported && calls >= fuzz::kCalls && reported_seed == seed, "fuzz_1000000_syscalls");
    check(reported && anomalies == 0, "fuzz_no_anomalies");
    check(pings > 0 && pings_ok == pings, "fuzz_canary_answered_during_fuzz");

    // After: the canary answers a run of checked calls.
    bool all = true;
    for (uint64_t i = 1; i <= 1000 && all; ++i) all = canary_answers(canary_ep.value(), i * 977);
    check(all, "fuzz_canary_answers_after_fuzz");

    // Everything of the fuzz goes (the fuzzer ended its children itself),
    // the reaper gets time to finish, then the probe again: the kernel must
    // be back where it was at the baseline.
    (void)sys::invoke(abi::Sys::ProcessKill, fuzzer);
    bool closed = sys::invoke(abi::Sys::HandleClose, fuzzer).ok() && report.value().close().ok();
    sleep_ns(quiet.value(), 500 * kMillis);
    check(closed && run_probe(modules, quiet.value()), "fuzz_kernel_still_serves");
    // The canary stays: its end would log a memstat line of its own.
    printf("done: %d failed\n", g_failures);
    return g_failures;
}
