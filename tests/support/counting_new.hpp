/// @file counting_new.hpp
/// Counts heap allocations, for the tests that assert a steady-state training step allocates
/// nothing (allocation counts are deterministic). Including this header REPLACES the global
/// operator new and delete of the test binary, so include it in exactly one source file per
/// binary. The replacement only counts, then allocates with malloc/aligned_alloc as usual, so the
/// binary's other tests are unaffected; tests read differences of the counter around the code
/// they measure.
///
/// Set SFT_ALLOC_TRACE=1 in the environment to print (stderr) a backtrace of every allocation made
/// while a window is open (sft_test::AllocationWindow): pipe it through c++filt.
#pragma once

#include <execinfo.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace sft_test {

/// Allocations made by operator new (every form) since the program started.
inline std::atomic<long> allocations{0};

/// The current count.
inline long allocation_count() noexcept { return allocations.load(std::memory_order_relaxed); }

/// True while a measured window is open: only then are allocations traced.
inline std::atomic<bool> window_open{false};

/// Opens a measured window for its lifetime (tracing only; counting is always on).
struct AllocationWindow {
    AllocationWindow() noexcept { window_open.store(true, std::memory_order_relaxed); }
    ~AllocationWindow() { window_open.store(false, std::memory_order_relaxed); }
    AllocationWindow(const AllocationWindow&) = delete;
    AllocationWindow& operator=(const AllocationWindow&) = delete;
};

namespace detail {

inline bool trace_enabled() noexcept {
    static const bool on = [] {
        const char* v = std::getenv("SFT_ALLOC_TRACE");
        return v != nullptr && std::strcmp(v, "0") != 0;
    }();
    return on;
}

inline void trace(std::size_t n) noexcept {
    static thread_local bool in_trace = false;
    if (!window_open.load(std::memory_order_relaxed) || in_trace || !trace_enabled()) return;
    in_trace = true;
    char head[96];
    const int len = std::snprintf(head, sizeof head, "--- allocation of %zu bytes in a measured window:\n", n);
    if (len > 0) (void)!::write(2, head, static_cast<std::size_t>(len));
    void* frames[24];
    const int depth = ::backtrace(frames, 24);
    ::backtrace_symbols_fd(frames, depth, 2);  // writes to the fd directly, no malloc
    in_trace = false;
}

inline void* counted_alloc(std::size_t n, std::size_t align) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    trace(n);
    void* p = nullptr;
    if (align <= alignof(std::max_align_t)) p = std::malloc(n ? n : 1);
    else p = std::aligned_alloc(align, (std::max<std::size_t>(n, 1) + align - 1) / align * align);
    if (!p) throw std::bad_alloc();
    return p;
}

}  // namespace detail
}  // namespace sft_test

void* operator new(std::size_t n) { return sft_test::detail::counted_alloc(n, 0); }
void* operator new[](std::size_t n) { return sft_test::detail::counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return sft_test::detail::counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return sft_test::detail::counted_alloc(n, static_cast<std::size_t>(a)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
