// The non-template half of the server framework (mk/server.hpp): what a
// handler's result means, coroutine handlers, wait lists.
#include "mk/server.hpp"

namespace mk::ipc {

namespace detail {

Action respond(bool call, bool deferred, Response&& r) {
    Action a;
    if (!call) return a;  // a send: there is nobody to answer
    if (deferred) {
        a.kind = Action::Kind::Deferred;
        return a;
    }
    a.kind = Action::Kind::Reply;
    // "Deferred" without a defer(): nobody would answer, so answer now.
    a.reply = r.is_deferred() ? error_reply(abi::Err::BadState) : std::move(r.message());
    return a;
}

Action start_task(Task&& task, bool call) {
    if (!task) return respond(call, false, abi::Err::OutOfMemory);  // no frame
    Task::Handle h = task.handle();
    h.resume();
    Task::promise_type& p = h.promise();
    bool deferred = p.request != nullptr && p.request->deferred();
    if (h.done()) {
        if (!p.has_result) return respond(call, deferred, abi::Err::BadState);
        return respond(call, deferred, std::move(p.result));  // `task` frees the frame
    }
    // Suspended: the coroutine outlives this dispatch, and so must the call.
    Action a;
    if (call && !deferred) {
        Result<Reply> saved = p.request != nullptr ? p.request->defer() : reply_save();
        if (saved) {
            p.reply = std::move(*saved);
            deferred = true;
        } else {
            // The call is still this thread's: answer it now, and let the
            // coroutine finish into the void.
            a.kind = Action::Kind::Reply;
            a.reply = error_reply(saved.error());
        }
    }
    if (call && deferred) a.kind = Action::Kind::Deferred;
    p.detached = true;
    (void)task.release();
    return a;
}

bool loop_survives(abi::Err e) {
    switch (e) {
        case abi::Err::Interrupted:      // woken by something else: wait again
        case abi::Err::TimedOut:         // (only with a timeout)
        case abi::Err::WouldBlock:       // (only non-blocking)
        case abi::Err::PeerDied:         // a reply's caller is gone
        case abi::Err::InvalidArgument:  // a malformed message: dropped
        case abi::Err::TooLarge:
        case abi::Err::OutOfMemory:  // the kernel may have memory again later
            return true;
        case abi::Err::Ok:
        case abi::Err::BadHandle:
        case abi::Err::NoRights:
        case abi::Err::Destroyed:
        case abi::Err::BadState:
        case abi::Err::Unsupported:
        case abi::Err::BadAddress:
        case abi::Err::BadSyscall:
        case abi::Err::LimitReached:
            return false;
    }
    return false;
}

}  // namespace detail

void Task::promise_type::finish(Handle h) noexcept {
    if (!detached) return;  // dispatch() reads the result and frees the frame
    if (reply.pending()) {
        if (!has_result || result.is_deferred()) {
            (void)reply.fail(abi::Err::BadState);
        } else {
            (void)reply.send(result.message());
        }
    }
    h.destroy();
}

// --- WaitList ---

WaitList::Awaiter::~Awaiter() {
    if (linked_) list_->unlink(this);
}

void WaitList::Awaiter::await_suspend(std::coroutine_handle<> h) noexcept {
    h_ = h;
    list_->link(this);
}

void WaitList::link(Awaiter* a) {
    a->prev_ = tail_;
    a->next_ = nullptr;
    if (tail_ != nullptr) {
        tail_->next_ = a;
    } else {
        head_ = a;
    }
    tail_ = a;
    a->linked_ = true;
    ++size_;
}

void WaitList::unlink(Awaiter* a) {
    if (a->prev_ != nullptr) {
        a->prev_->next_ = a->next_;
    } else {
        head_ = a->next_;
    }
    if (a->next_ != nullptr) {
        a->next_->prev_ = a->prev_;
    } else {
        tail_ = a->prev_;
    }
    a->prev_ = a->next_ = nullptr;
    a->linked_ = false;
    --size_;
}

bool WaitList::wake_one() {
    Awaiter* a = head_;
    if (a == nullptr) return false;
    unlink(a);
    a->h_.resume();  // `a` may be gone from here on
    return true;
}

size_t WaitList::wake_all() {
    size_t n = size_;
    size_t woken = 0;
    while (woken < n && wake_one()) ++woken;
    return woken;
}

size_t WaitList::cancel(uint64_t tag) {
    size_t n = 0;
    Awaiter* a = head_;
    while (a != nullptr) {
        Awaiter* next = a->next_;
        if (a->tag_ == tag) {
            unlink(a);
            a->h_.destroy();  // its frame, `a` included
            ++n;
            next = head_;  // destroying a frame may have changed the list: start over
        }
        a = next;
    }
    return n;
}

size_t WaitList::cancel_all() {
    size_t n = 0;
    while (Awaiter* a = head_) {
        unlink(a);
        a->h_.destroy();
        ++n;
    }
    return n;
}

}  // namespace mk::ipc
