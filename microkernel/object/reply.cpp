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
        MK_ASSERT(r->refs() == 1 && r->saved_.caller == nullptr);
    } else {
        r = knew<Reply>();
        if (r == nullptr) return Error::OutOfMemory;
    }
    Status st = Endpoint::save_reply(token, r->saved_);
    if (st != Error::None) {
        kdelete(r);
        return st;
    }
    return r;
}

void Reply::free_spare(Reply* spare) {
    if (spare == nullptr) return;
    kdelete(spare);  // answered: SavedWait's end checks nothing is left
}

Status Reply::answer(const Message& msg, Donate donate) {
    // The caller stays pinned until the Reply goes: another thread holding
    // it may be answering it too, with the same pin in hand.
    return Endpoint::reply_saved(saved_, msg, donate);
}

void Reply::free_object(Reply* reply) {
    // Never released under a lock (handles are not), so the caller still
    // waiting can be failed here, under its locks, and unpinned after.
    Endpoint::drop_saved(reply->saved_);
    reply->saved_.unpin();
    kdelete(reply);
}

}  // namespace mk
