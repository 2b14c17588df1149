// The freestanding printf-style formatter, shared by the kernel log
// (microkernel/log.cpp) and libipc's printf.
#include "mk/format.hpp"

#include <cstdint>

namespace mk {

namespace {

class Sink {
  public:
    Sink(char* buf, size_t size) : buf_(buf), size_(size) {}

    void put(char c) {
        if (len_ + 1 < size_) buf_[len_] = c;
        ++len_;
    }

    void finish() {
        if (size_ == 0) return;
        buf_[len_ < size_ ? len_ : size_ - 1] = '\0';
    }

    size_t length() const { return len_; }

  private:
    char* buf_;
    size_t size_;
    size_t len_ = 0;
};

struct Spec {
    bool left = false;
    bool zero = false;
    bool alternate = false;  // '#': 0x prefix for %x
    unsigned width = 0;
    int precision = -1;  // for %s: at most this many characters
};

void pad(Sink& out, size_t used, const Spec& spec, char fill) {
    for (size_t i = used; i < spec.width; ++i) out.put(fill);
}

void put_string(Sink& out, const char* s, const Spec& spec) {
    if (s == nullptr) s = "(null)";
    size_t n = 0;
    while ((spec.precision < 0 || n < size_t(spec.precision)) && s[n] != '\0') ++n;
    if (!spec.left) pad(out, n, spec, ' ');
    for (size_t i = 0; i < n; ++i) out.put(s[i]);
    if (spec.left) pad(out, n, spec, ' ');
}

void put_number(Sink& out, uint64_t value, bool negative, unsigned base, bool upper,
                const Spec& spec) {
    const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = digits[value % base];
        value /= base;
    } while (value != 0);
    size_t used = n + (negative ? 1 : 0);
    if (!spec.left && !spec.zero) pad(out, used, spec, ' ');
    if (negative) out.put('-');
    if (!spec.left && spec.zero) pad(out, used, spec, '0');
    while (n > 0) out.put(tmp[--n]);
    if (spec.left) pad(out, used, spec, ' ');
}

}  // namespace

size_t vformat(char* buf, size_t size, const char* fmt, va_list args) {
    Sink out(buf, size);
    for (const char* p = fmt; *p != '\0'; ++p) {
        if (*p != '%') {
            out.put(*p);
            continue;
        }
        ++p;
        Spec spec;
        for (;; ++p) {
            if (*p == '-') {
                spec.left = true;
            } else if (*p == '0') {
                spec.zero = true;
            } else if (*p == '#') {
                spec.alternate = true;
            } else {
                break;
            }
        }
        while (*p >= '0' && *p <= '9') spec.width = spec.width * 10 + unsigned(*p++ - '0');
        if (*p == '.') {
            ++p;
            if (*p == '*') {
                spec.precision = va_arg(args, int);
                ++p;
            } else {
                spec.precision = 0;
                while (*p >= '0' && *p <= '9') spec.precision = spec.precision * 10 + (*p++ - '0');
            }
        }
        int longs = 0;
        bool size_t_arg = false;
        for (;; ++p) {
            if (*p == 'l') {
                ++longs;
            } else if (*p == 'z') {
                size_t_arg = true;
            } else {
                break;
            }
        }
        auto next_unsigned = [&]() -> uint64_t {
            if (size_t_arg) return va_arg(args, size_t);
            if (longs >= 2) return va_arg(args, unsigned long long);
            if (longs == 1) return va_arg(args, unsigned long);
            return va_arg(args, unsigned);
        };
        switch (*p) {
            case 'd':
            case 'i': {
                int64_t v;
                if (size_t_arg || longs >= 1) {
                    v = longs >= 2 ? va_arg(args, long long) : va_arg(args, long);
                } else {
                    v = va_arg(args, int);
                }
                uint64_t magnitude = v < 0 ? uint64_t(0) - uint64_t(v) : uint64_t(v);
                put_number(out, magnitude, v < 0, 10, false, spec);
                break;
            }
            case 'u':
                put_number(out, next_unsigned(), false, 10, false, spec);
                break;
            case 'x':
                if (spec.alternate) {
                    out.put('0');
                    out.put('x');
                }
                put_number(out, next_unsigned(), false, 16, false, spec);
                break;
            case 'X':
                put_number(out, next_unsigned(), false, 16, true, spec);
                break;
            case 'p':
                out.put('0');
                out.put('x');
                put_number(out, reinterpret_cast<uintptr_t>(va_arg(args, void*)), false, 16, false,
                           spec);
                break;
            case 's':
                put_string(out, va_arg(args, const char*), spec);
                break;
            case 'c':
                out.put(char(va_arg(args, int)));
                break;
            case '%':
                out.put('%');
                break;
            case '\0':
                --p;
                break;  // a lone '%' at the end prints nothing
            default:
                out.put('%');
                out.put(*p);
                break;
        }
    }
    out.finish();
    return out.length();
}

size_t format(char* buf, size_t size, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    size_t n = vformat(buf, size, fmt, args);
    va_end(args);
    return n;
}

}  // namespace mk
