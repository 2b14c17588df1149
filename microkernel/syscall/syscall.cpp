// The syscall layer: decode, then perform (docs/syscalls.md).
//
// decode_* turns the raw registers into a typed request and checks all of
// it (numbers, lengths, user pointers, handles and rights); perform_* acts
// on a request that is known to be good and cannot fail because of user
// input, so a refused call leaves nothing half done. to_abi() is the one
// place where the kernel's Error becomes the ABI's number.
#include "entry.hpp"

#include "log.hpp"
#include "mk/abi.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "process.hpp"
#include "thread.hpp"

namespace mk {

namespace {

Scheduler& sched() {
    return this_cpu().scheduler;
}

// Every Error, no default: a new Error value fails to compile here until
// it has its ABI number.
abi::Err to_abi(Error e) {
    switch (e) {
        case Error::None:
            return abi::Err::Ok;
        case Error::OutOfMemory:
            return abi::Err::OutOfMemory;
        case Error::InvalidArgument:
            return abi::Err::InvalidArgument;
        case Error::BadHandle:
            return abi::Err::BadHandle;
        case Error::NoRights:
            return abi::Err::NoRights;
        case Error::WouldBlock:
            return abi::Err::WouldBlock;
        case Error::TimedOut:
            return abi::Err::TimedOut;
        case Error::Destroyed:
            return abi::Err::Destroyed;
        case Error::PeerDied:
            return abi::Err::PeerDied;
        case Error::BadState:
            return abi::Err::BadState;
        case Error::TooLarge:
            return abi::Err::TooLarge;
        case Error::Unsupported:
            return abi::Err::Unsupported;
        case Error::Interrupted:
            return abi::Err::Interrupted;
        case Error::BadAddress:
            return abi::Err::BadAddress;
        case Error::BadSyscall:
            return abi::Err::BadSyscall;
        case Error::LimitReached:
            return abi::Err::LimitReached;
    }
    MK_PANIC("to_abi: Error %u has no ABI number", unsigned(e));
}

// --- debug_log ---

struct DebugLogRequest {
    char text[abi::kDebugLogMax];
    size_t length;
};

Status decode_debug_log(const Process& p, const TrapFrame& f, DebugLogRequest& r) {
    if (f.rdx > abi::kDebugLogMax) return Error::TooLarge;
    r.length = f.rdx;
    return p.copy_from_user(r.text, f.rsi, r.length);
}

void perform_debug_log(const Process& p, const DebugLogRequest& r) {
    log("[%s] %.*s", p.name(), int(r.length), r.text);
}

// --- yield ---

Status decode_yield(const TrapFrame& f) {
    // Directed yield names a thread handle; handles come with the handle table.
    return f.rdi == abi::kNoHandle ? Error::None : Error::BadHandle;
}

}  // namespace

void handle_syscall(TrapFrame& f) {
    Thread* self = sched().current();
    Process* proc = self->process;
    MK_ASSERT(proc != nullptr);
    // Syscalls run preemptible; the exit path turns interrupts off again.
    Cpu::restore_interrupts(true);
    Status st = Error::None;
    switch (static_cast<abi::Sys>(f.rax)) {
        case abi::Sys::DebugLog: {
            DebugLogRequest r;
            st = decode_debug_log(*proc, f, r);
            if (st == Error::None) perform_debug_log(*proc, r);
            break;
        }
        case abi::Sys::Yield:
            st = decode_yield(f);
            if (st == Error::None) sched().yield_now();
            break;
        case abi::Sys::ThreadExit:
            sched().exit_current();
        case abi::Sys::ProcessExit:
            proc->exit_from_inside(abi::status_exited(uint32_t(f.rsi)));
        default:
            st = Error::BadSyscall;
            break;
    }
    f.rax = uint64_t(to_abi(st));
}

void handle_user_exception(TrapFrame& f, uint64_t fault_address) {
    Thread* self = sched().current();
    MK_ASSERT(self->process != nullptr);
    const char* name = self->process->name();
    if (f.vector == 14) {
        log("user: %s/%s killed: page fault at %#lx (%s, rip %#lx)\n", name, self->name(),
            fault_address,
            (f.error_code & 16) != 0  ? "execute"
            : (f.error_code & 2) != 0 ? "write"
                                      : "read",
            f.rip);
    } else {
        log("user: %s/%s killed: exception %lu, error code %#lx (rip %#lx)\n", name, self->name(),
            f.vector, f.error_code, f.rip);
    }
    Cpu::restore_interrupts(true);
    self->process->exit_from_inside(abi::status_fault(uint8_t(f.vector)));
}

}  // namespace mk
