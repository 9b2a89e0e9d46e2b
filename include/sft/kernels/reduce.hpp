/// @file reduce.hpp
/// Reductions on raw contiguous memory: sum, dot, row sums, column sums (the bias gradient of a
/// linear layer) and row maxima. Scalar references in sft::kernels::reference; the xsimd versions
/// are chosen at compile time through kernels/simd.hpp. Pointers need no alignment.
/// Internal: namespace sft::kernels. Kernels never throw.
///
/// Accuracy: the references of sum, dot and row_sums accumulate float in double, so that they are
/// the accurate side of the tests; the SIMD versions accumulate in T, one partial sum per lane,
/// then add the lanes pairwise (reduce_lanes) and the tail. Their error is bounded by about
/// (n / lanes + lanes + tail) * eps * sum |x_i|, smaller than a sequential float sum's n * eps * sum |x_i|.
/// Column sums add whole rows lane-wise in T on both paths: the same operations in the same order,
/// so both paths agree bit for bit. Large column sums run on sft's pool, one block of columns per
/// task (parallel_col_blocks): each column is still summed by one thread in row order, so the
/// result does not depend on the number of threads.
#pragma once

#include <sft/config.hpp>
#include <sft/kernels/elementwise.hpp>
#include <sft/kernels/simd.hpp>

#include <algorithm>
#include <cstddef>
#include <type_traits>

namespace sft::kernels {

namespace reference {

/// Accumulator type of the references: double for float.
template <class T>
using ReduceAcc = std::conditional_t<std::is_same_v<T, float>, double, T>;

/// sum_i x[i], i < n (0 when n == 0).
template <class T>
T sum(const T* x, std::size_t n) noexcept {
    ReduceAcc<T> s = 0;
    for (std::size_t i = 0; i < n; ++i) s += x[i];
    return static_cast<T>(s);
}

/// sum_i a[i] * b[i], i < n (0 when n == 0).
template <class T>
T dot(const T* a, const T* b, std::size_t n) noexcept {
    ReduceAcc<T> s = 0;
    for (std::size_t i = 0; i < n; ++i) s += ReduceAcc<T>(a[i]) * b[i];
    return static_cast<T>(s);
}

/// out[r] = sum_j x[r, j] for a row-major x[rows, cols].
template <class T>
void row_sums(const T* x, std::size_t rows, std::size_t cols, T* out) noexcept {
    for (std::size_t r = 0; r < rows; ++r) out[r] = sum(x + r * cols, cols);
}

/// out[j] += sum_r x[r, j] for a row-major x[rows, cols], rows added in order (the bias gradient
/// db += column sums of dy, which accumulates as every gradient does).
template <class T>
void add_col_sums(const T* x, std::size_t rows, std::size_t cols, T* out) noexcept {
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < cols; ++j) out[j] += x[r * cols + j];
}

/// out[r] = max_j x[r, j] for a row-major x[rows, cols] with cols > 0.
template <class T>
void row_max(const T* x, std::size_t rows, std::size_t cols, T* out) noexcept {
    SFT_ASSERT(cols > 0 || rows == 0);
    for (std::size_t r = 0; r < rows; ++r) {
        const T* row = x + r * cols;
        T m = row[0];
        for (std::size_t j = 1; j < cols; ++j) m = std::max(m, row[j]);
        out[r] = m;
    }
}

}  // namespace reference

/// sum_i x[i], i < n (0 when n == 0). Lane-wise partial sums on the SIMD path (see the file comment).
template <class T>
T sum(const T* x, std::size_t n) noexcept {
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const std::size_t body = n / w * w;
    B acc(T(0));
    for (std::size_t i = 0; i < body; i += w) acc += B::load_unaligned(x + i);
    T s = reduce_lanes(acc);
    for (std::size_t i = body; i < n; ++i) s += x[i];
    return s;
#else
    return reference::sum(x, n);
#endif
}

/// sum_i a[i] * b[i], i < n (0 when n == 0). Lane-wise fused multiply-adds on the SIMD path.
template <class T>
T dot(const T* a, const T* b, std::size_t n) noexcept {
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const std::size_t body = n / w * w;
    B acc(T(0));
    for (std::size_t i = 0; i < body; i += w) acc = xsimd::fma(B::load_unaligned(a + i), B::load_unaligned(b + i), acc);
    T s = reduce_lanes(acc);
    for (std::size_t i = body; i < n; ++i) s += a[i] * b[i];
    return s;
#else
    return reference::dot(a, b, n);
#endif
}

/// out[r] = sum_j x[r, j] for a row-major x[rows, cols] (out must not overlap x).
template <class T>
void row_sums(const T* x, std::size_t rows, std::size_t cols, T* out) noexcept {
#if SFT_KERNELS_SIMD
    for (std::size_t r = 0; r < rows; ++r) out[r] = sum(x + r * cols, cols);
#else
    reference::row_sums(x, rows, cols, out);
#endif
}

