// The registers of an interrupted or trapping thread, as the entry stubs
// save them on its kernel stack (arch/x86_64/isr.S for interrupts and
// exceptions, arch/x86_64/syscall.S for `syscall`): the same layout for
// both, so the syscall layer and the fault handlers read one structure.
// Named after the x86-64 registers because the syscall ABI is
// (libipc/include/mk/abi.hpp says which register carries what).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mk {

struct TrapFrame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;  // pushed by the CPU (or built by the syscall stub)

    bool from_user() const { return (cs & 3) == 3; }
};

// arch/x86_64/frame.inc names these offsets for the assembly (FRAME_*).
static_assert(offsetof(TrapFrame, r15) == 0 && offsetof(TrapFrame, r14) == 8 &&
              offsetof(TrapFrame, r13) == 16 && offsetof(TrapFrame, r12) == 24 &&
              offsetof(TrapFrame, r10) == 40 && offsetof(TrapFrame, r9) == 48 &&
              offsetof(TrapFrame, r8) == 56 && offsetof(TrapFrame, rbp) == 64 &&
              offsetof(TrapFrame, rdi) == 72 && offsetof(TrapFrame, rsi) == 80 &&
              offsetof(TrapFrame, rdx) == 88 && offsetof(TrapFrame, rbx) == 104 &&
              offsetof(TrapFrame, rax) == 112 && offsetof(TrapFrame, rip) == 136 &&
              offsetof(TrapFrame, rflags) == 152 && offsetof(TrapFrame, rsp) == 160 &&
              sizeof(TrapFrame) == 176);

// TrapFrame::vector of the frame a new user thread first leaves through
// (arch_enter_user). A syscall's frame leaves its vector, error code, CS
// and SS unwritten: nothing reads them there (syscall.S).
constexpr uint64_t kSyscallVector = 0x100;

}  // namespace mk
