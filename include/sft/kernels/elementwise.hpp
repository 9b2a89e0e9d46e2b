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
#pragma once

#include <sft/config.hpp>
#include <sft/kernels/simd.hpp>

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

/// y[r, j] += bias[j] for a row-major y[rows, cols] (bias[cols] must not overlap y): the bias add
/// of a linear layer, y = x W^T + b.
template <class T>
void add_bias(T* y, const T* bias, std::size_t rows, std::size_t cols) noexcept {
    for (std::size_t r = 0; r < rows; ++r) add(y + r * cols, bias, y + r * cols, cols);
}

}  // namespace sft::kernels
