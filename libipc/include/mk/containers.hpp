// Small containers the servers keep their state in, freestanding (no
// exceptions, nothing from the C++ runtime but nothrow new):
//
//   Ring<T, N>    a fixed buffer of N items, oldest first: a pipe's bytes,
//                 a port's packets;
//   Fifo<T>       waiters served in arrival order: push at the back, take
//                 from the front, remove any that a predicate picks (say
//                 every waiter of a client that went away); several may
//                 keep one running total of what they hold (count_in), so
//                 a server's bound over all its queues costs no scan.
//   Slots<T, N>   objects named by a 64-bit id that a client cannot guess
//                 into a newer one: a slot index and the slot's generation,
//                 which moves on each time the slot is freed, so a stale id
//                 never names a later object.
//
// Fifo and Slots own what they hold; allocation failure is a false/empty
// return, never a trap. Ring allocates nothing, and neither does a Fifo that
// holds at most one element: its first node lives inside it (a server's
// queues mostly hold one waiter or none, and a heap allocation and free on
// every request that waits would cost more than the rest of the request).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace mk {

template <typename T, size_t N>
class Ring {
    static_assert(N > 0);

  public:
    size_t size() const { return used_; }
    size_t room() const { return N - used_; }
    bool empty() const { return used_ == 0; }
    bool full() const { return used_ == N; }

    // Appends n items; only when n <= room().
    void push(const T* items, size_t n) {
        size_t tail = (head_ + used_) % N;
        size_t first = n < N - tail ? n : N - tail;
        for (size_t i = 0; i < first; ++i) items_[tail + i] = items[i];
        for (size_t i = first; i < n; ++i) items_[i - first] = items[i];
        used_ += n;
    }

    // Hands the oldest min(n, size()) items to sink(const T*, count), in
    // at most two pieces, oldest first, and keeps them; returns how many.
    template <typename Sink>
    size_t peek(size_t n, Sink&& sink) const {
        if (n > used_) n = used_;
        size_t first = n < N - head_ ? n : N - head_;
        if (first > 0) sink(items_ + head_, first);
        if (n > first) sink(items_, n - first);
        return n;
    }

    // Copies the oldest min(n, size()) items to `out`, one at a time (for a
    // few: no call), and keeps them; returns how many.
    size_t copy_out(T* out, size_t n) const {
        if (n > used_) n = used_;
        size_t at = head_;
        for (size_t i = 0; i < n; ++i) {
            out[i] = items_[at];
            at = at + 1 == N ? 0 : at + 1;
        }
        return n;
    }

    // Forgets the oldest n items; only when n <= size().
    void drop(size_t n) {
        head_ = (head_ + n) % N;
        used_ -= n;
        if (used_ == 0) head_ = 0;
    }

    void clear() { head_ = used_ = 0; }

  private:
    T items_[N];
    size_t head_ = 0;  // the oldest item
    size_t used_ = 0;
};

template <typename T>
class Fifo {
  public:
    Fifo() {}  // NOLINT: the inline node stays unconstructed until used
    Fifo(const Fifo&) = delete;
    Fifo& operator=(const Fifo&) = delete;
    ~Fifo() { clear(); }

    bool empty() const { return head_ == nullptr; }
    size_t size() const { return size_; }

    // Adds this queue's elements, now and from now on, to `*total` (which
    // must outlive the queue): every push adds one there, every removal
    // takes one off.
    void count_in(size_t* total) {
        total_ = total;
        *total_ += size_;
    }

    // Appends `v`; false (and `v` untouched) when there is no memory. The
    // inline node takes it when free, else the heap.
    bool push_back(T&& v) {
        Node* n;
        if (!inline_used_) {
            n = new (&inline_) Node{std::move(v), nullptr};
            inline_used_ = true;
        } else {
            n = new (std::nothrow) Node{std::move(v), nullptr};
            if (n == nullptr) return false;
        }
        if (tail_ != nullptr) {
            tail_->next = n;
        } else {
            head_ = n;
        }
        tail_ = n;
        ++size_;
        if (total_ != nullptr) ++*total_;
        return true;
    }

    // The oldest element; only when !empty().
    T& front() { return head_->value; }
    const T& front() const { return head_->value; }

