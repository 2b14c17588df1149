// Processes: the process server's protocol and its client API
// (docs/servers.md, "proc"): spawn, exit, wait4.
//
//   services::Services s = services::take(services::start_info(arg));
//   Result<proc::Child> c = proc::spawn(s, "worker", "mode=fast");
//   Result<proc::Exited> e = proc::wait4(s.proc, c->pid, 0);   // blocks
//   if (e && proc::exited_normally(e->status)) ...
//
// Every process started through the server has its own handle to it (slot
// services::kProc), whose badge tells the server who is asking: a parent
// waits only for its own children. init's handle is the unbadged one.
// The server learns of every death from the kernel's death notice, so a
// process that faults or is killed is reaped like one that called exit().
#pragma once

#include <cstddef>
#include <cstdint>

#include "mk/ipc.hpp"
#include "mk/services.hpp"

namespace mk::proc {

using ipc::Result;

enum Label : uint32_t {
    // Payload: the module's name, NUL, the argument string, NUL (each
    // within abi::kModuleNameMax / abi::kArgsMax). word 0: StartInfo::arg;
    // word 1: flags (kSpawnRaw, kSpawnOnCpu); word 2, with kSpawnOnCpu:
    // the CPU the child runs on (else the server's own). Handles (moved or copied, up to
    // abi::kMaxHandles): given to the child in order, after its own handle
    // to this server unless kSpawnRaw. Reply: Ok, word 0 the child's pid,
    // handle 0 the child's process handle (Manage: ProcessKill). Errors:
    // InvalidArgument (malformed payload or flags, a CPU that is not
    // there), LimitReached (kMaxProcs
    // processes, zombies included), and ProcessSpawn's (BadHandle: no such
    // module; an ELF file refused; OutOfMemory).
    kSpawn = 1,
    // word 0: the pid of the child to wait for, or 0 for any child;
    // word 1: options (kWaitNoHang). Reply: Ok, word 0 the pid (0 with
    // kWaitNoHang when no child has ended yet), word 1 its status
    // (abi::kStatus*). Waits (a deferred reply) until a child that
    // matches has ended; the oldest death is reported first. NoChild when
    // the caller has no such child (none at all, for pid 0).
    kWait = 2,
};

// kSpawn flags.
constexpr uint64_t kSpawnRaw = 1;    // the child gets only the handles sent
constexpr uint64_t kSpawnOnCpu = 2;  // word 2 is the child's CPU (SpawnArgs::cpu)
// kWait options.
constexpr uint64_t kWaitNoHang = 1;  // WNOHANG: never wait

// Processes the server keeps track of at once (live and zombie).
constexpr size_t kMaxProcs = 256;

// wait4 calls one process may have waiting; past it the oldest ends with
// kWaitEvicted (usually one that timed out long ago; proc::wait4() asks
// again).
constexpr size_t kMaxWaiters = 64;

// App statuses.
constexpr uint32_t kNoChild = ipc::kFirstAppStatus + 0x20;      // ECHILD
constexpr uint32_t kWaitEvicted = ipc::kFirstAppStatus + 0x21;  // kMaxWaiters newer waits
constexpr abi::Err kErrNoChild = abi::Err(kNoChild);

// ---------------------------------------------------------------------------
// Statuses (what wait4 reports; the kernel's, see mk/abi.hpp)
// ---------------------------------------------------------------------------
constexpr bool exited_normally(uint64_t status) {
    return (status & abi::kStatusKindMask) == 0;
}
constexpr uint32_t exit_code(uint64_t status) {
    return uint32_t(status);
}
constexpr bool faulted(uint64_t status) {
    return (status & abi::kStatusKindMask) == abi::kStatusFault;
}
constexpr uint8_t fault_vector(uint64_t status) {
    return uint8_t(status & 0xFF);
}
constexpr bool killed(uint64_t status) {
    return (status & abi::kStatusKindMask) == abi::kStatusKilled;
}

// "exited with status 3", "died of exception 14", "was killed": into
// buf (NUL-terminated), which it returns.
const char* describe(uint64_t status, char* buf, size_t size);

// ---------------------------------------------------------------------------
// The client API
// ---------------------------------------------------------------------------

struct Child {
    ipc::Handle process;  // Manage: sys ProcessKill
    uint64_t pid = 0;
};

struct Exited {
    uint64_t pid = 0;  // 0: nothing yet (kWaitNoHang)
    uint64_t status = 0;
};

// Starts boot module `module` as a child of the caller. It finds its own
// process-server handle in slot services::kProc and copies of the caller's
// pipe and port service handles in kPipe and kPort (BadState if the caller
// has none), then `extra` (moved to it; at most abi::kMaxHandles - 2) from
// slot services::kCount on. Every thread of it runs on CPU `cpu` (until
// ThreadSetAffinity widens a mask); with
// abi::kAnyCpu it may run on every CPU and starts on the least loaded,
// the process server's among equals (abi::SpawnArgs::cpu; docs/smp.md).
Result<Child> spawn(const services::Services& s, const char* module, const char* args,
                    uint64_t arg = 0, ipc::Handle* extra = nullptr, uint32_t extra_count = 0,
                    uint32_t cpu = abi::kAnyCpu);

// The same with no service handles: the child gets `handles` (moved) and
// nothing else, as with sys ProcessSpawn; it is still the caller's child.
Result<Child> spawn_raw(const ipc::Endpoint& proc, const char* module, const char* args,
                        uint64_t arg = 0, ipc::Handle* handles = nullptr, uint32_t count = 0,
                        uint32_t cpu = abi::kAnyCpu);

// wait4: waits for child `pid` (0: any) to end and reaps it.
Result<Exited> wait4(const ipc::Endpoint& proc, uint64_t pid, uint64_t options = 0);

// Ends the calling process with `status` (sys ProcessExit); the parent's
// wait4 reports it.
[[noreturn]] void exit(uint32_t status);

// The badges the server gives out (its own business; the tests read them).
constexpr uint64_t kSupervisorBit = 1;  // the badge of a child's death notices
constexpr uint64_t client_badge(uint64_t id) {
    return id << 1;
}
constexpr uint64_t supervisor_badge(uint64_t id) {
    return (id << 1) | kSupervisorBit;
}
constexpr uint64_t id_of(uint64_t badge) {
    return badge >> 1;
}

}  // namespace mk::proc
