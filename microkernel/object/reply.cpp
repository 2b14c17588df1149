#include "object/reply.hpp"

#include "endpoint.hpp"
#include "memory.hpp"
#include "panic.hpp"
#include "percpu.hpp"

namespace mk {

Result<Reply*> Reply::save(ReplyToken token) {
    if (!token.valid()) return Error::BadHandle;
    // The object the fast path last answered through, if this thread kept
    // one: no other thread can reach it, and its one reference is ours.
    IpcState& ipc = *this_cpu().scheduler.current()->ipc;
    Reply* r = ipc.spare_reply;
    if (r != nullptr) {
        ipc.spare_reply = nullptr;
        MK_ASSERT(r->refs() == 1 && r->caller_.empty());
        r->token_ = token;
    } else {
        r = knew<Reply>(token);
        if (r == nullptr) return Error::OutOfMemory;
    }
    Status st = Endpoint::save_reply(token, r->caller_);
    if (st != Error::None) {
        kdelete(r);
        return st;
    }
    return r;
}

void Reply::free_spare(Reply* spare) {
    if (spare == nullptr) return;
    MK_ASSERT(spare->caller_.empty());
    kdelete(spare);
}

Status Reply::answer(const Message& msg, Donate donate) {
    return Endpoint::reply_saved(token_, caller_, msg, donate);
}

void Reply::free_object(Reply* reply) {
    // Never released under a lock (handles are not), so the caller still
    // waiting can be failed here, under the IPC and scheduler locks.
    Endpoint::drop_saved(reply->caller_);
    kdelete(reply);
}

}  // namespace mk
