// Results for user code: a value or an abi::Err, never an exception.
//
// Result<T> holds a T or an error; Status (Result<void>) only says whether an
// operation worked. Both are [[nodiscard]], so a dropped error warns. T may be
// move-only (Handle): take the value out with `std::move(r).value()` or
// `*std::move(r)`. Asking an error for its value is a bug and traps at once
// rather than hand out garbage.
#pragma once

#include <new>
#include <type_traits>
#include <utility>

#include "mk/abi.hpp"

namespace mk::ipc {

// A readable name for an error ("TimedOut"), for logs and test output.
const char* error_name(abi::Err e);

template <typename T>
class [[nodiscard]] Result {
    static_assert(!std::is_reference_v<T>, "Result holds values");

  public:
    Result(const T& v) requires std::is_copy_constructible_v<T>  // NOLINT: implicit by design
        : err_(abi::Err::Ok) {
        new (&value_) T(v);
    }
    Result(T&& v) : err_(abi::Err::Ok) { new (&value_) T(std::move(v)); }  // NOLINT: implicit
    // A default-initialized T built in place, to be filled in there: a
    // Result of a large T (a Received) returned by name is then never copied
    // (and, default- rather than value-initialized, a Message's payload is
    // not zeroed first).
    explicit Result(std::in_place_t) requires std::is_default_constructible_v<T>
        : err_(abi::Err::Ok) {
        new (&value_) T;
    }
    // An error; Ok carries no value, so it is refused.
    Result(abi::Err e) : err_(e) {  // NOLINT: implicit by design
        if (e == abi::Err::Ok) __builtin_trap();
    }

    Result(const Result& o) requires std::is_copy_constructible_v<T> : err_(o.err_) {
        if (ok()) new (&value_) T(o.value_);
    }
    Result(Result&& o) noexcept(std::is_nothrow_move_constructible_v<T>) : err_(o.err_) {
        if (ok()) new (&value_) T(std::move(o.value_));
    }
    Result& operator=(const Result& o) requires std::is_copy_constructible_v<T> {
        if (this != &o) {
            reset();
            err_ = o.err_;
            if (ok()) new (&value_) T(o.value_);
        }
        return *this;
    }
    Result& operator=(Result&& o) noexcept(std::is_nothrow_move_constructible_v<T>) {
        if (this != &o) {
            reset();
            err_ = o.err_;
            if (ok()) new (&value_) T(std::move(o.value_));
        }
        return *this;
    }
    ~Result() { reset(); }

    bool ok() const { return err_ == abi::Err::Ok; }
    explicit operator bool() const { return ok(); }
    // Ok when there is a value.
    abi::Err error() const { return err_; }

    T& value() & { return checked(); }
    const T& value() const& { return checked(); }
    T&& value() && { return std::move(checked()); }
    T& operator*() & { return checked(); }
    const T& operator*() const& { return checked(); }
    T&& operator*() && { return std::move(checked()); }
    T* operator->() { return &checked(); }
    const T* operator->() const { return &checked(); }

    T value_or(T fallback) const& requires std::is_copy_constructible_v<T> {
        return ok() ? value_ : fallback;
    }

  private:
    T& checked() {
        if (!ok()) __builtin_trap();
        return value_;
    }
    const T& checked() const {
        if (!ok()) __builtin_trap();
        return value_;
    }
    void reset() {
        if (ok()) value_.~T();
        err_ = abi::Err::Unsupported;  // no value any more
    }

    union {
        T value_;
    };
    abi::Err err_;
};

// Whether an operation worked; Ok is success.
template <>
class [[nodiscard]] Result<void> {
  public:
    Result() = default;
    Result(abi::Err e) : err_(e) {}  // NOLINT: implicit by design

    bool ok() const { return err_ == abi::Err::Ok; }
    explicit operator bool() const { return ok(); }
    abi::Err error() const { return err_; }

  private:
    abi::Err err_ = abi::Err::Ok;
};

using Status = Result<void>;

}  // namespace mk::ipc
