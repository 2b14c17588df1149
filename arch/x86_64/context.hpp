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

// The MSRs of the ways into and out of the kernel on this CPU: syscall
// (EFER.SCE, STAR, LSTAR, SFMASK), and the user's GS and FS bases (0).
// init_user_mode() does it on the boot CPU; every other CPU for itself.
void init_entry_msrs();
// What init_user_mode() sets for the boot CPU, for an application
// processor, on it: its switch state (its entry stack is the TSS.rsp0 at
// `entry_stack_slot`) and its syscall MSRs. After the boot CPU's
// init_user_mode() (it copies the boot CPU's CR0 with TS).
void init_user_mode_here(void* entry_stack_slot);

// The #NM handler: loads the current thread's FPU state.
void fpu_trap();

// The kVectorTlb handler: acts on the TLB shootdowns other CPUs asked of
// this one (Cpu::flush_user_tlb, Cpu::user_space_destroy).
void tlb_trap();

}  // namespace mk::x86
