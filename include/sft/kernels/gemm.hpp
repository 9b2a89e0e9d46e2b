/// @file gemm.hpp
/// Matrix products on raw row-major memory through Eigen maps (no copies):
/// C[m, n] = alpha * op(A) * op(B) + beta * C. Internal: namespace sft::kernels.
#pragma once

#include <sft/config.hpp>

#include <Eigen/Core>

#include <cstddef>

namespace sft::kernels {

namespace detail {
template <class T>
using RowMajorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstRowMajorMap =
    Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class T, class A, class B>
void gemm_assign(const A& a, const B& b, T alpha, T beta, RowMajorMap<T>& c) noexcept {
    if (beta == T(0)) c.noalias() = alpha * (a * b);
    else {
        if (beta != T(1)) c *= beta;
        c.noalias() += alpha * (a * b);
    }
}
}  // namespace detail

/// C = alpha * op(A) op(B) + beta * C on row-major matrices with leading dimensions lda, ldb, ldc.
/// op(A) is [m, k]: A is stored [m, k], or [k, m] when trans_a. op(B) is [k, n]: B is stored
/// [k, n], or [n, k] when trans_b. beta == 0 ignores C's previous contents (NaNs included).
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
          const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) noexcept {
    using Eigen::Index;
    using detail::ConstRowMajorMap;
    if (m == 0 || n == 0) return;
    detail::RowMajorMap<T> cm(c, Index(m), Index(n), Eigen::OuterStride<>(Index(ldc)));
    if (k == 0) {
        if (beta == T(0)) cm.setZero();
        else cm *= beta;
        return;
    }
    const Index am = Index(trans_a ? k : m), an = Index(trans_a ? m : k);
    const Index bm = Index(trans_b ? n : k), bn = Index(trans_b ? k : n);
    ConstRowMajorMap<T> am_(a, am, an, Eigen::OuterStride<>(Index(lda)));
    ConstRowMajorMap<T> bm_(b, bm, bn, Eigen::OuterStride<>(Index(ldb)));
    if (!trans_a && !trans_b) detail::gemm_assign(am_, bm_, alpha, beta, cm);
    else if (!trans_a && trans_b) detail::gemm_assign(am_, bm_.transpose(), alpha, beta, cm);
    else if (trans_a && !trans_b) detail::gemm_assign(am_.transpose(), bm_, alpha, beta, cm);
    else detail::gemm_assign(am_.transpose(), bm_.transpose(), alpha, beta, cm);
}

}  // namespace sft::kernels
