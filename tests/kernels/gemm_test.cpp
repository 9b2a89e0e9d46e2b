#include "kernel_test_util.hpp"

#include <sft/kernels/gemm.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

using sft::testing::eps;
using sft::testing::TestBuffer;

namespace {
/// C = alpha op(A) op(B) + beta C in long double, element by element, with the sum of |terms| for the error bound.
template <class T>
void naive_gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda, const T* b,
                std::size_t ldb, T beta, const T* c0, std::size_t ldc, std::vector<long double>& out, std::vector<long double>& mag) {
    out.assign(m * n, 0);
    mag.assign(m * n, 0);
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            long double s = 0, sa = 0;
            for (std::size_t p = 0; p < k; ++p) {
                const long double av = ta ? a[p * lda + i] : a[i * lda + p];
                const long double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                s += av * bv;
                sa += std::fabs(av * bv);
            }
            const long double cv = beta == T(0) ? 0.0L : static_cast<long double>(beta) * c0[i * ldc + j];
            out[i * n + j] = alpha * s + cv;
            mag[i * n + j] = std::fabs(alpha) * sa + std::fabs(cv);
        }
}
}  // namespace

TEMPLATE_TEST_CASE("kernels: gemm matches a long double triple loop for every transpose, odd sizes and strides", "[kernels][gemm]",
                   float, double) {
    using T = TestType;
    struct Case {
        std::size_t m, n, k;
    };
    const Case cases[] = {{1, 1, 1}, {3, 5, 7}, {17, 1, 33}, {1, 31, 9}, {33, 17, 65}, {64, 65, 63}};
    for (const auto& cs : cases)
        for (int trans = 0; trans < 4; ++trans)
            for (int variant = 0; variant < 3; ++variant) {
                const bool ta = trans & 1, tb = trans & 2;
                const std::size_t m = cs.m, n = cs.n, k = cs.k;
                // Leading dimensions wider than the stored rows: the maps must honour them.
                const std::size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
                const T alpha = variant == 0 ? T(1) : T(-0.5);
                const T beta = variant == 0 ? T(0) : (variant == 1 ? T(1) : T(0.25));
                INFO("m " << m << " n " << n << " k " << k << " ta " << ta << " tb " << tb << " alpha " << alpha << " beta " << beta);
                TestBuffer<T> a((ta ? k : m) * lda, 1), b((tb ? n : k) * ldb, 2), c(m * ldc, 1);
                a.fill_uniform(m * 7 + n + trans, -1, 1);
                b.fill_uniform(k * 5 + n + trans, -1, 1);
                c.fill_uniform(n * 3 + variant, -1, 1);
                if (beta == T(0))
                    for (std::size_t i = 0; i < m * ldc; i += 3) c[i] = std::numeric_limits<T>::quiet_NaN();  // beta 0 ignores C
                const std::vector<T> c0 = c.vec();
                std::vector<long double> want, mag;
                naive_gemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c0.data(), ldc, want, mag);
                sft::kernels::gemm<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
                TestBuffer<T> cr(m * ldc, 0);
                for (std::size_t i = 0; i < m * ldc; ++i) cr[i] = c0[i];
                sft::kernels::reference::gemm<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, cr.data(), ldc);
                for (std::size_t i = 0; i < m; ++i) {
                    for (std::size_t j = 0; j < n; ++j) {
                        INFO("C(" << i << ", " << j << ")");
                        REQUIRE(std::fabs(c[i * ldc + j] - want[i * n + j]) <= (k + 2) * eps<T>() * mag[i * n + j] + 1e-30);
                        REQUIRE(std::fabs(cr[i * ldc + j] - want[i * n + j]) <= (k + 2) * eps<T>() * mag[i * n + j] + 1e-30);
                    }
                    for (std::size_t j = n; j < ldc && i * ldc + j < m * ldc; ++j)  // padding between rows untouched
                        REQUIRE((std::isnan(c0[i * ldc + j]) ? std::isnan(c[i * ldc + j]) : c[i * ldc + j] == c0[i * ldc + j]));
                }
                CHECK(c.guards_intact());
            }
}

TEST_CASE("kernels: gemm with k == 0 scales C by beta, with m or n == 0 does nothing", "[kernels][gemm]") {
    // C is 2x2 inside a larger heap buffer: a std::vector of exactly 4 doubles makes GCC 12 warn
    // (-Warray-bounds) about Eigen's runtime-guarded 512-bit path.
    std::vector<double> buf(64, 0.0);
    double* c = buf.data();
    const auto set = [&](std::vector<double> v) { std::copy(v.begin(), v.end(), c); };
    const auto get = [&] { return std::vector<double>(c, c + 4); };
    const double* none = nullptr;
    set({1, 2, 3, 4});
    sft::kernels::gemm<double>(false, false, 2, 2, 0, 1.0, none, 1, none, 2, 0.5, c, 2);
    CHECK(get() == std::vector<double>{0.5, 1, 1.5, 2});
    sft::kernels::gemm<double>(false, false, 2, 2, 0, 1.0, none, 1, none, 2, 0.0, c, 2);
    CHECK(get() == std::vector<double>{0, 0, 0, 0});
    set({1, 2, 3, 4});
    sft::kernels::gemm<double>(false, false, 0, 2, 3, 1.0, none, 3, none, 2, 0.0, c, 2);
    sft::kernels::gemm<double>(false, false, 2, 0, 3, 1.0, none, 3, none, 2, 0.0, c, 2);
    CHECK(get() == std::vector<double>{1, 2, 3, 4});
}

TEST_CASE("kernels: gemm on a hand-computed product", "[kernels][gemm]") {
    // [[1, 2], [3, 4]] x [[5, 6], [7, 8]] = [[19, 22], [43, 50]]; with B transposed: [[17, 23], [39, 53]].
    const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
    std::vector<float> c(4);
    sft::kernels::gemm<float>(false, false, 2, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2);
    CHECK(c == std::vector<float>{19, 22, 43, 50});
    sft::kernels::gemm<float>(false, true, 2, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2);
    CHECK(c == std::vector<float>{17, 23, 39, 53});
    sft::kernels::gemm<float>(true, false, 2, 2, 2, 2.0f, a.data(), 2, b.data(), 2, 1.0f, c.data(), 2);  // += 2 A^T B
    CHECK(c == std::vector<float>{17 + 2 * 26, 23 + 2 * 30, 39 + 2 * 38, 53 + 2 * 44});
}
