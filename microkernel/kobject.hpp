// KObject: the common base of kernel objects that user space can name
// through handles (endpoints, threads, processes, reply capabilities).
//
// An object lives while anything needs it: each handle that names it, each
// operation in progress on it and its creator hold one reference. The last
// release() frees it (kobject_free() dispatches on the type; there are no
// virtual functions in kernel objects). "Destroying" an object is a state
// change made under its lock (an endpoint becomes dead: every later
// operation on it returns Error::Destroyed), never a free while somebody may
// still hold a pointer.
#pragma once

#include <atomic>
#include <cstdint>

// In a KObject subclass whose constructor and destructor are private: lets
// in what allocates it (knew), frees it (kdelete) and ends it on its last
// release (kobject_free).
#define MK_KOBJECT_ALLOCATION_FRIENDS          \
    friend void kobject_free(KObject* object); \
    template <typename T, typename... Args>    \
    friend T* knew(Args&&... args);            \
    template <typename T>                      \
    friend void kdelete(T* obj)

namespace mk {

enum class ObjectType : uint8_t {
    Endpoint = 1,
    Thread = 2,
    Process = 3,
    Reply = 4,
    Modules = 5,    // the boot modules: the right to spawn programs from them
    Badge = 6,      // a badge lineage's tracker (never named by a handle itself)
    Receivers = 7,  // an endpoint's receive-side tracker (never named by a handle itself)
};

const char* object_type_name(ObjectType t);

class KObject {
  public:
    KObject(const KObject&) = delete;
    KObject& operator=(const KObject&) = delete;

    ObjectType type() const { return type_; }

    // Takes one more reference. Only by someone who already holds one (or
    // under the lock that keeps the object alive, e.g. a handle table's).
    void retain() { refs_.fetch_add(1, std::memory_order_relaxed); }
    // Drops one reference; the last one frees the object. May take the heap
    // lock, for a Reply scheduler locks, for a tracker an endpoint's lock
    // (and an endpoint its own, Endpoint::free_object): so
    // callers hold no lock, but where the object is known to be neither
    // (or not the last reference).
    void release();
    // Drops a reference when another holder is known to keep one (the
    // syscall fast path, under the handle-table lock): never the last.
    void release_not_last() { refs_.fetch_sub(1, std::memory_order_relaxed); }
    // Drops a reference unless it is the last one (then nothing changes and
    // it returns false): for the fast path, which may not free under its
    // locks and has no other holder in hand. Inline, and always: the general
    // IPC path calls it under its locks, where a call spills registers.
    [[gnu::always_inline]] bool release_if_not_last() {
        uint32_t n = refs_.load(std::memory_order_relaxed);
        while (n > 1) {
            if (refs_.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel,
                                            std::memory_order_relaxed))
                return true;
        }
        return false;
    }
    uint32_t refs() const { return refs_.load(std::memory_order_relaxed); }

  protected:
    explicit KObject(ObjectType type) : type_(type) {}
    ~KObject() = default;

  private:
    friend class FastPath;  // syscall.S's fast path counts references itself (fastpath_layout.hpp)
    std::atomic<uint32_t> refs_{1};  // the creator's reference
    ObjectType type_;
};

// Frees an object whose last reference is gone; defined where every object
// type is known (microkernel/kobject.cpp).
void kobject_free(KObject* object);

inline void KObject::release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) kobject_free(this);
}

// An owning pointer to a kernel object: one reference, released when the
// Ref goes away. Copying takes another reference.
template <typename T>
class Ref {
  public:
    Ref() = default;
    // Takes over a reference the caller already holds (e.g. from create()).
    static Ref adopt(T* object) {
        Ref r;
        r.ptr_ = object;
        return r;
    }
    // Takes a new reference to `object`.
    static Ref retain(T* object) {
        if (object != nullptr) object->retain();
        return adopt(object);
    }
    Ref(const Ref& other) : ptr_(other.ptr_) {
        if (ptr_ != nullptr) ptr_->retain();
    }
    Ref(Ref&& other) noexcept : ptr_(other.ptr_) { other.ptr_ = nullptr; }
    Ref& operator=(Ref other) noexcept {
        T* old = ptr_;
        ptr_ = other.ptr_;
        other.ptr_ = old;
        return *this;
    }
    ~Ref() { reset(); }

    void reset() {
        T* old = ptr_;
        ptr_ = nullptr;
        if (old != nullptr) old->release();
    }
    // Gives up ownership without releasing: the caller now holds the reference.
    T* leak() {
        T* p = ptr_;
        ptr_ = nullptr;
        return p;
    }

    T* get() const { return ptr_; }
    T* operator->() const { return ptr_; }
    T& operator*() const { return *ptr_; }
    explicit operator bool() const { return ptr_ != nullptr; }

  private:
    T* ptr_ = nullptr;
};

}  // namespace mk
