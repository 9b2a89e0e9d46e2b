/// @file elementwise.hpp
/// Elementwise kernels on raw contiguous memory: add, sub, mul, scale, axpy and the row-broadcast
/// bias add. Scalar references in sft::kernels::reference; the xsimd versions are chosen at compile
/// time through kernels/simd.hpp (the scalar path when SFT_NO_SIMD is 1 or no SIMD architecture is
/// compiled in). Pointers need no alignment. Outputs may alias inputs element for element (y == a
/// is an in-place update); partial overlaps are not allowed. Internal: namespace sft::kernels.
/// Kernels never throw.
///
/// Results: add, sub, mul and scale are single IEEE operations per element, so the SIMD and scalar
/// paths agree bit for bit; axpy may be fused (one rounding instead of two) on either path.
/// Threads: large arrays are cut into ranges run on sft's pool (parallel_ranges); the ranges start
/// at multiples of the SIMD width, so the results do not depend on the number of threads.
#pragma once

#include <sft/config.hpp>
#include <sft/detail/thread_pool.hpp>
#include <sft/kernels/simd.hpp>

#include <algorithm>
#include <cstddef>

namespace sft::kernels {

namespace reference {

/// y[i] = a[i] + b[i], i < n.
template <class T>
void add(const T* a, const T* b, T* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

/// y[i] = a[i] - b[i], i < n.
template <class T>
void sub(const T* a, const T* b, T* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] = a[i] - b[i];
}

/// y[i] = a[i] * b[i], i < n.
template <class T>
void mul(const T* a, const T* b, T* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

/// y[i] = alpha * x[i], i < n.
template <class T>
void scale(const T* x, T alpha, T* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] = alpha * x[i];
}

/// y[i] += alpha * x[i], i < n (BLAS axpy).
template <class T>
void axpy(T alpha, const T* x, T* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

/// y[r, j] += bias[j] for a row-major y[rows, cols]: the bias add of a linear layer.
template <class T>
void add_bias(T* y, const T* bias, std::size_t rows, std::size_t cols) noexcept {
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < cols; ++j) y[r * cols + j] += bias[j];
}

}  // namespace reference

#if SFT_KERNELS_SIMD
namespace elementwise_detail {

/// y[i] = op(a[i], b[i]) over the full batches; returns the index where the tail starts.
template <class T, class Op>
std::size_t binary_body(const T* a, const T* b, T* y, std::size_t n, Op op) noexcept {
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const std::size_t body = n / w * w;  // (i + w <= n would leave GCC unsure that i cannot wrap)
    for (std::size_t i = 0; i < body; i += w) op(B::load_unaligned(a + i), B::load_unaligned(b + i)).store_unaligned(y + i);
    return body;
}

}  // namespace elementwise_detail
#endif

/// Elements per task of the threaded elementwise kernels; an array shorter than twice this stays
/// on the calling thread (the pool's hand-off costs about a microsecond).
inline constexpr std::size_t parallel_grain = 16384;
/// Task boundaries of the threaded elementwise kernels are multiples of this many elements (a
/// multiple of every SIMD width), so each element takes the same path (SIMD body or scalar tail)
/// as in a single-threaded call: results do not depend on the number of threads.
inline constexpr std::size_t parallel_align = 64;

/// f(begin, end) over a cut of [0, n) into ranges of at least parallel_grain elements whose
/// boundaries are multiples of parallel_align, on sft's thread pool; one call f(0, n) on the
/// calling thread below 2 * parallel_grain. For work whose every element is independent.
template <class F>
void parallel_ranges(std::size_t n, F&& f) noexcept {
    if (n < 2 * parallel_grain) {
        if (n) f(std::size_t(0), n);
        return;
    }
    const std::size_t blocks = (n + parallel_align - 1) / parallel_align;
    sft::detail::parallel_for(blocks, parallel_grain / parallel_align,
                              [&](std::size_t b0, std::size_t b1) { f(b0 * parallel_align, std::min(n, b1 * parallel_align)); });
}

/// f(row_begin, row_end) over a cut of [0, rows) into ranges of at least parallel_grain elements
/// (rows of `cols` elements each), on sft's thread pool; one call f(0, rows) below 2 * parallel_grain
/// elements. For work whose rows are independent (row kernels).
template <class F>
void parallel_rows(std::size_t rows, std::size_t cols, F&& f) noexcept {
    if (rows * cols < 2 * parallel_grain || rows < 2) {
        if (rows) f(std::size_t(0), rows);
        return;
    }
    const std::size_t grain = (parallel_grain + cols - 1) / std::max<std::size_t>(cols, 1);
    sft::detail::parallel_for(rows, grain, f);
}

/// The single-threaded kernels: what each task of the threaded ones below runs on its range.
namespace serial {

/// y[i] = a[i] + b[i], i < n. y may alias a or b.
template <class T>
void add(const T* a, const T* b, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    i = elementwise_detail::binary_body(a, b, y, n, [](const auto& u, const auto& v) { return u + v; });
#endif
    reference::add(a + i, b + i, y + i, n - i);
}

/// y[i] = a[i] - b[i], i < n. y may alias a or b.
template <class T>
void sub(const T* a, const T* b, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    i = elementwise_detail::binary_body(a, b, y, n, [](const auto& u, const auto& v) { return u - v; });
#endif
    reference::sub(a + i, b + i, y + i, n - i);
}

/// y[i] = a[i] * b[i], i < n. y may alias a or b.
template <class T>
void mul(const T* a, const T* b, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    i = elementwise_detail::binary_body(a, b, y, n, [](const auto& u, const auto& v) { return u * v; });
#endif
    reference::mul(a + i, b + i, y + i, n - i);
}

/// y[i] = alpha * x[i], i < n. y may alias x.
template <class T>
void scale(const T* x, T alpha, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const B va(alpha);
    for (const std::size_t body = n / w * w; i < body; i += w) (va * B::load_unaligned(x + i)).store_unaligned(y + i);
#endif
    reference::scale(x + i, alpha, y + i, n - i);
}

/// y[i] += alpha * x[i], i < n (BLAS axpy), fused multiply-add on the SIMD path.
template <class T>
void axpy(T alpha, const T* x, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const B va(alpha);
    for (const std::size_t body = n / w * w; i < body; i += w)
        xsimd::fma(va, B::load_unaligned(x + i), B::load_unaligned(y + i)).store_unaligned(y + i);
#endif
    reference::axpy(alpha, x + i, y + i, n - i);
}

}  // namespace serial

/// y[i] = a[i] + b[i], i < n, threaded above 2 * parallel_grain elements. y may alias a or b.
template <class T>
void add(const T* a, const T* b, T* y, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::add(a + i, b + i, y + i, e - i); });
}

