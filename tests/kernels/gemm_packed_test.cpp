#include "kernel_test_util.hpp"

#include <sft/kernels/gemm.hpp>
#include <sft/kernels/gemm_packed.hpp>
#include <sft/parallel.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

using sft::testing::eps;
using sft::testing::TestBuffer;

namespace {

/// Restores the default thread count when a test ends.
struct ThreadCountGuard {
    ~ThreadCountGuard() { sft::set_num_threads(sft::detail::hardware_threads()); }
};

/// C = alpha op(A) op(B) + beta C in long double, with the sum of |terms| for the error bound.
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

struct Case {
    std::size_t m, n, k;
    std::size_t ldb_pad = 2;  ///< ldb = (tb ? k : n) + ldb_pad
};

/// One product checked against the long double loop and against Eigen (kernels::gemm), with the
/// padding between rows of C and the guards around every buffer untouched; returns C.
template <class T>
std::vector<T> check_product(const Case& cs, bool ta, bool tb, T alpha, T beta, std::uint64_t seed) {
    const std::size_t m = cs.m, n = cs.n, k = cs.k;
    const std::size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + cs.ldb_pad, ldc = n + 5;
    INFO("m " << m << " n " << n << " k " << k << " ta " << ta << " tb " << tb << " alpha " << alpha << " beta " << beta);
    TestBuffer<T> a((ta ? k : m) * lda, 1), b((tb ? n : k) * ldb, 2), c(m * ldc, 1);
    a.fill_uniform(seed, -1, 1);
    b.fill_uniform(seed + 1, -1, 1);
    c.fill_uniform(seed + 2, -1, 1);
    if (beta == T(0))
        for (std::size_t i = 0; i < m * ldc; i += 3) c[i] = std::numeric_limits<T>::quiet_NaN();  // beta 0 ignores C
    const std::vector<T> c0 = c.vec();
    std::vector<long double> want, mag;
    naive_gemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c0.data(), ldc, want, mag);
    std::vector<T> eigen = c0;
    sft::kernels::gemm_eigen<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, eigen.data(), ldc);
    sft::kernels::gemm_packed<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            INFO("C(" << i << ", " << j << ")");
            const long double bound = (k + 2) * eps<T>() * mag[i * n + j] + 1e-30;
            REQUIRE(std::fabs(c[i * ldc + j] - want[i * n + j]) <= bound);
            REQUIRE(std::fabs(c[i * ldc + j] - static_cast<long double>(eigen[i * ldc + j])) <= 2 * bound);
        }
        for (std::size_t j = n; j < ldc && i * ldc + j < m * ldc; ++j)  // padding between rows untouched
            REQUIRE((std::isnan(c0[i * ldc + j]) ? std::isnan(c[i * ldc + j]) : c[i * ldc + j] == c0[i * ldc + j]));
    }
    REQUIRE(a.guards_intact());
    REQUIRE(b.guards_intact());
    REQUIRE(c.guards_intact());
    return c.vec();
}

}  // namespace

TEMPLATE_TEST_CASE("kernels: gemm_packed matches a long double loop and Eigen (gemm_eigen) for every transpose, odd sizes, strides, alpha and beta",
                   "[kernels][gemm_packed]", float, double) {
    using T = TestType;
    // Sizes around the micro-tile (MR rows, NR columns), several k blocks (kc_max is 256 floats,
    // 128 doubles) and an uneven last one, and an A block taller than mc_max (240).
    const Case cases[] = {{1, 1, 1},   {3, 5, 7},    {17, 1, 33},  {1, 31, 9},   {13, 33, 65}, {12, 32, 16},
                          {25, 65, 63}, {24, 64, 300}, {37, 70, 513}, {250, 40, 20}, {7, 100, 129}, {128, 10, 256}};
    std::uint64_t seed = 1;
    for (const auto& cs : cases)
        for (int trans = 0; trans < 4; ++trans)
            for (int variant = 0; variant < 4; ++variant) {
                const T alpha = variant == 0 || variant == 3 ? T(1) : T(-0.5);
                const T beta = variant == 0 ? T(0) : (variant == 1 ? T(1) : (variant == 2 ? T(0.25) : T(-2)));
                check_product<T>(cs, trans & 1, trans & 2, alpha, beta, seed += 3);
            }
}

