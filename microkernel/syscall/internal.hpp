// What the syscall files share: the handlers (one per syscall, each
// decoding then performing) and the decoding helpers they have in common.
#pragma once

#include "endpoint.hpp"
#include "mk/abi.hpp"
#include "object/handle_table.hpp"
#include "process.hpp"
#include "thread.hpp"
#include "trap_frame.hpp"

namespace mk::syscall {

// A handle value from a register: anything above 32 bits, or 0, names no handle.
Result<HandleValue> decode_handle(uint64_t reg);

// A typed reference from a handle of the caller's table, with its rights
// and badge. Errors: BadHandle (no such handle, wrong type), NoRights.
template <typename T>
struct Named {
    Ref<T> object;
    uint32_t rights = 0;
    uint64_t badge = 0;
};
template <typename T>
Result<Named<T>> lookup(Process& p, uint64_t reg, ObjectType type, uint32_t rights) {
    Result<HandleValue> h = decode_handle(reg);
    if (!h) return h.error();
    Result<HandleEntry> e = p.handles().lookup(h.value(), type, rights);
    if (!e) return e.error();
    HandleEntry entry = static_cast<Result<HandleEntry>&&>(e).value();
    return Named<T>{Ref<T>::adopt(static_cast<T*>(entry.object.leak())), entry.rights, entry.badge};
}

// lookup() into `out`, for the IPC syscalls, which look a handle up on
// every call: the same checks, without a Result<Named<T>> built and moved
// out, or decode_handle() out of line.
template <typename T>
[[gnu::always_inline]] inline Status lookup_into(Process& p, uint64_t reg, ObjectType type,
                                                 uint32_t rights, Named<T>& out,
                                                 bool interrupts_off = false) {
    if (reg > UINT32_MAX || reg == abi::kNoHandle) return Error::BadHandle;  // decode_handle()
    KObject* object = nullptr;
    Status st = p.handles().lookup_into(HandleValue(reg), type, rights, &object, &out.rights,
                                        &out.badge, interrupts_off);
    if (st != Error::None) return st;
    out.object = Ref<T>::adopt(static_cast<T*>(object));
    return Error::None;
}

// A received message (or a reply) in the return registers of `f`: r0 the
// badge, r1 the info word, r2..r5 the words; `handles` of them delivered.
// Inline, and always: the syscall fast path completes syscalls with it too.
[[gnu::always_inline]] inline void deliver_registers(TrapFrame& f, const Message& msg,
                                                     uint32_t handles, uint64_t badge, bool call) {
    f.rdi = badge;
    f.rsi = abi::MsgInfo{uint32_t(msg.label), msg.length, handles, call}.encode();
    f.rdx = msg.words[0];
    f.r10 = msg.words[1];
    f.r8 = msg.words[2];
    f.r9 = msg.words[3];
}

// What a failed call, recv or reply_recv leaves in its message registers:
// 0 in r0..r5, as nothing arrived (docs/syscalls.md). A thread blocked in
// the entry stub's hit path has no arguments in its frame (syscall.S,
// SAVE_ENTRY): these are written whatever ended its wait.
[[gnu::always_inline]] inline void clear_message_registers(TrapFrame& f) {
    f.rdi = 0;
    f.rsi = 0;
    f.rdx = 0;
    f.r10 = 0;
    f.r8 = 0;
    f.r9 = 0;
}
constexpr bool receives_message(uint64_t number) {
    return number == uint64_t(abi::Sys::Call) || number == uint64_t(abi::Sys::Recv) ||
           number == uint64_t(abi::Sys::ReplyRecv);
}

// IPC (syscall/ipc.cpp).
Status sys_call(Process& p, Thread& self, TrapFrame& f);
Status sys_send(Process& p, Thread& self, TrapFrame& f);
Status sys_recv(Process& p, Thread& self, TrapFrame& f);
Status sys_reply(Process& p, Thread& self, TrapFrame& f);
Status sys_reply_recv(Process& p, Thread& self, TrapFrame& f);
Status sys_reply_save(Process& p, Thread& self, TrapFrame& f);
Status sys_endpoint_create(Process& p, Thread& self, TrapFrame& f);
// mk_resume_at_frame(), the end of an IPC syscall whose thread blocked at
// its frame, is in syscall/ipc.cpp too, beside complete_ipc().

// The ABI's number of every Error (syscall/syscall.cpp).
abi::Err to_abi(Error e);

// Memory and threads (syscall/memory.cpp).
Status sys_mem_map(Process& p, Thread& self, TrapFrame& f);
Status sys_mem_unmap(Process& p, Thread& self, TrapFrame& f);
Status sys_ipc_buffer_set(Process& p, Thread& self, TrapFrame& f);
Status sys_thread_create(Process& p, Thread& self, TrapFrame& f);

}  // namespace mk::syscall
