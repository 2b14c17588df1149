// Programs: an ELF executable (a boot module) turned into a new process
// with its first thread, ready to start.
#pragma once

#include <cstddef>
#include <cstdint>

#include "error.hpp"
#include "object/handle_table.hpp"
#include "process.hpp"

namespace mk {

class Process;
class Thread;

struct Program {
    Process* process;  // the creator's reference
    Thread* thread;    // created, not started
};

// Validates the ELF image (microkernel/elf.hpp), maps and fills its
// segments in a new process, maps the main stack (abi::kMainStackPages
// below abi::kUserEnd, with an unmapped guard page under it) and creates
// the first thread at the entry point with `arg` in its first argument
// register. All or nothing: on an error nothing is left behind and, for a
// refused file, *reason says why. Errors: those of parse_elf(),
// LimitReached (more memory than a process may have), OutOfMemory.
// The process is homed on CPU `cpu`, and may run on `mask`
// (Process::create).
[[nodiscard]] Result<Program> load_program(const char* name, const void* image, size_t size,
                                           uint64_t arg, const char** reason = nullptr,
                                           uint32_t cpu = Process::kAnyCpu, uint32_t mask = 0);

// load_program(), then the child's first handles: each of `handles` goes
// into its fresh table, and its first thread starts with rdi (and rsp) at
// an abi::StartInfo on its stack giving `arg`, the argument string `args`
// (its first `args_length` bytes, cut to abi::kArgsMax - 1), its process id and the
// handle values in order, and the CPUs (where it starts, how many there
// are, and where it may run).
// The entries are taken over (moved from) only on success. Errors: those of load_program(),
// InvalidArgument (more than abi::kMaxStartHandles handles).
[[nodiscard]] Result<Program> spawn_program(const char* name, const void* image, size_t size,
                                            uint64_t arg, const char* args, size_t args_length,
                                            HandleEntry* handles, uint32_t count,
                                            const char** reason = nullptr,
                                            uint32_t cpu = Process::kAnyCpu, uint32_t mask = 0);

}  // namespace mk
