// What the user test programs share: TAP-style result lines on the debug
// log (the boot tests read "[utest] ok - NAME"), start handles, spawning.
#pragma once

#include "mk/abi.hpp"
#include "mk/ipc.hpp"
#include "mk/runtime.hpp"
#include "mk/sys.hpp"

namespace utest {

using namespace mk;
using ipc::Result;
using ipc::Status;

// Word 1 of pong's label 5, which makes it spin in user mode for good: a
// key, so that a stray label 5 (the syscall fuzzer serves a pong random
// calls) never turns it into a CPU-bound thread beside the fuzzer.
constexpr uint64_t kPongSpinKey = 0x5917'5917'c0de'0005ull;

inline const abi::StartInfo& start_info(uint64_t arg) {
    return *reinterpret_cast<const abi::StartInfo*>(arg);
}

// The initial APIC id of the processor running this (CPUID leaf 1, EBX
// bits 31-24): which CPU user code really is on.
inline uint32_t apic_id() {
    uint32_t a, b, c, d;
    asm volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    return b >> 24;
}

inline uint64_t rdtsc() {
    uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t(hi) << 32) | lo;
}

// Spawns boot module `module` with `handles` (copies when copy[i], else
// moved) and `arg`, on CPU `cpu`; returns the process handle (0 on error,
// reported).
inline abi::HandleValue spawn(abi::HandleValue modules, const char* module, uint64_t arg,
                              const abi::HandleValue* handles = nullptr, uint32_t count = 0,
                              bool copy = true, abi::Err* error = nullptr,
                              abi::HandleValue supervisor = abi::kNoHandle, uint64_t* pid = nullptr,
                              uint32_t cpu = abi::kAnyCpu) {
    abi::SpawnArgs a{};
    for (unsigned i = 0; module[i] != '\0' && i + 1 < abi::kModuleNameMax; ++i) {
        a.module[i] = module[i];
    }
    a.arg = arg;
    a.handle_count = count;
    for (uint32_t i = 0; i < count; ++i) {
        a.handles[i] = handles[i];
        a.handle_flags[i] = copy ? abi::kTransferCopy : abi::kTransferMove;
    }
    a.supervisor = supervisor;
    a.cpu = cpu;
    sys::Ret r = sys::invoke(abi::Sys::ProcessSpawn, modules, reinterpret_cast<uint64_t>(&a));
    if (error != nullptr) *error = r.status;
    if (pid != nullptr) *pid = r.r1;
    if (!r.ok()) {
        printf("spawn %s: %s\n", module, ipc::error_name(r.status));
        return abi::kNoHandle;
    }
    return abi::HandleValue(r.r0);
}

}  // namespace utest