    // Removes and returns the oldest element; only when !empty().
    T pop_front() {
        Node* n = head_;
        head_ = n->next;
        if (head_ == nullptr) tail_ = nullptr;
        --size_;
        if (total_ != nullptr) --*total_;
        T v = std::move(n->value);
        release(n);
        return v;
    }

    // Calls f(element) oldest first.
    template <typename F>
    void for_each(F&& f) const {
        for (const Node* n = head_; n != nullptr; n = n->next) f(n->value);
    }

    // Takes out every element for which pick(element) is true, oldest
    // first, handing each to take(T&&); returns how many.
    template <typename Pick, typename Take>
    size_t extract_if(Pick&& pick, Take&& take) {
        size_t count = 0;
        Node** link = &head_;
        Node* prev = nullptr;
        while (Node* n = *link) {
            if (!pick(n->value)) {
                prev = n;
                link = &n->next;
                continue;
            }
            *link = n->next;
            if (tail_ == n) tail_ = prev;
            --size_;
            if (total_ != nullptr) --*total_;
            ++count;
            T v = std::move(n->value);
            release(n);
            take(std::move(v));
        }
        return count;
    }

    void clear() {
        while (!empty()) (void)pop_front();
    }

    // Whether the inline node holds an element (for the tests: a queue of
    // one allocates nothing).
    bool uses_inline_node() const { return inline_used_; }

  private:
    struct Node {
        T value;
        Node* next;
    };

    // Frees a node that is out of the list: the inline one is only
    // destroyed, to be reused by the next push.
    void release(Node* n) {
        if (n == &inline_) {
            n->~Node();
            inline_used_ = false;
        } else {
            delete n;
        }
    }

    Node* head_ = nullptr;
    Node* tail_ = nullptr;
    size_t size_ = 0;
    size_t* total_ = nullptr;
    bool inline_used_ = false;
    union {
        Node inline_;  // constructed while inline_used_
    };
};

template <typename T, size_t N>
class Slots {
    static_assert(N > 0 && N < (size_t{1} << 31));

  public:
    // id = generation << 32 | index; generations start at 1 and stay below
    // 2^31, so 0 is never an id and every id fits in 63 bits (a server may
    // shift one left to carry a flag in a badge).
    using Id = uint64_t;

    Slots() = default;
    Slots(const Slots&) = delete;
    Slots& operator=(const Slots&) = delete;
    ~Slots() {
        for (Slot& s : slots_) delete s.object;
    }

    // A new T built from `args` in a free slot: its id, or 0 when every
    // slot is taken or there is no memory.
    template <typename... Args>
    Id create(Args&&... args) {
        for (size_t i = 0; i < N; ++i) {
            size_t index = (next_ + i) % N;
            Slot& s = slots_[index];
            if (s.object != nullptr) continue;
            s.object = new (std::nothrow) T(std::forward<Args>(args)...);
            if (s.object == nullptr) return 0;
            next_ = (index + 1) % N;
            ++count_;
            return (uint64_t(s.generation) << 32) | index;
        }
        return 0;
    }

    // The object `id` names, or null for a stale, freed or malformed id.
    T* find(Id id) const {
        uint64_t index = id & 0xFFFFFFFFu;
        if (index >= N) return nullptr;
        const Slot& s = slots_[index];
        if (s.object == nullptr || s.generation != uint32_t(id >> 32)) return nullptr;
        return s.object;
    }

    // Frees the object `id` names (nothing for a stale id); the slot's
    // generation moves on.
    void destroy(Id id) {
        if (find(id) == nullptr) return;
        Slot& s = slots_[id & 0xFFFFFFFFu];
        delete s.object;
        s.object = nullptr;
        s.generation = (s.generation + 1) & 0x7FFFFFFFu;
        if (s.generation == 0) s.generation = 1;
        --count_;
    }

    size_t size() const { return count_; }
    static constexpr size_t capacity() { return N; }
    bool full() const { return count_ == N; }

    // Calls f(id, object) for every live object, in slot order.
    template <typename F>
    void for_each(F&& f) const {
        for (size_t i = 0; i < N; ++i) {
            if (slots_[i].object != nullptr) {
                f((uint64_t(slots_[i].generation) << 32) | i, *slots_[i].object);
            }
        }
    }

  private:
    struct Slot {
        T* object = nullptr;
        uint32_t generation = 1;
    };
    Slot slots_[N];
    size_t next_ = 0;
    size_t count_ = 0;
};

}  // namespace mk
