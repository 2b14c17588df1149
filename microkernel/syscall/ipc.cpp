// IPC syscalls: messages from registers and the IPC buffer, handles carried
// in them, and the thread's pending call (docs/syscalls.md).
#include <utility>

#include "endpoint_inline.hpp"
#include "entry.hpp"
#include "internal.hpp"
#include "object/badge_tracker.hpp"
#include "object/reply.hpp"
#include "panic.hpp"
#include "percpu.hpp"

namespace mk::syscall {

namespace {

constexpr uint64_t kNanosPerTick = 1000000;  // the 1 kHz timer

// Timeouts: abi::kNoWait is the non-blocking form (checked by the caller),
// abi::kForever none (0 ticks, as the endpoint reads it), anything else
// rounds up to whole ticks.
uint64_t ticks_of(uint64_t ns) {
    if (ns == abi::kForever) return 0;
    return ns / kNanosPerTick + (ns % kNanosPerTick != 0 ? 1 : 0);
}

abi::IpcBuffer& ipc_buffer(Thread& t) {
    return *reinterpret_cast<abi::IpcBuffer*>(t.ipc->buffer);
}

// An outgoing message, checked, with its handles taken from the sender's
// table. If it is not delivered, restore() puts them back.
//
// Built on every IPC syscall's way in: the message and the handle requests
// are left uninitialized (variant members of anonymous unions) until
// check_message() fills in what the message uses, so no syscall pays for
// zeroing some 120 bytes it then overwrites or never reads.
struct Outgoing {
    Outgoing() {}  // msg, copied and takes: written by check_message()

    union {
        Message msg;  // all of it written by check_message()
    };
    HandleTable::Reservation back;  // room to put moved handles back
    uint32_t requested = 0;         // handles the message carries, once taken msg.handle_count
    bool copied[kMessageHandles];   // [0, requested): written by check_message()
    union {
        HandleTable::TakeRequest takes[abi::kMaxHandles];  // [0, requested) likewise
    };

    // After a failed send or call: handles still in flight go back to the
    // sender's table, moved ones under new values written to its IPC
    // buffer's handle slots; a moved handle that was delivered before the
    // failure (a call whose reply then failed) reads kNoHandle there.
    // Copies are simply dropped.
    void restore(Thread& self) {
        for (uint32_t i = 0; i < msg.handle_count; ++i) {
            HandleEntry& e = self.ipc->handles[i];
            if (copied[i]) {
                e = HandleEntry{};
            } else if (e.object) {
                ipc_buffer(self).handles[i] = back.fill(std::move(e));
            } else {
                ipc_buffer(self).handles[i] = abi::kNoHandle;
            }
        }
    }

