#include "config.hpp"

#include "log.hpp"
#include "multiboot2.hpp"

namespace mk {

namespace {

bool equals(const char* s, size_t n, const char* word) {
    size_t i = 0;
    for (; i < n && word[i] != '\0'; ++i) {
        if (s[i] != word[i]) return false;
    }
    return i == n && word[i] == '\0';
}

// Sets `out` from an on/off word; false for any other value.
bool parse_switch(const char* cmdline, size_t length, const char* key, const char* on,
                  const char* off, bool& out, unsigned& bad_words) {
    size_t n = 0;
    const char* v = cmdline_value(cmdline, length, key, &n);
    if (v == nullptr) return true;
    if (equals(v, n, on)) {
        out = true;
    } else if (equals(v, n, off)) {
        out = false;
    } else {
        log("config: bad value '%.*s' for %s= (expected %s or %s); keeping %s\n", int(n), v, key,
            on, off, out ? on : off);
        ++bad_words;
        return false;
    }
    return true;
}

}  // namespace

KernelConfig parse_kernel_config(const char* cmdline, size_t length) {
    KernelConfig c;
    c.cmdline = cmdline;
    c.cmdline_length = length;
    parse_switch(cmdline, length, "donate", "on", "off", c.donation, c.bad_words);
    parse_switch(cmdline, length, "fastpath", "on", "off", c.fast_path, c.bad_words);
    parse_switch(cmdline, length, "panic", "exit", "halt", c.exit_on_panic, c.bad_words);
    parse_switch(cmdline, length, "memstat", "on", "off", c.memstat, c.bad_words);
    parse_switch(cmdline, length, "smp", "on", "off", c.smp, c.bad_words);
    parse_switch(cmdline, length, "pcid", "on", "off", c.pcid, c.bad_words);
    size_t n = 0;
    const char* t = cmdline_value(cmdline, length, "ktest", &n);
    if (t != nullptr && n > 0) {
        c.ktest = t;
        c.ktest_length = n;
    }
    return c;
}

}  // namespace mk
