// Raw syscalls: the registers of abi.hpp, nothing more. Everything else in
// libipc is built on invoke().
#pragma once

#include <cstdint>

#include "mk/abi.hpp"

namespace mk::sys {

// What comes back: rax, rdi, rsi and the four message words.
struct Ret {
    abi::Err status;
    uint64_t r0;  // rdi: a badge, a new handle or address, a result value
    uint64_t r1;  // rsi: message info
    uint64_t words[abi::kMessageWords];

    bool ok() const { return status == abi::Err::Ok; }
};

#if defined(MK_HOST)
// The host unit tests link a fake kernel (tests/unit/fake/user_kernel.cpp)
// in place of the syscall instruction, so everything above it runs there.
Ret invoke(abi::Sys number, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0,
           uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0);
#else
inline Ret invoke(abi::Sys number, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0,
                  uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0) {
    register uint64_t rax asm("rax") = static_cast<uint64_t>(number);
    register uint64_t rdi asm("rdi") = a0;
    register uint64_t rsi asm("rsi") = a1;
    register uint64_t rdx asm("rdx") = a2;
    register uint64_t r10 asm("r10") = a3;
    register uint64_t r8 asm("r8") = a4;
    register uint64_t r9 asm("r9") = a5;
    register uint64_t r12 asm("r12") = a6;
    asm volatile("syscall"
                 : "+r"(rax), "+r"(rdi), "+r"(rsi), "+r"(rdx), "+r"(r10), "+r"(r8), "+r"(r9)
                 : "r"(r12)
                 : "rcx", "r11", "memory");
    return Ret{static_cast<abi::Err>(rax), rdi, rsi, {rdx, r10, r8, r9}};
}
#endif

inline abi::Err debug_log(const char* text, uint64_t length) {
    return invoke(abi::Sys::DebugLog, 0, reinterpret_cast<uint64_t>(text), length).status;
}

[[noreturn]] inline void process_exit(uint64_t status) {
    invoke(abi::Sys::ProcessExit, 0, status);
    __builtin_trap();
}

[[noreturn]] inline void thread_exit() {
    invoke(abi::Sys::ThreadExit);
    __builtin_trap();
}

// The calling thread's FS base (its TLS pointer: what %fs:0 reads) from now
// on. InvalidArgument for a value at or above abi::kFsBaseEnd.
inline abi::Err set_fs_base(uint64_t base) {
    return invoke(abi::Sys::ThreadSetFsBase, 0, base).status;
}

// The CPUs `thread` (a thread handle with Manage; kNoHandle: the calling
// thread) may run on from now on, a bit per CPU (StartInfo::cpu_count says
// which exist). When the thread's CPU is not in the mask it moves to the
// least loaded CPU of it; the calling thread runs there when this returns.
// That CPU goes to *cpu (if not null). InvalidArgument for an empty mask or
// one naming a CPU that is not running.
inline abi::Err set_affinity(abi::HandleValue thread, uint64_t mask, uint32_t* cpu = nullptr) {
    Ret r = invoke(abi::Sys::ThreadSetAffinity, thread, mask);
    if (r.ok() && cpu != nullptr) *cpu = uint32_t(r.r0);
    return r.status;
}

// Yields the CPU; to `thread` (a thread handle) if it is ready (directed yield).
inline abi::Err yield(abi::HandleValue thread = abi::kNoHandle) {
    return invoke(abi::Sys::Yield, thread).status;
}

}  // namespace mk::sys