    // After a reply that found no caller (it timed out or died): the
    // handles meant for it are closed, nobody can take them any more; the
    // moved ones' slots in the IPC buffer read kNoHandle.
    void discard(Thread& self) {
        for (uint32_t i = 0; i < msg.handle_count; ++i) {
            self.ipc->handles[i] = HandleEntry{};
            if (!copied[i]) ipc_buffer(self).handles[i] = abi::kNoHandle;
        }
    }
};

// What check_message() lets through fits (Message::fits()), which the
// endpoint operations inlined here (call_inline(), reply_recv_inline())
// rely on.
static_assert(abi::kMaxPayload <= kIpcBufferSize && abi::kMaxHandles <= kMessageHandles);

// Checks the message in a1..a5 and copies the IPC buffer's handle
// descriptors (once: the page may change under us); takes nothing yet.
// `rights` are those of the handle it goes through (handles need Grant).
// Inlined into each syscall: it runs on every IPC syscall.
[[gnu::always_inline]] inline Status check_message(Thread& self, const TrapFrame& f,
                                                   uint32_t rights, Outgoing& out) {
    if ((f.rsi & abi::MsgInfo::kReservedBits) != 0) return Error::InvalidArgument;
    abi::MsgInfo info = abi::MsgInfo::decode(f.rsi);
    if (info.label >= abi::kNoticeLabelBase) return Error::InvalidArgument;
    if (info.length > abi::kMaxPayload || info.handles > abi::kMaxHandles) return Error::TooLarge;
    if ((info.length != 0 || info.handles != 0) && self.ipc->user_buffer == 0) {
        return Error::BadState;  // no IPC buffer registered
    }
    if (info.handles != 0 && (rights & abi::kRightGrant) == 0) return Error::NoRights;
    out.msg.label = info.label;
    out.msg.words[0] = f.rdx;
    out.msg.words[1] = f.r10;
    out.msg.words[2] = f.r8;
    out.msg.words[3] = f.r9;
    out.msg.length = info.length;
    out.msg.handle_count = 0;
    out.requested = info.handles;
    const abi::IpcBuffer& buf = ipc_buffer(self);
    for (uint32_t i = 0; i < info.handles; ++i) {
        uint32_t flags = buf.handle_flags[i];
        if (flags > abi::kTransferCopy) return Error::InvalidArgument;
        out.takes[i] = {buf.handles[i], 0, flags == abi::kTransferCopy};
        out.copied[i] = out.takes[i].copy;
    }
    return Error::None;
}

Status take_handles_slow(Process& p, Thread& self, Outgoing& out, const Endpoint* onto) {
    Result<HandleTable::Reservation> back = p.handles().reserve(out.requested);
    if (!back) return back.error();
    out.back = std::move(back).value();
    Status st = p.handles().take_all(out.takes, out.requested, self.ipc->handles, onto);
    if (st != Error::None) return st;
    out.msg.handle_count = out.requested;
    return Error::None;
}

// Takes the handles a checked message carries from the sender's table, all
// or nothing, with room reserved to put moved ones back. A message that
// goes onto an endpoint (`onto`: a send or a call, not a reply) may not
// carry a handle that can receive on that same endpoint (InvalidArgument):
// waiting in the endpoint's own queue, it would keep the endpoint's receive
// side open (docs/handles.md).
[[gnu::always_inline]] inline Status take_handles(Process& p, Thread& self, Outgoing& out,
                                                  const Endpoint* onto = nullptr) {
    if (out.requested == 0) [[likely]]
        return Error::None;
    return take_handles_slow(p, self, out, onto);
}

// Decodes the message in a1..a5 (and the IPC buffer): checked, then its
// handles taken (see take_handles() for `onto`).
[[gnu::always_inline]] inline Status decode_message(Process& p, Thread& self, const TrapFrame& f,
                                                    uint32_t rights, Outgoing& out,
                                                    const Endpoint* onto = nullptr) {
    Status st = check_message(self, f, rights, out);
    if (st != Error::None) return st;
    return take_handles(p, self, out, onto);
}

// decode_message() for Call and ReplyRecv, which run with interrupts off
// (handle_syscall()): the handles, if any, are taken with them on, as in
// every other syscall; they are off again on return.
[[gnu::always_inline]] inline Status decode_message_interrupts_off(Process& p, Thread& self,
                                                                   const TrapFrame& f,
                                                                   uint32_t rights, Outgoing& out,
                                                                   const Endpoint* onto = nullptr) {
    Status st = check_message(self, f, rights, out);
    if (st != Error::None || out.requested == 0) [[likely]]
        return st;
    Cpu::restore_interrupts(true);
    st = take_handles_slow(p, self, out, onto);
    (void)Cpu::save_and_disable_interrupts();
    return st;
}

// Puts the handles a received message carries into the receiver's table,
// their values into its IPC buffer; returns how many it can learn. A
// receiver with no IPC buffer cannot learn them: they are closed. Apart
// from deliver(): most messages carry none.
[[gnu::noinline]] uint32_t deliver_handles(Process& p, Thread& self, uint32_t count) {
    uint32_t handles = 0;
    for (uint32_t i = 0; i < count; ++i) {
        HandleEntry e = std::move(self.ipc->handles[i]);
        if (self.ipc->user_buffer == 0) continue;  // e is released here, without any lock
        Result<HandleValue> v = p.handles().insert(std::move(e));
        ipc_buffer(self).handles[i] = v.value_or(abi::kNoHandle);
        ++handles;
    }
    return handles;
}

// Puts a received message in the return registers (its handles through
// deliver_handles()).
[[gnu::always_inline]] inline void deliver(Process& p, Thread& self, TrapFrame& f,
                                           const Message& msg, uint64_t badge, bool call) {
    uint32_t handles = msg.handle_count == 0 ? 0 : deliver_handles(p, self, msg.handle_count);
    deliver_registers(f, msg, handles, badge, call);
}

// Starts an IPC operation on `e` for the syscall in progress: the
// operation's reference to the endpoint moves into the thread's IpcState,
// where complete_ipc() drops it. With `at_frame` (no handles in flight,
// nothing else on the stack to undo), a block gives the kernel stack up and
// the syscall completes in mk_resume_at_frame(), or the fast path resumes
// the thread directly (syscall/fastpath.cpp).
[[gnu::always_inline]] inline Endpoint* begin_ipc(Thread& self, Named<Endpoint>& e,
                                                  IpcState::UserOp op, bool at_frame) {
    IpcState& ipc = *self.ipc;
    MK_ASSERT(!ipc.endpoint_ref);
    Endpoint* endpoint = e.object.get();
    ipc.endpoint_ref = Ref<KObject>::adopt(e.object.leak());
    ipc.user_op = op;
    self.at_frame = at_frame;
    return endpoint;
}

template <typename T>
Status status_of(const Result<T>& r) {
    return r ? Status(Error::None) : Status(r.error());
}

}  // namespace

// The end of every IPC syscall (send, call, recv, reply_recv), whether its
// operation returned at once or the thread blocked at its frame and runs
// again (mk_resume_at_frame, with st = the operation's result): drops the
// reference to the endpoint, and on success puts what arrived in the
// return registers. Returns st. Inline: the way back of every blocked
// IPC syscall goes through it.
[[gnu::always_inline]] inline Status complete_ipc(Process& p, Thread& self, TrapFrame& f,
                                                  Status st) {
    IpcState& ipc = *self.ipc;
    self.at_frame = false;
    Ref<KObject> endpoint = static_cast<Ref<KObject>&&>(ipc.endpoint_ref);  // dropped on return
    ReplyToken superseded = ipc.superseded;
    ipc.superseded = {};
    IpcState::UserOp op = ipc.user_op;
    ipc.user_op = IpcState::UserOp::None;
    if (st != Error::None) return st;
    switch (op) {
        case IpcState::UserOp::Call:
            deliver(p, self, f, ipc.msg, 0, false);
            break;
        case IpcState::UserOp::Recv:
            // The call this thread had not answered can never be answered now.
            if (superseded.valid()) (void)Endpoint::reply_drop(superseded);
            deliver(p, self, f, ipc.msg, ipc.badge, ipc.reply.valid());
            break;
        case IpcState::UserOp::Send:
        case IpcState::UserOp::None:
            break;
    }
    return Error::None;
}

Status sys_endpoint_create(Process& p, Thread&, TrapFrame& f) {
    Result<Endpoint*> ep = Endpoint::create();
    if (!ep) return ep.error();
    Ref<KObject> endpoint = Ref<KObject>::adopt(ep.value());
    // The creator's handle may receive: it holds the receive side open.
    Result<KObject*> receivers = ReceiveTracker::make(ep.value());
    if (!receivers) return receivers.error();  // `endpoint` goes, and the endpoint with it
    Result<HandleValue> h =
        p.handles().insert(HandleEntry{static_cast<Ref<KObject>&&>(endpoint), abi::kRightsAll, 0,
                                       Ref<KObject>::adopt(receivers.value())});
    if (!h) return h.error();  // the refused entry went: the tracker, then the endpoint
    f.rdi = h.value();
    return Error::None;
}

// Flattened: its decode, the endpoint operation and the hand-over of the
// scheduler in one frame, with the list operations they use inline.
// Interrupts are off from the entry (handle_syscall()) to the block, but
// while the message's handles are taken; on again if the operation returns.
[[gnu::flatten]] Status sys_call(Process& p, Thread& self, TrapFrame& f) {
    Named<Endpoint> e;
    if (Status st = lookup_into<Endpoint>(p, f.rdi, ObjectType::Endpoint, abi::kRightSend, e, true);
        st != Error::None)
        return st;
    Outgoing out;
    Status st = decode_message_interrupts_off(p, self, f, e.rights, out, e.object.get());
    if (st != Error::None) {
        Cpu::restore_interrupts(true);  // before `e` goes: its release may free
        return st;
    }
    uint64_t badge = e.badge;
    // A call with handles keeps its stack: they go back (restore) if it fails.
    Endpoint* endpoint = begin_ipc(self, e, IpcState::UserOp::Call, out.msg.handle_count == 0);
    // try_call() or call(), inline (endpoint_inline.hpp): once, not twice.
    bool no_wait = f.r12 == abi::kNoWait;
    st = status_of(
        endpoint->call_inline(out.msg, badge, no_wait ? 0 : ticks_of(f.r12), no_wait, true));
    Cpu::restore_interrupts(true);
    if (st != Error::None) out.restore(self);
    return complete_ipc(p, self, f, st);
}

Status sys_send(Process& p, Thread& self, TrapFrame& f) {
    Named<Endpoint> e;
    if (Status st = lookup_into<Endpoint>(p, f.rdi, ObjectType::Endpoint, abi::kRightSend, e);
        st != Error::None)
        return st;
    Outgoing out;
    Status st = decode_message(p, self, f, e.rights, out, e.object.get());
    if (st != Error::None) return st;
    uint64_t badge = e.badge;
    Endpoint* endpoint = begin_ipc(self, e, IpcState::UserOp::Send, out.msg.handle_count == 0);
    st = f.r12 == abi::kNoWait ? endpoint->try_send(out.msg, badge)
                               : endpoint->send(out.msg, badge, ticks_of(f.r12));
    if (st != Error::None) out.restore(self);
    return complete_ipc(p, self, f, st);
}

// A message that arrives replaces this thread's pending call, if it has
// one it neither answered nor saved: that caller wakes with PeerDied rather
// than wait, for as long as this thread lives, for an answer that nothing
// can give any more (the token was the only way to it). A receive that
// brings nothing leaves the pending call as it was.
Status sys_recv(Process& p, Thread& self, TrapFrame& f) {
    Named<Endpoint> e;
    if (Status st = lookup_into<Endpoint>(p, f.rdi, ObjectType::Endpoint, abi::kRightReceive, e);
        st != Error::None)
        return st;
    self.ipc->superseded = self.ipc->reply;
    Endpoint* endpoint = begin_ipc(self, e, IpcState::UserOp::Recv, true);
    Status st =
        status_of(f.r12 == abi::kNoWait ? endpoint->try_recv() : endpoint->recv(ticks_of(f.r12)));
    return complete_ipc(p, self, f, st);
}

// a0: 0 for this thread's pending call, or a saved Reply's handle, which
// a successful answer consumes.
Status sys_reply(Process& p, Thread& self, TrapFrame& f) {
    Named<Reply> saved;
    HandleValue saved_handle = abi::kNoHandle;
    if (f.rdi != abi::kNoHandle) {
        Result<Named<Reply>> r = lookup<Reply>(p, f.rdi, ObjectType::Reply, 0);
        if (!r) return r.error();
        saved = std::move(r).value();
        saved_handle = HandleValue(f.rdi);
    }
    Outgoing out;
    // A reply may carry handles: the caller asked for an answer.
    Status st = check_message(self, f, abi::kRightGrant, out);
    if (st != Error::None) return st;
    // No pending call to answer is a refusal like any other: nothing taken.
    if (!saved.object && !self.ipc->reply.valid()) return Error::BadHandle;
    st = take_handles(p, self, out);
    if (st != Error::None) return st;
    // Interrupts off from the wake to the yield, as in a send: the caller
    // runs next (donation), with the replier Ready behind it.
    bool irq_was_enabled = Cpu::save_and_disable_interrupts();
    if (saved.object) {
        st = saved.object->answer(out.msg, Donate::Yes);
        if (st == Error::None) (void)p.handles().remove(saved_handle);
    } else {
        ReplyToken token = self.ipc->reply;
        self.ipc->reply = {};
        st = Endpoint::reply(token, out.msg, Donate::Yes);
    }
    if (st == Error::None) this_cpu().scheduler.yield_to_donate_target();
    Cpu::restore_interrupts(irq_was_enabled);
    if (st != Error::None) out.discard(self);
    return st;
}

// Flattened, and with interrupts off, as sys_call().
[[gnu::flatten]] Status sys_reply_recv(Process& p, Thread& self, TrapFrame& f) {
    Named<Endpoint> e;
    if (Status st =
            lookup_into<Endpoint>(p, f.rdi, ObjectType::Endpoint, abi::kRightReceive, e, true);
        st != Error::None)
        return st;
    Outgoing out;
    Status st = decode_message_interrupts_off(p, self, f, e.rights, out);
    if (st != Error::None) {
        Cpu::restore_interrupts(true);
        return st;
    }
    ReplyToken token = self.ipc->reply;
    self.ipc->reply = {};
    // With handles the reply keeps its stack: their reservation is on it.
    Endpoint* endpoint = begin_ipc(self, e, IpcState::UserOp::Recv, out.msg.handle_count == 0);
    if (f.r12 == abi::kNoWait || out.msg.handle_count != 0) {
        Cpu::restore_interrupts(true);  // preemptible, as the other syscalls
        // In two steps: handles of a reply that finds no caller (it timed
        // out or died) come back before anything can arrive.
        if (!token.valid() || Endpoint::reply(token, out.msg) != Error::None) out.discard(self);
        st = status_of(f.r12 == abi::kNoWait ? endpoint->try_recv()
                                             : endpoint->recv(ticks_of(f.r12)));
    } else {
        st = status_of(endpoint->reply_recv_inline(token, out.msg, ticks_of(f.r12), true));
        Cpu::restore_interrupts(true);
        // Destroyed here (not after a block at the frame, which ends in
        // mk_resume_at_frame) means the endpoint was dead before the
        // receive: before anything was done, or (a caller of another CPU:
        // Endpoint::reply_then_recv) after the reply went out, when this
        // one finds no caller and is counted stale. The reply needs nothing
        // of the endpoint: it goes out, as in the two-step form, so every
        // form of a refused receive answers.
        if (st == Error::Destroyed && token.valid()) (void)Endpoint::reply(token, out.msg);
    }
    return complete_ipc(p, self, f, st);
}

// Turns this thread's pending call into a Reply handle (r0), to answer
// later or from another thread.
Status sys_reply_save(Process& p, Thread& self, TrapFrame& f) {
    Result<HandleTable::Reservation> reserved = p.handles().reserve(1);
    if (!reserved) return reserved.error();
    HandleTable::Reservation slot = std::move(reserved).value();
    Result<Reply*> r = Reply::save(self.ipc->reply);
    if (!r) return r.error();
    self.ipc->reply = {};
    f.rdi = slot.fill(HandleEntry{Ref<KObject>::adopt(r.value()), abi::kRightsAll, 0, {}});
    return Error::None;
}

}  // namespace mk::syscall

