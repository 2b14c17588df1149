// The registers of an interrupted or trapping thread, as the entry stubs
// save them on its kernel stack (arch/x86_64/isr.S for interrupts and
// exceptions, arch/x86_64/syscall.S for `syscall`): the same layout for
// both, so the syscall layer and the fault handlers read one structure.
// Named after the x86-64 registers because the syscall ABI is
// (libipc/include/mk/abi.hpp says which register carries what).
#pragma once

#include <cstdint>

namespace mk {

struct TrapFrame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;  // pushed by the CPU (or built by the syscall stub)

    bool from_user() const { return (cs & 3) == 3; }
};

// TrapFrame::vector of a frame built by the syscall entry stub.
constexpr uint64_t kSyscallVector = 0x100;

}  // namespace mk
