// Reply: a saved reply capability (Sys::ReplySave). One-shot: it answers
// the one call it was saved from, once, from any thread that holds a handle
// to it (a worker pool); dropped unanswered (its last handle closed, its
// process dead) it fails the caller with PeerDied.
#pragma once

#include "endpoint.hpp"
#include "kobject.hpp"
#include "message.hpp"
#include "thread.hpp"

namespace mk {

class Reply : public KObject {
  public:
    // Saves the current thread's pending call `token` into a new Reply.
    // Errors: OutOfMemory, BadHandle (no such pending call).
    [[nodiscard]] static Result<Reply*> save(ReplyToken token);

    // Answers the saved call with `msg` (payload and handles from the
    // current thread's IPC state). BadHandle: answered already, or the
    // caller timed out or died.
    [[nodiscard]] Status answer(const Message& msg, Donate donate = Donate::No);

    // Frees a thread's IpcState::spare_reply (null: nothing), answered
    // already: no caller waits on it. Takes only the heap lock.
    static void free_spare(Reply* spare);

  private:
    friend class FastPath;  // syscall/fastpath.cpp answers a saved reply inline
    MK_KOBJECT_ALLOCATION_FRIENDS;

    Reply() : KObject(ObjectType::Reply) {}
    ~Reply() = default;
    static void free_object(Reply* reply);

    // The saved call: its token, and its caller, named and pinned, waiting
    // on its queue (guarded by the caller's home scheduler lock:
    // reply_wait_owner) until answered, dropped, timed out or killed.
    SavedWait saved_;
};

}  // namespace mk