TEMPLATE_TEST_CASE("kernels: gemm_packed gives bit-identical results at 1, 2, 3 and 4 threads", "[kernels][gemm_packed][thread_pool]",
                   float, double) {
    using T = TestType;
    ThreadCountGuard guard;
    // Large enough to be split between threads (> 2 MFLOP): along n with op(A) packed once and
    // shared (several k blocks; more rows than one A block, mc_max 240), or along m; edge tiles.
    const Case cases[] = {{128, 512, 100}, {301, 67, 270}, {96, 203, 520}, {250, 700, 40}};
    for (const auto& cs : cases)
        for (int trans = 0; trans < 4; ++trans) {
            std::vector<T> first;
            for (std::size_t threads : {1, 2, 3, 4}) {
                sft::set_num_threads(threads);
                INFO("threads " << threads);
                const std::vector<T> c = check_product<T>(cs, trans & 1, trans & 2, T(1), T(0.5), 99);
                if (first.empty()) first = c;
                else REQUIRE(std::memcmp(c.data(), first.data(), c.size() * sizeof(T)) == 0);
            }
        }
}

TEMPLATE_TEST_CASE("kernels: gemm_packed computes edge tiles bit-identically to full tiles, with beta, bias and ReLU",
                   "[kernels][gemm_packed]", float, double) {
    using T = TestType;
    using Ep = sft::kernels::gemm_detail::Epilogue<T>;
    using Bl = sft::kernels::gemm_detail::Blocking<T>;
    // A product of whole micro-tiles, then its top-left corners of odd sizes: the corner's last
    // rows and columns fall into edge tiles (masked loads and stores on AVX-512, a local copy
    // elsewhere), yet every element must come out as in the full product. m <= n keeps x W^T on
    // the same path in both; k = 300 gives two k blocks in float, three in double. On AVX-512
    // (12 x 32 tiles) edge tiles run narrower instances of the micro-kernels (4 or 8 rows, 16
    // columns; x W^T's transposed kernel: 4 or 8 of C's columns): the corners reach each of them,
    // full and masked.
    const std::size_t M = 3 * Bl::mr, N = 3 * Bl::nr, K = 300;
    const std::size_t corners[][2] = {{1, 1},
                                      {Bl::mr - 1, Bl::nr + 1},
                                      {Bl::mr + 1, Bl::nr - 1},
                                      {2 * Bl::mr + Bl::mr / 2 + 1, 3 * Bl::nr - 3},
                                      {M - 1, N - 1},
                                      {Bl::mr * 2 / 3, Bl::nr / 2},
                                      {Bl::mr / 3, Bl::nr / 2 + 1},
                                      {Bl::mr / 3 + 1, Bl::nr / 2 - 1},
                                      {Bl::mr + Bl::mr / 3, Bl::nr + Bl::nr / 2}};
    for (int trans = 0; trans < 4; ++trans) {
        const bool ta = trans & 1, tb = trans & 2;
        const std::size_t lda = ta ? M : K, ldb = tb ? K : N;
        TestBuffer<T> a((ta ? K : M) * lda, 0), b((tb ? N : K) * ldb, 0), c0(M * N, 0), bias(N, 0);
        a.fill_uniform(11, -1, 1);
        b.fill_uniform(12, -1, 1);
        c0.fill_uniform(13, -1, 1);
        bias.fill_uniform(14, -1, 1);
        // beta 0 and 1 without bias: full tiles take micro_kernel's update without multiplies,
        // edge tiles the general one.
        for (int variant = 0; variant < 4; ++variant) {
            const T beta = variant == 0 ? T(0) : variant == 3 ? T(1) : T(0.5);
            const Ep ep = variant == 2 ? Ep{bias.data(), true} : Ep{};
            std::vector<T> full = c0.vec();
            sft::kernels::gemm_packed<T>(ta, tb, M, N, K, T(1), a.data(), lda, b.data(), ldb, beta, full.data(), N, ep);
            for (const auto& corner : corners) {
                const std::size_t m = corner[0], n = corner[1];
                INFO("trans_a " << ta << " trans_b " << tb << " beta " << beta << " bias+relu " << (variant == 2) << " corner " << m << " x " << n);
                TestBuffer<T> c(M * N, 1);
                std::copy(c0.data(), c0.data() + M * N, c.data());
                sft::kernels::gemm_packed<T>(ta, tb, m, n, K, T(1), a.data(), lda, b.data(), ldb, beta, c.data(), N, ep);
                for (std::size_t i = 0; i < M; ++i)
                    for (std::size_t j = 0; j < N; ++j) {
                        INFO("C(" << i << ", " << j << ")");
                        const T want = i < m && j < n ? full[i * N + j] : c0[i * N + j];  // outside the corner: untouched
                        REQUIRE(std::memcmp(&c[i * N + j], &want, sizeof(T)) == 0);
                    }
                REQUIRE(c.guards_intact());
            }
        }
    }
}