/// y[i] = a[i] - b[i], i < n, threaded above 2 * parallel_grain elements. y may alias a or b.
template <class T>
void sub(const T* a, const T* b, T* y, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::sub(a + i, b + i, y + i, e - i); });
}

/// y[i] = a[i] * b[i], i < n, threaded above 2 * parallel_grain elements. y may alias a or b.
template <class T>
void mul(const T* a, const T* b, T* y, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::mul(a + i, b + i, y + i, e - i); });
}

/// y[i] = alpha * x[i], i < n, threaded above 2 * parallel_grain elements. y may alias x.
template <class T>
void scale(const T* x, T alpha, T* y, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::scale(x + i, alpha, y + i, e - i); });
}

/// y[i] += alpha * x[i], i < n (BLAS axpy), fused multiply-add on the SIMD path, threaded above
/// 2 * parallel_grain elements.
template <class T>
void axpy(T alpha, const T* x, T* y, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::axpy(alpha, x + i, y + i, e - i); });
}

/// y[r, j] += bias[j] for a row-major y[rows, cols] (bias[cols] must not overlap y): the bias add
/// of a linear layer, y = x W^T + b.
template <class T>
void add_bias(T* y, const T* bias, std::size_t rows, std::size_t cols) noexcept {
    // Rows are independent: threaded over rows above 2 * parallel_grain elements.
    parallel_rows(rows, cols, [=](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r) serial::add(y + r * cols, bias, y + r * cols, cols);
    });
}

}  // namespace sft::kernels
