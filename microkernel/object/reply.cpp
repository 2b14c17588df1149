#include "object/reply.hpp"

#include "endpoint.hpp"
#include "memory.hpp"

namespace mk {

Result<Reply*> Reply::save(ReplyToken token) {
    if (!token.valid()) return Error::BadHandle;
    Reply* r = knew<Reply>(token);
    if (r == nullptr) return Error::OutOfMemory;
    Status st = Endpoint::save_reply(token, r->caller_);
    if (st != Error::None) {
        kdelete(r);
        return st;
    }
    return r;
}

Status Reply::answer(const Message& msg, Donate donate) {
    return Endpoint::reply_saved(token_, caller_, msg, donate);
}

void Reply::free_object(Reply* reply) {
    // Never released under the scheduler lock (handles are not), so the
    // caller still waiting can be failed here.
    Endpoint::drop_saved(reply->caller_);
    kdelete(reply);
}

}  // namespace mk
