/// @file kernel_test_util.hpp
/// Helpers of the kernel tests: the sizes that exercise SIMD tails, misaligned buffers with a
/// guard element after the end, random fills and error measures.
#pragma once

#include <sft/tensor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace sft::testing {

/// Sizes around every batch width up to AVX-512's 16 floats: empty, shorter than a batch, one
/// batch +-1, several batches +-1, and long runs with a tail.
inline const std::vector<std::size_t> kernel_sizes = {0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 1031};

/// A buffer of n elements starting `offset` elements past a 64-byte boundary (offset 1: a
/// misaligned pointer for every SIMD width), followed by guard elements that kernels must not touch.
template <class T>
class TestBuffer {
public:
    static constexpr std::size_t guard = 17;
    static constexpr T guard_value = T(-12345.25);

    TestBuffer(std::size_t n, std::size_t offset) : n_(n), offset_(offset), storage_({n + offset + guard}) {
        std::fill(storage_.begin(), storage_.end(), guard_value);
    }
    T* data() noexcept { return storage_.data() + offset_; }
    const T* data() const noexcept { return storage_.data() + offset_; }
    std::size_t size() const noexcept { return n_; }
    T& operator[](std::size_t i) noexcept { return data()[i]; }
    const T& operator[](std::size_t i) const noexcept { return data()[i]; }
    /// True when nothing before or after the n elements was written.
    bool guards_intact() const noexcept {
        for (std::size_t i = 0; i < offset_; ++i)
            if (storage_[i] != guard_value) return false;
        for (std::size_t i = offset_ + n_; i < storage_.numel(); ++i)
            if (storage_[i] != guard_value) return false;
        return true;
    }
    /// Uniform values in [lo, hi) from Rng(seed).
    TestBuffer& fill_uniform(std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
        Rng rng(seed);
        for (std::size_t i = 0; i < n_; ++i) data()[i] = static_cast<T>(rng.uniform(lo, hi));
        return *this;
    }
    std::vector<T> vec() const { return std::vector<T>(data(), data() + n_); }

private:
    std::size_t n_, offset_;
    Tensor<T> storage_;
};

/// max_i |a[i] - b[i]| / max(1, |b[i]|): absolute error for small values, relative for large ones.
template <class T, class U>
double max_scaled_error(const T* a, const U* b, std::size_t n) {
    double m = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const long double d = std::fabs(static_cast<long double>(a[i]) - static_cast<long double>(b[i]));
        const long double s = std::max<long double>(1.0L, std::fabs(static_cast<long double>(b[i])));
        if (std::isnan(static_cast<double>(a[i])) != std::isnan(static_cast<double>(b[i]))) return std::numeric_limits<double>::infinity();
        if (!std::isnan(static_cast<double>(a[i]))) m = std::max(m, static_cast<double>(d / s));
    }
    return m;
}

/// Machine epsilon of T as a double.
template <class T>
constexpr double eps() noexcept {
    return static_cast<double>(std::numeric_limits<T>::epsilon());
}

}  // namespace sft::testing
