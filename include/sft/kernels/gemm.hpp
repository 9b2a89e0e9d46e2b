/// @file gemm.hpp
/// Matrix products on raw row-major memory: C[m, n] = alpha * op(A) * op(B) + beta * C.
/// kernels::gemm runs sft's packed, threaded kernel (gemm_packed.hpp); kernels::gemm_eigen, the
/// same product through Eigen maps (no copies), stays as the reference of the tests.
/// Internal: namespace sft::kernels.
#pragma once

#include <sft/config.hpp>
#include <sft/kernels/gemm_packed.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <type_traits>

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

/// C = alpha * op(A) op(B) + beta * C through Eigen (single-threaded): the reference of the tests,
/// with the same contract as gemm below.
template <class T>
void gemm_eigen(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
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

namespace reference {
/// The scalar reference of gemm below: the textbook triple loop, accumulated in double for float.
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
          const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) noexcept {
    using Acc = std::conditional_t<std::is_same_v<T, float>, double, T>;
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            Acc s = 0;
            for (std::size_t p = 0; p < k; ++p)
                s += Acc(trans_a ? a[p * lda + i] : a[i * lda + p]) * Acc(trans_b ? b[j * ldb + p] : b[p * ldb + j]);
            const Acc prev = beta == T(0) ? Acc(0) : Acc(beta) * c[i * ldc + j];  // beta == 0 ignores C (NaNs included)
            c[i * ldc + j] = static_cast<T>(Acc(alpha) * s + prev);
        }
}
}  // namespace reference

/// C = alpha * op(A) op(B) + beta * C on row-major matrices with leading dimensions lda, ldb, ldc.
/// op(A) is [m, k]: A is stored [m, k], or [k, m] when trans_a. op(B) is [k, n]: B is stored
/// [k, n], or [n, k] when trans_b. beta == 0 ignores C's previous contents (NaNs included).
/// Runs on sft's thread pool (sft::set_num_threads); the result does not depend on the number
/// of threads.
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda, const T* b,
          std::size_t ldb, T beta, T* c, std::size_t ldc) noexcept {
    gemm_packed<T>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// The activation fused into gemm_bias_act's epilogue.
enum class GemmActivation { none, relu };

/// C[m, n] = act(op(A) op(B) + bias[j]) on row-major matrices (op, shapes and leading dimensions as
/// in gemm; bias has n values, or is nullptr for none; relu is max(0, x), NaN kept, as torch.relu).
/// The bias and the activation are applied to each micro-tile of C in registers, after its last
/// k block, before its one store: a linear layer's forward (x W^T + b, then ReLU) writes its
/// output once. C's previous contents are ignored (NaNs included). Threaded as gemm; the result
/// does not depend on the number of threads.
template <class T>
void gemm_bias_act(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda, const T* b,
                   std::size_t ldb, const T* bias, GemmActivation act, T* c, std::size_t ldc) noexcept {
    gemm_detail::Epilogue<T> ep;
    ep.bias = bias;
    ep.relu = act == GemmActivation::relu;
    gemm_packed<T>(trans_a, trans_b, m, n, k, T(1), a, lda, b, ldb, T(0), c, ldc, ep);
}

}  // namespace sft::kernels
