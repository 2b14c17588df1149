// User-mode bring-up and the lazy parts of the context switch: CR3, the FS
// base, the FPU (arch/x86_64/context.cpp).
#pragma once

#include "cpu.hpp"
#include "frame_allocator.hpp"
#include "paging.hpp"

namespace mk::x86 {

struct UserModeFeatures {
    bool smep;  // supervisor-mode execution prevention: on
    bool smap;  // supervisor-mode access prevention: on
    bool pcid;  // process-context ids offered (not used yet: CR3 writes flush the TLB)
};

// Programs the syscall MSRs, enables SSE for user code and SMEP/SMAP when
// the CPU has them; user address spaces copy `kernel`'s half and take
// frames from `frames`.
UserModeFeatures init_user_mode(const AddressSpace& kernel, PagingFeatures features,
                                FrameAllocator& frames);

// The #NM handler: loads the current thread's FPU state.
void fpu_trap();

// Makes the CPU's FS base `to`'s, a user thread about to run on this CPU:
// writes MSR_FS_BASE only when it may hold something else (a compare
// otherwise). Every path that switches to a user thread calls it, with
// interrupts off; Cpu::switch_context does.
void switch_fs_base(const Cpu::Context& to);

}  // namespace mk::x86
