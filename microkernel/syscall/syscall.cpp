// The syscall layer: decode, then perform (docs/syscalls.md).
//
// decode_* turns the raw registers into a typed request and checks all of
// it (numbers, lengths, user pointers, handles and rights); perform_* acts
// on a request that is known to be good and cannot fail because of user
// input, so a refused call leaves nothing half done. to_abi() is the one
// place where the kernel's Error becomes the ABI's number.
#include "entry.hpp"

#include <utility>

#include "internal.hpp"

#include "elf.hpp"
#include "log.hpp"
#include "memory.hpp"
#include "mk/abi.hpp"
#include "object/badge_tracker.hpp"
#include "object/boot_modules.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "process.hpp"
#include "program.hpp"
#include "thread.hpp"

namespace mk::syscall {

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

namespace {

Scheduler& sched() {
    return this_cpu().scheduler;
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

// --- handles ---

Status sys_handle_close(Process& p, Thread&, TrapFrame& f) {
    Result<HandleValue> h = decode_handle(f.rdi);
    if (!h) return h.error();
    return p.handles().remove(h.value());
}

Status sys_handle_mint(Process& p, Thread&, TrapFrame& f) {
    Result<HandleValue> h = decode_handle(f.rdi);
    if (!h) return h.error();
    if ((f.rsi & ~uint64_t(abi::kRightsAll)) != 0) return Error::InvalidArgument;
    Result<HandleValue> minted =
        p.handles().mint(h.value(), uint32_t(f.rsi), f.rdx, BadgeTracker::make);
    if (!minted) return minted.error();
    f.rdi = minted.value();
    return Error::None;
}

// --- process_spawn ---

struct SpawnRequest {
    abi::SpawnArgs args;
    ModuleImage module;
    ElfImage elf;
    size_t name_length;
    size_t args_length;
    Named<Endpoint> supervisor;      // empty: none
    Notice* death_notice = nullptr;  // allocated in decode, so nothing fails later

    SpawnRequest() = default;
    SpawnRequest(const SpawnRequest&) = delete;
    SpawnRequest& operator=(const SpawnRequest&) = delete;
    ~SpawnRequest() { kdelete(death_notice); }
};

// Everything a spawn checks before it changes anything: the modules
// handle, the arguments in user memory, the module and its ELF image, and
// the handles it will pass (looked up, not yet taken).
Status decode_spawn(Process& p, const TrapFrame& f, SpawnRequest& r) {
    Result<HandleValue> h = decode_handle(f.rdi);
    if (!h) return h.error();
    Result<HandleEntry> modules =
        p.handles().lookup(h.value(), ObjectType::Modules, abi::kRightManage);
    if (!modules) return modules.error();
    Status st = p.copy_from_user(&r.args, f.rsi, sizeof r.args);
    if (st != Error::None) return st;
    r.name_length = 0;
    while (r.name_length < abi::kModuleNameMax && r.args.module[r.name_length] != '\0') {
        ++r.name_length;
    }
    if (r.name_length == 0 || r.name_length == abi::kModuleNameMax) return Error::InvalidArgument;
    r.args_length = 0;
    while (r.args_length < abi::kArgsMax && r.args.args[r.args_length] != '\0') ++r.args_length;
    if (r.args_length == abi::kArgsMax) return Error::InvalidArgument;
    if (r.args.handle_count > abi::kMaxStartHandles) return Error::InvalidArgument;
    if (r.args.cpu != abi::kAnyCpu && !cpu_online(r.args.cpu)) return Error::InvalidArgument;
    for (uint32_t i = 0; i < r.args.handle_count; ++i) {
        if (r.args.handle_flags[i] > abi::kTransferCopy) return Error::InvalidArgument;
    }
    Result<ModuleImage> m = BootModules::instance().find(r.args.module, r.name_length);
    if (!m) return m.error();
    r.module = m.value();
    const char* reason = "";
    Result<ElfImage> elf = parse_elf(r.module.data, r.module.size, &reason);
    if (!elf) {
        log("spawn: module '%.*s' refused: %s\n", int(r.name_length), r.args.module, reason);
        return elf.error();
    }
    r.elf = elf.value();
    if (r.args.supervisor != abi::kNoHandle) {
        Result<Named<Endpoint>> sup =
            lookup<Endpoint>(p, r.args.supervisor, ObjectType::Endpoint, abi::kRightSend);
        if (!sup) return sup.error();
        r.supervisor = std::move(sup).value();
        r.death_notice = knew<Notice>();
        if (r.death_notice == nullptr) return Error::OutOfMemory;
    }
    return Error::None;
}

Status sys_process_spawn(Process& parent, Thread&, TrapFrame& f) {
    SpawnRequest r;
    Status st = decode_spawn(parent, f, r);
    if (st != Error::None) return st;

    // Room for the child's handle in the parent's table, and the handles
    // to pass, taken all or nothing; both before anything is built.
    // A second reservation keeps a way back for moved handles if the spawn
    // runs out of memory after taking them.
    Result<HandleTable::Reservation> reserved = parent.handles().reserve(1);
    if (!reserved) return reserved.error();
    HandleTable::Reservation slot = std::move(reserved).value();
    Result<HandleTable::Reservation> reserved_back = parent.handles().reserve(r.args.handle_count);
    if (!reserved_back) return reserved_back.error();
    HandleTable::Reservation back = std::move(reserved_back).value();
    HandleTable::TakeRequest takes[abi::kMaxStartHandles];
    HandleEntry passed[abi::kMaxStartHandles];
    for (uint32_t i = 0; i < r.args.handle_count; ++i) {
        takes[i] = {r.args.handles[i], 0, r.args.handle_flags[i] == abi::kTransferCopy};
    }
    st = parent.handles().take_all(takes, r.args.handle_count, passed);
    if (st != Error::None) return st;

    char name[Process::kNameLength];
    size_t n = r.name_length < sizeof name - 1 ? r.name_length : sizeof name - 1;
    __builtin_memcpy(name, r.args.module, n);
    name[n] = '\0';
    Result<Program> prog =
        spawn_program(name, r.module.data, r.module.size, r.args.arg, r.args.args, r.args_length,
                      passed, r.args.handle_count, nullptr, r.args.cpu);
    if (!prog) {
        // Out of memory: the moved handles go back (under new values).
        for (uint32_t i = 0; i < r.args.handle_count; ++i) {
            if (!takes[i].copy) (void)back.fill(std::move(passed[i]));
        }
        return prog.error();
    }
    Process* child = prog.value().process;
    Thread* thread = prog.value().thread;
    if (r.supervisor.object) {
        uint64_t badge = r.supervisor.badge;
        child->set_supervisor(std::move(r.supervisor.object), badge, r.death_notice);
        r.death_notice = nullptr;
    }
    f.rsi = child->id();
    // Started before anyone can name it (nobody can kill it in between);
    // the creator's reference becomes the parent's handle, the thread holds
    // its own.
    MK_ASSERT(sched().start(*thread) == Error::None);
    f.rdi = slot.fill(HandleEntry{Ref<KObject>::adopt(child), abi::kRightsAll, 0, {}});
    return Error::None;
}

// --- yield ---

// Yields; to the thread a0 names (a thread handle, no right needed) if it
// is Ready, else round-robin.
Status sys_yield(Process& p, Thread&, TrapFrame& f) {
    if (f.rdi == abi::kNoHandle) {
        sched().yield_now();
        return Error::None;
    }
    Result<Named<Thread>> t = lookup<Thread>(p, f.rdi, ObjectType::Thread, 0);
    if (!t) return t.error();
    if (sched().donation_enabled()) {
        sched().donate(*t.value().object);  // falls back to round-robin if it is not Ready
    } else {
        sched().yield_now();
    }
    return Error::None;
}

// --- thread_set_fs_base ---

// a1: the calling thread's FS base from now on. Only the user half: the
// MSR write would fault on a non-canonical value, and a kernel-half one is
// no TLS pointer a user thread can use. Any value below abi::kFsBaseEnd
// is fine, mapped or not: a bad one faults in the thread's own %fs access.
Result<uint64_t> decode_fs_base(const TrapFrame& f) {
    if (f.rsi >= abi::kFsBaseEnd) return Error::InvalidArgument;
    return f.rsi;
}

Status sys_set_fs_base(Process&, Thread& self, TrapFrame& f) {
    Result<uint64_t> base = decode_fs_base(f);
    if (!base) return base.error();
    Cpu::set_user_fs_base(self.context, base.value());
    return Error::None;
}

// --- thread_set_affinity ---

// a1: a mask of CPUs in the CPU table, at least one (Scheduler::set_affinity
// says the same; decoded here so that nothing is looked up for a bad one).
Result<uint32_t> decode_cpu_mask(const TrapFrame& f) {
    if (f.rsi == 0 || (f.rsi & ~uint64_t(Scheduler::online_mask())) != 0)
        return Error::InvalidArgument;
    return uint32_t(f.rsi);
}

// a0: a thread handle (Manage), or none for the calling thread.
Status sys_set_affinity(Process& p, Thread& self, TrapFrame& f) {
    Result<uint32_t> mask = decode_cpu_mask(f);
    if (!mask) return mask.error();
    Ref<Thread> other;
    if (f.rdi != abi::kNoHandle) {
        Result<Named<Thread>> t = lookup<Thread>(p, f.rdi, ObjectType::Thread, abi::kRightManage);
        if (!t) return t.error();
        other = std::move(t).value().object;
    }
    Thread& thread = other ? *other : self;
    Result<uint32_t> home = sched().set_affinity(thread, mask.value());
    if (!home) return home.error();
    f.rdi = home.value();
    // The caller itself, asked to move, moves on its way back to user mode
    // (before_return_to_user), and so returns on its new CPU.
    return Error::None;
}

// --- the rest ---

Status sys_debug_log(Process& p, Thread&, TrapFrame& f) {
    DebugLogRequest r;
    Status st = decode_debug_log(p, f, r);
    if (st == Error::None) perform_debug_log(p, r);
    return st;
}

Status sys_thread_exit(Process&, Thread&, TrapFrame&) {
    sched().exit_current();
}

Status sys_process_exit(Process& p, Thread&, TrapFrame& f) {
    p.exit_from_inside(abi::status_exited(uint32_t(f.rsi)));
}

Status sys_process_kill(Process& p, Thread&, TrapFrame& f) {
    Result<Named<Process>> victim =
        lookup<Process>(p, f.rdi, ObjectType::Process, abi::kRightManage);
    if (!victim) return victim.error();
    Ref<Process> v = std::move(victim).value().object;
    if (v.get() == &p) {
        v.reset();  // exit_from_inside() does not return: nothing may stay held
        p.exit_from_inside(abi::kStatusKilled);
    }
    v->kill(abi::kStatusKilled);
    return Error::None;
}

using Handler = Status (*)(Process&, Thread&, TrapFrame&);

// Indexed by abi::Sys.
constexpr Handler kHandlers[] = {
    sys_call,             // Call
    sys_reply_recv,       // ReplyRecv
    sys_send,             // Send
    sys_recv,             // Recv
    sys_reply,            // Reply
    sys_reply_save,       // ReplySave
    sys_endpoint_create,  // EndpointCreate
    sys_handle_close,     // HandleClose
    sys_handle_mint,      // HandleMint
    sys_thread_create,    // ThreadCreate
    sys_thread_exit,      // ThreadExit
    sys_process_spawn,    // ProcessSpawn
    sys_process_kill,     // ProcessKill
    sys_mem_map,          // MemMap
    sys_mem_unmap,        // MemUnmap
    sys_ipc_buffer_set,   // IpcBufferSet
    sys_yield,            // Yield
    sys_debug_log,        // DebugLog
    sys_process_exit,     // ProcessExit
    sys_set_fs_base,      // ThreadSetFsBase
    sys_set_affinity,     // ThreadSetAffinity
};
static_assert(sizeof kHandlers / sizeof kHandlers[0] == size_t(abi::Sys::Count));

}  // namespace

Result<HandleValue> decode_handle(uint64_t reg) {
    if (reg > UINT32_MAX || reg == abi::kNoHandle) return Error::BadHandle;
    return HandleValue(reg);
}

}  // namespace mk::syscall

namespace mk {

using syscall::kHandlers;
using syscall::to_abi;

namespace {
Scheduler& sched() {
    return this_cpu().scheduler;
}
}  // namespace

void handle_syscall(TrapFrame& f) {
    Thread* self = sched().current();
    Process* proc = self->process;
    MK_ASSERT(proc != nullptr);
    // Syscalls run preemptible; the exit path turns interrupts off again.
    // But Call and ReplyRecv: their decode and endpoint operation, short and
    // bounded, keep interrupts off from the `syscall` instruction to the
    // block (sys_call(), sys_reply_recv(): the locks they take have no
    // interrupt flag to save and restore), and turn them on only to take
    // handles or once the operation returns.
    static_assert(uint64_t(abi::Sys::Call) == 0 && uint64_t(abi::Sys::ReplyRecv) == 1);
    uint64_t number = f.rax;
    if (number > uint64_t(abi::Sys::ReplyRecv)) Cpu::restore_interrupts(true);
    Status st =
        number < uint64_t(abi::Sys::Count) ? kHandlers[number](*proc, *self, f) : Error::BadSyscall;
    if (st != Error::None && syscall::receives_message(number)) syscall::clear_message_registers(f);
    f.rax = uint64_t(to_abi(st));
    before_return_to_user();
}

}  // namespace mk

namespace mk {

void handle_user_yield(TrapFrame& f) {
    Process* p = sched().current()->process;
    MK_ASSERT(p != nullptr);
    // Interrupts are off (an interrupt gate) until the switch: the target
    // cannot end between the choice and the yield, and the Ref keeps it.
    Ref<Thread> target;
    if (f.rdi != abi::kNoHandle) {
        Result<syscall::Named<Thread>> t =
            syscall::lookup<Thread>(*p, f.rdi, ObjectType::Thread, 0);
        if (t) target = std::move(t).value().object;
    }
    if (target) {
        LockGuard guard(sched().lock());
        sched().set_donate_target_locked(target.get());
    }
    sched().on_yield_vector();
}

// Interrupts go off here and stay off to the return to user mode (every
// caller leaves through sysret or iret next). So no kill on this CPU can
// land between the check and the return: a kill runs in another thread,
// which cannot run before this one is back in user mode, and then finds it
// there (its next entry ends it). A kill from another CPU would need an
// interrupt to reach this one in any case. That makes the check a plain
// read of exit_requested, not a critical section of the scheduler lock
// (which, released before the return, left the window open instead).
void before_return_to_user() {
    (void)Cpu::save_and_disable_interrupts();
    for (;;) {
        Thread* self = sched().current();
        if (__atomic_load_n(&self->exit_requested, __ATOMIC_RELAXED)) [[unlikely]]
            sched().exit_current();
        // A move asked of it (ThreadSetAffinity) happens here, where no
        // kernel code on its stack holds on to this CPU; on its new CPU it
        // checks again (a kill may have come meanwhile).
        if (__atomic_load_n(&self->move_to, __ATOMIC_RELAXED) == Thread::kNoMove) [[likely]]
            return;
        sched().at_user_boundary();
    }
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
