#include "kernel_test_util.hpp"

#include <sft/kernels/elementwise.hpp>
#include <sft/kernels/simd.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <string>

using sft::testing::eps;
using sft::testing::kernel_sizes;
using sft::testing::TestBuffer;

TEST_CASE("kernels: the SIMD path is compiled in exactly when SFT_NO_SIMD is 0", "[kernels][simd]") {
    CHECK(sft::kernels::simd_enabled == !SFT_NO_SIMD);
    CHECK(SFT_KERNELS_SIMD == (SFT_NO_SIMD ? 0 : 1));
    const std::string arch = sft::kernels::simd_arch_name();
    INFO("compiled architecture: " << arch);
    CHECK((arch == "scalar") == !sft::kernels::simd_enabled);
}

TEMPLATE_TEST_CASE("kernels: add, sub, mul, scale match the reference bit for bit on every tail and offset", "[kernels][elementwise]",
                   float, double) {
    using T = TestType;
    namespace k = sft::kernels;
    for (std::size_t offset : {0u, 1u, 3u})
        for (std::size_t n : kernel_sizes) {
            INFO("n = " << n << ", offset = " << offset);
            TestBuffer<T> a(n, offset), b(n, offset + 1), y(n, offset), r(n, 0);
            a.fill_uniform(n + 1, -3, 3);
            b.fill_uniform(n + 2, -3, 3);
            auto check = [&](const char* what) {
                INFO(what);
                for (std::size_t i = 0; i < n; ++i) REQUIRE(y[i] == r[i]);
                CHECK(y.guards_intact());
            };
            k::add(a.data(), b.data(), y.data(), n);
            k::reference::add(a.data(), b.data(), r.data(), n);
            for (std::size_t i = 0; i < n; ++i) REQUIRE(r[i] == a[i] + b[i]);
            check("add");
            k::sub(a.data(), b.data(), y.data(), n);
            k::reference::sub(a.data(), b.data(), r.data(), n);
            for (std::size_t i = 0; i < n; ++i) REQUIRE(r[i] == a[i] - b[i]);
            check("sub");
            k::mul(a.data(), b.data(), y.data(), n);
            k::reference::mul(a.data(), b.data(), r.data(), n);
            for (std::size_t i = 0; i < n; ++i) REQUIRE(r[i] == a[i] * b[i]);
            check("mul");
            k::scale(a.data(), T(-0.75), y.data(), n);
            k::reference::scale(a.data(), T(-0.75), r.data(), n);
            for (std::size_t i = 0; i < n; ++i) REQUIRE(r[i] == T(-0.75) * a[i]);
            check("scale");
        }
}

TEMPLATE_TEST_CASE("kernels: elementwise ops work in place", "[kernels][elementwise]", float, double) {
    using T = TestType;
    namespace k = sft::kernels;
    for (std::size_t n : {17u, 33u, 1031u}) {
        TestBuffer<T> a(n, 1), b(n, 2);
        a.fill_uniform(7, -2, 2);
        b.fill_uniform(8, -2, 2);
        const auto a0 = a.vec(), b0 = b.vec();
        k::add(a.data(), b.data(), a.data(), n);  // a += b
        for (std::size_t i = 0; i < n; ++i) REQUIRE(a[i] == a0[i] + b0[i]);
        k::mul(a.data(), b.data(), b.data(), n);  // b = a * b
        for (std::size_t i = 0; i < n; ++i) REQUIRE(b[i] == (a0[i] + b0[i]) * b0[i]);
        k::scale(a.data(), T(2), a.data(), n);
        for (std::size_t i = 0; i < n; ++i) REQUIRE(a[i] == T(2) * (a0[i] + b0[i]));
        CHECK(a.guards_intact());
        CHECK(b.guards_intact());
    }
}

TEMPLATE_TEST_CASE("kernels: axpy matches y + alpha x within one rounding", "[kernels][elementwise]", float, double) {
    using T = TestType;
    namespace k = sft::kernels;
    for (std::size_t offset : {0u, 1u})
        for (std::size_t n : kernel_sizes) {
            INFO("n = " << n << ", offset = " << offset);
            TestBuffer<T> x(n, offset), y(n, offset + 2), r(n, 0);
            x.fill_uniform(3 * n + 1, -2, 2);
            y.fill_uniform(3 * n + 2, -2, 2);
            for (std::size_t i = 0; i < n; ++i) r[i] = y[i];
            const auto y0 = y.vec();
            const T alpha = T(0.3);
            k::axpy(alpha, x.data(), y.data(), n);
            k::reference::axpy(alpha, x.data(), r.data(), n);
            for (std::size_t i = 0; i < n; ++i) {
                // Exact value in long double; a fused or an unfused evaluation is within 2 roundings.
                const long double exact = static_cast<long double>(y0[i]) + static_cast<long double>(alpha) * x[i];
                const long double bound = 2 * eps<T>() * (std::fabs(static_cast<long double>(y0[i])) + std::fabs(alpha * x[i]));
                REQUIRE(std::fabs(y[i] - exact) <= bound);
                REQUIRE(std::fabs(r[i] - exact) <= bound);
            }
            CHECK(y.guards_intact());
        }
}

TEMPLATE_TEST_CASE("kernels: add_bias adds the bias to every row", "[kernels][elementwise]", float, double) {
    using T = TestType;
    namespace k = sft::kernels;
    for (std::size_t rows : {0u, 1u, 5u})
        for (std::size_t cols : {1u, 7u, 16u, 17u, 65u}) {
            INFO(rows << " x " << cols);
            TestBuffer<T> y(rows * cols, 1), b(cols, 3), r(rows * cols, 0);
            y.fill_uniform(rows * 100 + cols, -1, 1);
            b.fill_uniform(cols, -1, 1);
            for (std::size_t i = 0; i < rows * cols; ++i) r[i] = y[i];
            const auto y0 = y.vec();
            k::add_bias(y.data(), b.data(), rows, cols);
            k::reference::add_bias(r.data(), b.data(), rows, cols);
            for (std::size_t i = 0; i < rows; ++i)
                for (std::size_t j = 0; j < cols; ++j) {
                    REQUIRE(y[i * cols + j] == y0[i * cols + j] + b[j]);
                    REQUIRE(r[i * cols + j] == y[i * cols + j]);
                }
            CHECK(y.guards_intact());
        }
}