TEMPLATE_TEST_CASE("kernels: gemm_packed computes every row of C the same way whatever block of rows it is in, on either micro-kernel",
                   "[kernels][gemm_packed]", float, double) {
    // Sequential's row-parallel runs compute a layer's product block of rows by block of rows and
    // promise the bits of the whole product. A block can take the other micro-kernel than the
    // whole: 130 x 30 x 40 (x W^T) runs untransposed, its last 2 rows alone as (W x^T)^T (float,
    // AVX-512); both must do the same operations (each product term fused into the sum, found
    // to differ when xsimd's AVX-512 fma compiled to a multiply and an add at -O1).
    using T = TestType;
    using Ep = sft::kernels::gemm_detail::Epilogue<T>;
    const std::size_t shapes[][3] = {{130, 30, 40}, {130, 70, 50}, {100, 40, 70}, {130, 9, 30}, {96, 512, 300}};
    for (const auto& shape : shapes) {
        const std::size_t M = shape[0], N = shape[1], K = shape[2];
        for (int trans_b = 0; trans_b < 2; ++trans_b) {  // x W^T (a forward) and g W (an input gradient)
            const std::size_t ldb = trans_b ? K : N;
            TestBuffer<T> a(M * K, 0), b((trans_b ? N : K) * ldb, 0), bias(N, 0);
            a.fill_uniform(21, -1, 1);
            b.fill_uniform(22, -1, 1);
            bias.fill_uniform(23, -1, 1);
            for (int variant = 0; variant < 2; ++variant) {
                const Ep ep = variant == 1 ? Ep{bias.data(), true} : Ep{};
                std::vector<T> whole(M * N, T(7)), blocks(M * N, T(7));
                sft::kernels::gemm_packed<T>(false, trans_b, M, N, K, T(1), a.data(), K, b.data(), ldb, T(0), whole.data(), N, ep);
                for (const std::size_t block : {std::size_t(64), std::size_t(32), std::size_t(2), std::size_t(1)}) {
                    INFO("shape " << M << " x " << N << " x " << K << ", trans_b " << trans_b << ", bias+relu " << variant << ", blocks of " << block << " rows");
                    std::fill(blocks.begin(), blocks.end(), T(7));
                    for (std::size_t r0 = 0; r0 < M; r0 += block) {
                        const std::size_t rows = std::min(block, M - r0);
                        sft::kernels::gemm_packed<T>(false, trans_b, rows, N, K, T(1), a.data() + r0 * K, K, b.data(), ldb, T(0), blocks.data() + r0 * N, N, ep);
                    }
                    std::size_t differ = 0, first = M * N;
                    for (std::size_t i = 0; i < M * N; ++i)
                        if (std::memcmp(&whole[i], &blocks[i], sizeof(T)) != 0 && differ++ == 0) first = i;
                    INFO("first differing element: row " << first / N << ", column " << first % N);
                    CHECK(differ == 0);
                }
            }
        }
    }
}

TEMPLATE_TEST_CASE("kernels: gemm_packed packs a B whose row stride is a multiple of 1 KiB instead of reading it in place, with the same results",
                   "[kernels][gemm_packed]", float, double) {
    using T = TestType;
    using sft::kernels::gemm_detail::b_in_place_ok;
    // Rows 1 KiB or more apart share a few of L1's 64 sets: such panels are packed (fc2's weight
    // gradient, ldb = 512 floats); an odd stride (784 floats) is read in place.
    CHECK_FALSE(b_in_place_ok<float>(512, 128));
    CHECK_FALSE(b_in_place_ok<float>(256, 256));
    CHECK_FALSE(b_in_place_ok<double>(128, 128));
    CHECK(b_in_place_ok<float>(784, 256));
    CHECK(b_in_place_ok<float>(514, 256));
    CHECK(b_in_place_ok<float>(512, 8));  // a short panel fits anyway (conv's k = 9)
    ThreadCountGuard guard;
    // ldb = n + pad (B not transposed) a power of two; edge panels, several k blocks, split
    // between threads (> 2 MFLOP) along n and along m.
    const std::size_t pad = 256 / sizeof(T) * 4;  // 1 KiB
    const Case cases[] = {{20, pad - 2, 300, 2}, {256, 2 * pad - 30, 128, 30}, {128, pad, 260, pad}, {400, 33, 200, pad - 33}};
    std::uint64_t seed = 7;
    for (const auto& cs : cases)
        for (int ta = 0; ta < 2; ++ta) {
            std::vector<T> first;
            for (std::size_t threads : {1, 2, 3}) {
                sft::set_num_threads(threads);
                INFO("threads " << threads);
                const std::vector<T> c = check_product<T>(cs, ta, false, T(1), ta ? T(0) : T(0.5), seed);
                if (first.empty()) first = c;
                else REQUIRE(std::memcmp(c.data(), first.data(), c.size() * sizeof(T)) == 0);
            }
            seed += 5;
        }
}