namespace mk::syscall {
namespace {

// mk_resume_at_frame() for a syscall not completed yet: from its IpcState.
[[gnu::noinline]] void resume_and_complete(Scheduler& s, Thread& self, TrapFrame& f) {
    s.finish_switch_in();
    IpcState::UserOp op = self.ipc->user_op;
    // A failed wait still names its operation: a thread blocked in the
    // entry stub's hit path has no arguments in its frame to return.
    MK_ASSERT(self.ipc->result == Error::None || op != IpcState::UserOp::None);
    bool receives = op == IpcState::UserOp::Call || op == IpcState::UserOp::Recv;
    Status st = complete_ipc(*self.process, self, f, self.ipc->result);
    if (st != Error::None && receives) clear_message_registers(f);
    f.rax = uint64_t(to_abi(st));
    before_return_to_user();
}

}  // namespace
}  // namespace mk::syscall

extern "C" void mk_resume_at_frame(mk::TrapFrame* f) {
    using namespace mk;
    Scheduler& s = this_cpu().scheduler;
    Thread& self = *s.current();
    const IpcState& ipc = *self.ipc;
    if (ipc.user_op != IpcState::UserOp::None || ipc.result != Error::None || ipc.endpoint_ref ||
        ipc.superseded.valid()) [[unlikely]] {
        syscall::resume_and_complete(s, self, *f);
        return;
    }
    // Completed already, in its frame, by whoever ended its wait (the
    // partner: complete_at_frame_locked() in endpoint.cpp), or a Reply
    // that the fast path left Ready at its frame: Ok, and back to user
    // mode, interrupts off from here (before_return_to_user()'s check).
    s.finish_switch_in_to_user();
    self.at_frame = false;
    f->rax = uint64_t(abi::Err::Ok);
    if (__atomic_load_n(&self.exit_requested, __ATOMIC_RELAXED) ||
        __atomic_load_n(&self.move_to, __ATOMIC_RELAXED) != Thread::kNoMove) [[unlikely]]
        before_return_to_user();
}
