// User-mode bring-up and the lazy parts of the context switch: CR3, the FS
// base, the FPU (arch/x86_64/context.cpp).
#pragma once

#include "cpu.hpp"
#include "frame_allocator.hpp"
#include "paging.hpp"

namespace mk::x86 {

struct UserModeFeatures {
    bool smep;          // supervisor-mode execution prevention: on
    bool smap;          // supervisor-mode access prevention: on
    bool pcid_offered;  // process-context ids offered (CPUID.01H:ECX[17])
    // ... and on: CR4.PCIDE, each address space's TLB entries tagged with a
    // PCID from the CPU's table, a switch flushing them only when stale
    // (microkernel/pcid.hpp). Off: every CR3 write drops the user half's.
    bool pcid;
};

// Programs the syscall MSRs, enables SSE for user code, SMEP/SMAP when
// the CPU has them, and PCIDs when it has them and `pcid_allowed` (the
// kernel command line's pcid=on|off); user address spaces copy `kernel`'s
// half and take frames from `frames`.
UserModeFeatures init_user_mode(const AddressSpace& kernel, PagingFeatures features,
                                FrameAllocator& frames, bool pcid_allowed);

// The MSRs of the ways into and out of the kernel on this CPU: syscall
// (EFER.SCE, STAR, LSTAR, SFMASK), and the user's GS and FS bases (0).
// init_user_mode() does it on the boot CPU; every other CPU for itself.
void init_entry_msrs();
// What init_user_mode() sets for the boot CPU, for an application
// processor, on it: its switch state and its syscall MSRs. After the boot CPU's
// init_user_mode() (it copies the boot CPU's CR0 with TS, and turns PCIDs
// on if the boot CPU did).
void init_user_mode_here();

// The #NM handler: loads the current thread's FPU state.
void fpu_trap();

// Whether addr lies in the guard page(s) of a kernel stack slot, and which
// slot (for the fault handler's report of a kernel stack overflow).
bool kernel_stack_guard_hit(uint64_t addr, uint32_t& slot);
// Whether addr lies in a kernel stack slot (its guard or its stack), and which.
bool kernel_stack_slot_of(uint64_t addr, uint32_t& slot);

// The kVectorTlb handler: acts on the TLB shootdowns other CPUs asked of
// this one (Cpu::flush_user_tlb, Cpu::user_space_destroy).
void tlb_trap();

}  // namespace mk::x86