TEST_CASE("kernels: gemm_packed with k == 0 scales C by beta, with m or n == 0 does nothing", "[kernels][gemm_packed]") {
    std::vector<double> c = {1, 2, 3, 4};
    const double* none = nullptr;
    sft::kernels::gemm_packed<double>(false, false, 2, 2, 0, 1.0, none, 1, none, 2, 0.5, c.data(), 2);
    CHECK(c == std::vector<double>{0.5, 1, 1.5, 2});
    c[1] = std::numeric_limits<double>::quiet_NaN();
    sft::kernels::gemm_packed<double>(false, false, 2, 2, 0, 1.0, none, 1, none, 2, 0.0, c.data(), 2);
    CHECK(c == std::vector<double>{0, 0, 0, 0});
    c = {1, 2, 3, 4};
    sft::kernels::gemm_packed<double>(false, false, 0, 2, 3, 1.0, none, 3, none, 2, 0.0, c.data(), 2);
    sft::kernels::gemm_packed<double>(false, false, 2, 0, 3, 1.0, none, 3, none, 2, 0.0, c.data(), 2);
    CHECK(c == std::vector<double>{1, 2, 3, 4});
}

TEST_CASE("kernels: gemm_packed on a hand-computed product", "[kernels][gemm_packed]") {
    // [[1, 2], [3, 4]] x [[5, 6], [7, 8]] = [[19, 22], [43, 50]]; with B transposed: [[17, 23], [39, 53]].
    const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
    std::vector<float> c(4);
    sft::kernels::gemm_packed<float>(false, false, 2, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2);
    CHECK(c == std::vector<float>{19, 22, 43, 50});
    sft::kernels::gemm_packed<float>(false, true, 2, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2);
    CHECK(c == std::vector<float>{17, 23, 39, 53});
    sft::kernels::gemm_packed<float>(true, false, 2, 2, 2, 2.0f, a.data(), 2, b.data(), 2, 1.0f, c.data(), 2);  // += 2 A^T B
    CHECK(c == std::vector<float>{17 + 2 * 26, 23 + 2 * 30, 39 + 2 * 38, 53 + 2 * 44});
}

TEST_CASE("kernels: a threaded product's guided tasks cover every panel once, in order, shrinking to the minimum", "[kernels][gemm_packed]") {
    using sft::kernels::gemm_detail::GuidedTasks;
    for (std::size_t panels : {1, 2, 7, 43, 44, 200}) {
        for (std::size_t threads : {1, 2, 3, 8}) {
            for (std::size_t min_panels : {1, 2, 7}) {
                INFO("panels " << panels << " threads " << threads << " min " << min_panels);
                const GuidedTasks cut{panels, threads, min_panels};
                const std::size_t count = cut.count();
                REQUIRE(count >= 1);
                std::size_t next = 0, previous = panels + 1;
                for (std::size_t i = 0; i < count; ++i) {
                    const auto [begin, size] = cut.task(i);
                    REQUIRE(begin == next);  // contiguous, in order, no gap or overlap
                    REQUIRE(size >= 1);
                    if (i + 1 < count) {
                        REQUIRE(size >= min_panels);  // only the last may be shorter
                        REQUIRE(size <= previous);    // never growing
                        REQUIRE(size >= (panels - begin + 2 * threads - 1) / (2 * threads));  // about remaining / (2 threads)
                    }
                    previous = size;
                    next += size;
                }
                REQUIRE(next == panels);
            }
        }
    }
    // fc1's forward at 2 threads: 43 panels of 12 columns, at least 2 per task.
    const GuidedTasks fc1{43, 2, 2};
    CHECK(fc1.count() == 9);
    CHECK(fc1.task(0).second == 11);
    CHECK(fc1.task(8).second == 2);
}
