#include "kernel_test_util.hpp"

#include <sft/kernels/reduce.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

using sft::testing::eps;
using sft::testing::kernel_sizes;
using sft::testing::TestBuffer;

namespace {
namespace k = sft::kernels;

/// Multiples of 1/8 in [-64, 64]: every partial sum of up to a few thousand of them is exact in
/// float, so any summation order gives the exact result and a wrong or missing element shows.
template <class T>
void fill_exact(TestBuffer<T>& b, std::uint64_t seed) {
    sft::Rng rng(seed);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<T>(static_cast<double>(rng.randint(1025)) / 8.0 - 64.0);
}
}  // namespace

TEMPLATE_TEST_CASE("kernels: sum and dot are exact on exactly representable data, every tail and offset", "[kernels][reduce]", float,
                   double) {
    using T = TestType;
    for (std::size_t offset : {0u, 1u, 2u})
        for (std::size_t n : kernel_sizes) {
            INFO("n = " << n << ", offset = " << offset);
            TestBuffer<T> x(n, offset), y(n, offset + 1);
            fill_exact(x, n + 1);
            sft::Rng rng(n + 2);  // small integers: the products are eighths below 257, their sums exact in float
            for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<T>(static_cast<int>(rng.randint(9)) - 4);
            long double s = 0, d = 0;
            for (std::size_t i = 0; i < n; ++i) {
                s += x[i];
                d += static_cast<long double>(x[i]) * y[i];
            }
            CHECK(static_cast<long double>(k::sum(x.data(), n)) == s);
            CHECK(static_cast<long double>(k::reference::sum(x.data(), n)) == s);
            CHECK(static_cast<long double>(k::dot(x.data(), y.data(), n)) == d);
            CHECK(static_cast<long double>(k::reference::dot(x.data(), y.data(), n)) == d);
            CHECK(x.guards_intact());
        }
}

TEMPLATE_TEST_CASE("kernels: sum and dot of random data are within the lane-wise error bound", "[kernels][reduce]", float, double) {
    using T = TestType;
    for (std::size_t n : kernel_sizes) {
        INFO("n = " << n);
        TestBuffer<T> x(n, 1), y(n, 3);
        x.fill_uniform(10 * n + 1, -1, 1);
        y.fill_uniform(10 * n + 2, -1, 1);
        long double s = 0, abs_s = 0, d = 0, abs_d = 0;
        for (std::size_t i = 0; i < n; ++i) {
            s += x[i];
            abs_s += std::fabs(x[i]);
            d += static_cast<long double>(x[i]) * y[i];
            abs_d += std::fabs(static_cast<long double>(x[i]) * y[i]);
        }
        // Lanes of n / 16 elements, then at most 16 lanes and a tail of up to 15 (reduce.hpp).
        const long double bound = (static_cast<long double>(n) / 16 + 40) * eps<T>();
        CHECK(std::fabs(k::sum(x.data(), n) - s) <= bound * abs_s);
        CHECK(std::fabs(k::dot(x.data(), y.data(), n) - d) <= bound * abs_d);
        // The references accumulate in double, sequentially, then round once to T.
        const long double ref_bound = eps<T>() * std::fabs(s) + n * eps<double>() * abs_s;
        CHECK(std::fabs(k::reference::sum(x.data(), n) - s) <= ref_bound);
    }
}

TEMPLATE_TEST_CASE("kernels: row_sums, col_sums, add_col_sums and row_max on odd shapes", "[kernels][reduce]", float, double) {
    using T = TestType;
    for (std::size_t rows : {0u, 1u, 3u, 17u})
        for (std::size_t cols : {1u, 3u, 8u, 15u, 16u, 17u, 33u, 65u, 130u}) {
            INFO(rows << " x " << cols);
            TestBuffer<T> x(rows * cols, 1);
            fill_exact(x, rows * 1000 + cols);
            TestBuffer<T> rs(rows, 2), rm(rows, 1), cs(cols, 3), acc(cols, 1), acc_ref(cols, 0);
            k::row_sums(x.data(), rows, cols, rs.data());
            k::row_max(x.data(), rows, cols, rm.data());
            k::col_sums(x.data(), rows, cols, cs.data());
            acc.fill_uniform(cols, -1, 1);
            const auto acc0 = acc.vec();
            for (std::size_t j = 0; j < cols; ++j) acc_ref[j] = acc[j];
            k::add_col_sums(x.data(), rows, cols, acc.data());
            k::reference::add_col_sums(x.data(), rows, cols, acc_ref.data());
            for (std::size_t r = 0; r < rows; ++r) {
                long double s = 0;
                T m = x[r * cols];
                for (std::size_t j = 0; j < cols; ++j) {
                    s += x[r * cols + j];
                    m = std::max(m, x[r * cols + j]);
                }
                CHECK(static_cast<long double>(rs[r]) == s);
                CHECK(rm[r] == m);
            }
            for (std::size_t j = 0; j < cols; ++j) {
                long double s = 0;
                for (std::size_t r = 0; r < rows; ++r) s += x[r * cols + j];
                CHECK(static_cast<long double>(cs[j]) == s);
                CHECK(acc[j] == acc_ref[j]);  // same additions in the same order on both paths
                long double abs_s = std::fabs(acc0[j]);
                for (std::size_t r = 0; r < rows; ++r) abs_s += std::fabs(x[r * cols + j]);
                CHECK(std::fabs(acc[j] - (acc0[j] + s)) <= (rows + 1) * eps<T>() * abs_s);  // rows roundings
            }
            CHECK(x.guards_intact());
            CHECK(rs.guards_intact());
            CHECK(rm.guards_intact());
            CHECK(cs.guards_intact());
            CHECK(acc.guards_intact());
        }
}

TEMPLATE_TEST_CASE("kernels: row_max finds the maximum in any lane and in the tail", "[kernels][reduce]", float, double) {
    using T = TestType;
    for (std::size_t cols : {1u, 7u, 16u, 17u, 31u, 33u, 100u})
        for (std::size_t at = 0; at < cols; ++at) {
            std::vector<T> row(cols, T(-1000));
            for (std::size_t j = 0; j < cols; ++j) row[j] = T(-1000) - T(j);  // all negative, decreasing
            row[at] = T(-3.5);
            T m = 0;
            k::row_max(row.data(), 1, cols, &m);
            INFO("cols = " << cols << ", max at " << at);
            REQUIRE(m == T(-3.5));
        }
}

TEST_CASE("kernels: add_col_sums accumulates like a bias gradient", "[kernels][reduce]") {
    // Two calls add up, as db does over backward calls.
    std::vector<float> g = {1, 2, 3, 4, 5, 6};  // [2, 3]
    std::vector<float> db = {0.5f, 0, 0};
    k::add_col_sums(g.data(), 2, 3, db.data());
    CHECK(db == std::vector<float>{5.5f, 7, 9});
    k::add_col_sums(g.data(), 2, 3, db.data());
    CHECK(db == std::vector<float>{10.5f, 14, 18});
    k::col_sums(g.data(), 2, 3, db.data());
    CHECK(db == std::vector<float>{5, 7, 9});
}
