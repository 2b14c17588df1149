// Error values of the kernel: one enum for every failure, results that must be used.
#pragma once

#include <cstdint>
#include <type_traits>

namespace mk {

// Every way a kernel operation can fail. Translated to the user ABI only at the
// syscall boundary; inside the kernel nothing else signals failure.
enum class Error : uint8_t {
    None = 0,
    OutOfMemory,      // no frame / heap block / object slot left
    InvalidArgument,  // malformed input (bad size, alignment, unknown value)
    BadHandle,        // stale handle, or a handle of the wrong object type
    NoRights,         // the handle lacks a right the operation needs
    WouldBlock,       // a non-blocking operation found no partner
    TimedOut,         // a blocking operation's timeout expired
    Destroyed,        // the object went away while the caller waited on it
    PeerDied,         // the other side (server, caller) is gone
    BadState,         // the operation does not apply in the object's current state
    TooLarge,         // a message or buffer over its limit
    Unsupported,      // a feature the machine or build does not provide
    Interrupted,      // a wait ended by something other than its partner
    BadAddress,       // a user pointer outside the caller's mapped user memory
    BadSyscall,       // no such syscall number
    LimitReached,     // a per-process bound (handles, threads, memory) is reached
};

const char* error_name(Error e);

// A value or an Error; small, trivially copyable when T is. T may also own
// something (a Ref, a reservation): the value is moved in, and
// `std::move(result).value()` moves it out instead of copying it.
template <typename T>
class [[nodiscard]] Result {
  public:
    Result(T value) : value_(static_cast<T&&>(value)), error_(Error::None) {}  // NOLINT: implicit
    Result(Error e) : value_(), error_(e) {}  // NOLINT: implicit by design

    bool ok() const { return error_ == Error::None; }
    explicit operator bool() const { return ok(); }
    Error error() const { return error_; }
    T value() const& { return value_; }
    T value() && { return static_cast<T&&>(value_); }
    T value_or(T fallback) const { return ok() ? value_ : fallback; }

  private:
    T value_;
    Error error_;
};

// Status of an operation that yields no value.
using Status = Error;

}  // namespace mk
