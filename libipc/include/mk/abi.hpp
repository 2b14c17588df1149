// The user/kernel ABI: syscall numbers, registers, error numbers, rights,
// handle values and the message layout. Shared, as it is, by the kernel
// (microkernel/syscall/) and libipc; docs/syscalls.md documents every call.
//
// Freestanding: this header includes nothing but <cstdint>.
#pragma once

#include <cstdint>

namespace mk::abi {

// ---------------------------------------------------------------------------
// Registers (the `syscall` instruction; it clobbers rcx and r11)
//
//   in:  rax  syscall number (Sys)
//        rdi  a0: the handle the call acts on (endpoint, reply, thread...)
//        rsi  a1: message info (MsgInfo) for IPC, else an argument
//        rdx  a2: message word 0, else an argument
//        r10  a3: message word 1, else an argument
//        r8   a4: message word 2, else an argument
//        r9   a5: message word 3, else an argument
//        r12  a6: timeout in nanoseconds for blocking IPC (kForever, or 0:
//             do not block: the non-blocking forms), else an argument
//   out: rax  status (Err; 0 is success)
//        rdi  r0: the sender's badge (receives), or the call's result value
//        rsi  r1: message info of what was received
//        rdx, r10, r8, r9: message words 0..3 of what was received
//   Every other register is preserved.
// ---------------------------------------------------------------------------

enum class Sys : uint64_t {
    // IPC (the first two have the fast path).
    Call = 0,       // a0 endpoint (Send), a1 info, a2..a5 words, a6 timeout -> reply
    ReplyRecv = 1,  // reply to this thread's pending call (if any), then receive on a0 (Receive)
    Send = 2,       // a0 endpoint (Send), a1 info, a2..a5 words, a6 timeout
    Recv = 3,       // a0 endpoint (Receive), a6 timeout -> message, badge
    Reply = 4,      // a0 reply handle (0: this thread's pending call), a1 info, a2..a5 words
    ReplySave = 5,  // -> r0: a reply handle for this thread's pending call (deferred reply)
    // Handles.
    EndpointCreate = 6,  // -> r0: endpoint handle with every right, badge 0
    HandleClose = 7,     // a0 handle
    HandleMint = 8,      // a0 handle (Duplicate), a1 rights (a subset), a2 badge -> r0: new handle
    // Threads and processes.
    ThreadCreate = 9,   // a1 entry, a2 stack top, a3 argument -> r0: thread handle
    ThreadExit = 10,    // never returns
    ProcessSpawn = 11,  // a0 boot-module handle (Manage), a1 SpawnArgs pointer -> r0: process
    ProcessKill = 12,   // a0 process handle (Manage)
    // Memory.
    MemMap = 13,        // a1 length, a2 protection (Prot) -> r0: address of fresh zeroed pages
    MemUnmap = 14,      // a1 address, a2 length
    IpcBufferSet = 15,  // a1 address of a mapped, page-aligned page: this thread's IPC buffer
    // Misc.
    Yield = 16,        // a0 thread handle to donate to, or 0 (also reachable as int 0x50)
    DebugLog = 17,     // a1 pointer, a2 length (at most kDebugLogMax)
    ProcessExit = 18,  // a1 status; ends every thread of the caller's process
    // Threads (continued).
    ThreadSetFsBase = 19,  // a1 FS base (below kFsBaseEnd): the calling thread's TLS pointer
    ThreadSetAffinity =
        20,  // a0 thread handle (Manage) or 0: the caller, a1 CPU mask -> r0: its CPU
    Count = 21,
};

// The yield vector: `int 0x50` from ring 3, rdi = thread handle or 0.
constexpr uint8_t kYieldVector = 0x50;

// ---------------------------------------------------------------------------
// Status codes (rax on return). Numbers never change meaning.
// ---------------------------------------------------------------------------
enum class Err : uint64_t {
    Ok = 0,
    OutOfMemory = 1,      // the kernel has no memory for it now
    InvalidArgument = 2,  // a malformed argument (value, alignment, flags)
    BadHandle = 3,        // no such handle, a stale one, or the wrong object type
    NoRights = 4,         // the handle lacks a right the call needs
    WouldBlock = 5,       // a non-blocking call found no partner
    TimedOut = 6,         // the timeout expired
    Destroyed = 7,        // the object went away
    PeerDied = 8,         // the other side of a call died or dropped the reply
    BadState = 9,         // not possible in the object's current state
    TooLarge = 10,        // a message or length over its limit
    Unsupported = 11,     // not available on this machine or build
    Interrupted = 12,     // a wait ended by something other than its partner
    BadAddress = 13,      // a pointer outside the caller's mapped user memory
    BadSyscall = 14,      // no such syscall number
    LimitReached = 15,    // a per-process bound (handles, threads, memory) is reached
};

// ---------------------------------------------------------------------------
// Handles: (generation << 16) | index. 0 is never a handle.
// ---------------------------------------------------------------------------
using HandleValue = uint32_t;
constexpr HandleValue kNoHandle = 0;

// Rights carried by a handle.
enum Rights : uint32_t {
    kRightSend = 1u << 0,       // send / call on an endpoint
    kRightReceive = 1u << 1,    // recv / reply_recv on an endpoint
    kRightGrant = 1u << 2,      // transfer handles in messages sent through it
    kRightDuplicate = 1u << 3,  // mint copies of this handle
    kRightManage = 1u << 4,     // kill a process or thread, spawn from a module
    kRightsAll = 0x1F,
};

// ---------------------------------------------------------------------------
// Messages: a label and kMessageWords words in registers; a payload of up to
// kMaxPayload bytes and up to kMaxHandles handles in the IPC buffer.
// ---------------------------------------------------------------------------
constexpr unsigned kMessageWords = 4;
constexpr unsigned kMaxPayload = 480;
constexpr unsigned kMaxHandles = 4;

// a1 / r1: label (bits 0-31), payload length (bits 32-41), handle count
// (bits 44-46), and on a received message bit 47: the sender waits for a
// reply (it used Call; the receiver now has a pending call to answer). The
// other bits must be 0, and bit 47 too in what user code sends.
struct MsgInfo {
    uint32_t label = 0;
    uint32_t length = 0;   // payload bytes in the IPC buffer
    uint32_t handles = 0;  // handles in IpcBuffer::handles
    bool call = false;     // received only: a reply is expected

