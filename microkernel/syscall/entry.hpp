// Where the architecture hands user-mode entries to the portable core.
#pragma once

#include <cstdint>

#include "trap_frame.hpp"

namespace mk {

// A `syscall` from ring 3: decodes and performs it, leaving the results in
// the frame's return registers (abi.hpp). Entered with interrupts off.
void handle_syscall(TrapFrame& frame);

// An exception raised by user code (a page fault at `fault_address`, #GP,
// #UD, a divide error...): only the faulting thread's process suffers.
[[noreturn]] void handle_user_exception(TrapFrame& frame, uint64_t fault_address);

// The yield vector (int 0x50) from ring 3: rdi = a thread handle to donate
// the CPU to (if it is Ready), or 0. Registers are preserved; a bad handle
// is a plain yield.
void handle_user_yield(TrapFrame& frame);

// The last step before any return to ring 3 (a syscall's, an interrupt's):
// a thread that was killed ends here, on a stack that holds nothing.
void before_return_to_user();

}  // namespace mk