namespace serial {
/// out[j] += sum_r x[r, j] for j < cols of a row-major x with leading dimension ld >= cols, on the
/// calling thread: what each task of add_col_sums below runs on its block of columns.
template <class T>
void add_col_sums(const T* x, std::size_t rows, std::size_t cols, std::size_t ld, T* out) noexcept {
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const std::size_t body = cols / w * w;
    // Four rows per sweep over out: the rows stream in order (a column-block walk down the rows
    // would stride by a whole row per load), and out is read and written a quarter as often.
    // Each column still receives out + x0 + x1 + ... in row order, as the reference does.
    const std::size_t rows4 = rows / 4 * 4;
    std::size_t r = 0;
    for (; r < rows4; r += 4) {
        const T* x0 = x + r * ld;
        const T *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;
        for (std::size_t j = 0; j < body; j += w) {
            B acc = B::load_unaligned(out + j);
            acc += B::load_unaligned(x0 + j);
            acc += B::load_unaligned(x1 + j);
            acc += B::load_unaligned(x2 + j);
            acc += B::load_unaligned(x3 + j);
            acc.store_unaligned(out + j);
        }
        for (std::size_t j = body; j < cols; ++j) out[j] = out[j] + x0[j] + x1[j] + x2[j] + x3[j];
    }
    for (; r < rows; ++r) {
        const T* xr = x + r * ld;
        for (std::size_t j = 0; j < body; j += w) (B::load_unaligned(out + j) + B::load_unaligned(xr + j)).store_unaligned(out + j);
        for (std::size_t j = body; j < cols; ++j) out[j] += xr[j];
    }
#else
    for (std::size_t r = 0; r < rows; ++r)  // as reference::add_col_sums, with a leading dimension
        for (std::size_t j = 0; j < cols; ++j) out[j] += x[r * ld + j];
#endif
}
}  // namespace serial

/// Columns per block of the threaded column sums: a multiple of every SIMD width, so each column
/// takes the same path (SIMD body or scalar tail) as in a single-threaded call.
inline constexpr std::size_t col_block = 64;

/// f(col_begin, col_end) over blocks of columns of a [rows, cols] matrix, each block a multiple of
/// col_block columns (but the last) holding at least parallel_grain elements, on sft's pool; one
/// call f(0, cols) below 2 * parallel_grain elements. The cut depends on rows and cols only. For
/// reductions down the rows: each column is reduced by one task in row order, so the result is
/// the single-threaded one bit for bit, whatever the number of threads.
template <class F>
void parallel_col_blocks(std::size_t rows, std::size_t cols, F&& f) noexcept {
    if (rows * cols < 2 * parallel_grain || cols <= col_block) {
        if (cols) f(std::size_t(0), cols);
        return;
    }
    const std::size_t blocks = (cols + col_block - 1) / col_block;
    const std::size_t min_cols = (parallel_grain + rows - 1) / std::max<std::size_t>(rows, 1);
    const std::size_t grain = (min_cols + col_block - 1) / col_block;
    sft::detail::parallel_for(blocks, grain, [&](std::size_t b0, std::size_t b1) { f(b0 * col_block, std::min(cols, b1 * col_block)); });
}

/// out[j] += sum_r x[r, j] for a row-major x[rows, cols] (out[cols] must not overlap x): the bias
/// gradient db += column sums of dy. Vectorised across columns, rows added in order; threaded over
/// blocks of columns above 2 * parallel_grain elements (bit-identical for every thread count).
template <class T>
void add_col_sums(const T* x, std::size_t rows, std::size_t cols, T* out) noexcept {
    parallel_col_blocks(rows, cols, [=](std::size_t c0, std::size_t c1) { serial::add_col_sums(x + c0, rows, c1 - c0, cols, out + c0); });
}

/// out[j] = sum_r x[r, j] for a row-major x[rows, cols] (out[cols] must not overlap x).
template <class T>
void col_sums(const T* x, std::size_t rows, std::size_t cols, T* out) noexcept {
    std::fill(out, out + cols, T(0));
    add_col_sums(x, rows, cols, out);
}

/// out[r] = max_j x[r, j] for a row-major x[rows, cols] with cols > 0 (out must not overlap x).
/// NaNs are not guaranteed to propagate.
template <class T>
void row_max(const T* x, std::size_t rows, std::size_t cols, T* out) noexcept {
#if SFT_KERNELS_SIMD
    SFT_ASSERT(cols > 0 || rows == 0);
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    for (std::size_t r = 0; r < rows; ++r) {
        const T* row = x + r * cols;
        T m = row[0];
        std::size_t j = 0;
        if (cols >= w) {
            B vm = B::load_unaligned(row);
            j = w;
            for (const std::size_t body = cols / w * w; j < body; j += w) vm = xsimd::max(vm, B::load_unaligned(row + j));
            alignas(64) T lanes[w];
            vm.store_aligned(lanes);
            m = *std::max_element(lanes, lanes + w);
        }
        for (; j < cols; ++j) m = std::max(m, row[j]);
        out[r] = m;
    }
#else
    reference::row_max(x, rows, cols, out);
#endif
}

}  // namespace sft::kernels