    constexpr uint64_t encode() const {
        return uint64_t(label) | (uint64_t(length & 0x3FF) << 32) |
               (uint64_t(handles & 0x7) << 44) | (uint64_t(call ? 1 : 0) << 47);
    }
    static constexpr MsgInfo decode(uint64_t v) {
        return MsgInfo{uint32_t(v), uint32_t((v >> 32) & 0x3FF), uint32_t((v >> 44) & 0x7),
                       ((v >> 47) & 1) != 0};
    }
    // Bits a valid outgoing info word never sets.
    static constexpr uint64_t kReservedBits =
        ~((uint64_t{1} << 47) - 1) | (uint64_t{3} << 42) | (uint64_t{1} << 47);
};

// Labels at and above this are reserved for kernel notices.
constexpr uint32_t kNoticeLabelBase = 0xFFFFFF00u;
constexpr uint32_t kLabelLastHandle = 0xFFFFFF01u;  // words[0]: the badge whose last handle went
constexpr uint32_t kLabelChildDied = 0xFFFFFF02u;   // words[0]: process id, [1]: status

// How a handle travels (IpcBuffer::handle_flags).
enum TransferFlags : uint32_t {
    kTransferMove = 0,  // the sender's handle moves to the receiver
    kTransferCopy = 1,  // the receiver gets a copy (needs Duplicate on it)
};

// The per-thread IPC buffer page (Sys::IpcBufferSet).
struct IpcBuffer {
    uint8_t payload[kMaxPayload];
    // Outgoing: handles to send; incoming: the received handles, in the
    // receiver's handle table.
    HandleValue handles[kMaxHandles];
    uint32_t handle_flags[kMaxHandles];  // TransferFlags, outgoing only
};
static_assert(sizeof(IpcBuffer) <= 4096);

// Timeouts (a6), in nanoseconds, rounded up to the kernel's tick (1 ms).
// kNoWait makes Call, Send, Recv and ReplyRecv the non-blocking forms: they
// complete only with a partner already waiting, else WouldBlock.
constexpr uint64_t kForever = ~uint64_t{0};
constexpr uint64_t kNoWait = 0;

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------
constexpr uint64_t kPageSize = 4096;
// The user half: what user pointers may name.
constexpr uint64_t kUserBase = 0x0000000000400000;
constexpr uint64_t kUserEnd = 0x00007FFFFFFFF000;
// What ThreadSetFsBase accepts: [0, kFsBaseEnd), the user half. Every such
// value is canonical; whether memory is mapped there is the thread's affair.
constexpr uint64_t kFsBaseEnd = uint64_t{1} << 47;

enum Prot : uint64_t {
    kProtRead = 1,
    kProtWrite = 2,  // never together with kProtExec (W^X)
    kProtExec = 4,
};

constexpr uint64_t kDebugLogMax = 256;

// ---------------------------------------------------------------------------
// Exit statuses (what a supervisor's death notice and wait4 report)
// ---------------------------------------------------------------------------
// A process that called ProcessExit(code): the code, 32 bits. One the kernel
// ended has a kind in bits 32-39 and, for a fault, the exception vector in
// bits 0-7 (as Unix's signal statuses say which signal).
constexpr uint64_t kStatusFault = uint64_t{1} << 32;   // | exception vector
constexpr uint64_t kStatusKilled = uint64_t{2} << 32;  // ProcessKill
constexpr uint64_t kStatusKindMask = uint64_t{0xFF} << 32;
constexpr uint64_t status_exited(uint32_t code) {
    return code;
}
constexpr uint64_t status_fault(uint8_t vector) {
    return kStatusFault | vector;
}

// The stack of a program's first thread ends at kUserEnd; below it, the
// page under the lowest stack page stays unmapped (a guard page).
constexpr uint64_t kMainStackPages = 16;

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------
constexpr unsigned kModuleNameMax = 32;
constexpr unsigned kMaxStartHandles = 8;
// The argument string a program starts with (NUL-terminated, so at most
// kArgsMax - 1 characters): words separated by spaces, as a command line.
// init's is the kernel command line (its `run=NAME` word says what to run).
constexpr unsigned kArgsMax = 128;

// SpawnArgs::cpu for "no CPU named: the kernel places it". (A SpawnArgs
// value-initialized, `SpawnArgs a{}`, has it; one zero-filled by hand names
// CPU 0.)
constexpr uint32_t kAnyCpu = 0xFFFFFFFF;

// What ProcessSpawn reads at a1. The child starts with copies (or the
// moved originals) of `handles`, and `supervisor` (an endpoint handle with
// the Send right, or kNoHandle) receives a kLabelChildDied notice when it
// dies: words[0] its process id, words[1] its status, with the badge of
// the supervisor handle. With a CPU `cpu` (StartInfo::cpu_count says how
// many there are), every thread of the child runs on that CPU alone (until
// ThreadSetAffinity widens a mask); with
// kAnyCpu its threads may run on every CPU running then, placed and
// balanced by the kernel: the first on the least loaded CPU, the spawner
// not counted, the spawner's CPU among equals (StartInfo::cpu,
// StartInfo::affinity; docs/smp.md, "Placement").
struct SpawnArgs {
    char module[kModuleNameMax];  // the boot module's name, NUL-terminated
    uint64_t arg;                 // StartInfo::arg
    HandleValue handles[kMaxStartHandles];
    uint32_t handle_flags[kMaxStartHandles];  // TransferFlags
    uint32_t handle_count;
    HandleValue supervisor;
    char args[kArgsMax];     // StartInfo::args; a NUL within kArgsMax, else InvalidArgument
    uint32_t cpu = kAnyCpu;  // kAnyCpu, or a CPU that runs threads; else InvalidArgument
};

// What a new process's first thread finds at rdi: on its stack, above rsp.
struct StartInfo {
    uint64_t arg;
    uint64_t process_id;
    uint32_t handle_count;
    HandleValue handles[kMaxStartHandles];  // in the order SpawnArgs gave them
    char args[kArgsMax];                    // NUL-terminated
    uint32_t cpu;                           // the CPU its first thread starts on
    uint32_t cpu_count;  // the CPUs that run threads are below it (a late one may be missing)
    uint64_t affinity;   // the CPUs its first thread may run on, a bit each (ThreadSetAffinity)
};

// ProcessSpawn's r0: the new process's handle (Manage); r1: its process id.

}  // namespace mk::abi
