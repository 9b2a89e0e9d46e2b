#include "kernel_test_util.hpp"

#include <sft/kernels/im2col.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

using sft::kernels::ConvGeometry;
using sft::testing::TestBuffer;

TEST_CASE("kernels: ConvGeometry output sizes follow floor((H + 2P - K) / S) + 1", "[kernels][im2col]") {
    ConvGeometry g;
    g.channels = 2, g.height = 5, g.width = 7, g.kernel_h = 3, g.kernel_w = 2, g.stride_h = 2, g.stride_w = 3, g.pad_h = 1, g.pad_w = 0;
    CHECK(g.out_h() == 3);  // (5 + 2 - 3) / 2 + 1
    CHECK(g.out_w() == 2);  // (7 - 2) / 3 + 1
    CHECK(g.col_rows() == 12);
    CHECK(g.col_cols() == 6);
    g.kernel_w = 8;  // wider than the padded image
    CHECK(g.out_w() == 0);
}

TEST_CASE("kernels: im2col on a hand-computed example", "[kernels][im2col]") {
    // One 3x3 channel 1..9, a 2x2 kernel, stride 1, padding 1: output 4x4.
    ConvGeometry g;
    g.height = g.width = 3, g.kernel_h = g.kernel_w = 2, g.pad_h = g.pad_w = 1;
    const std::vector<float> image = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    std::vector<float> col(g.col_rows() * g.col_cols(), -1.0f);
    sft::kernels::im2col(g, image.data(), col.data());
    // Row (ki=0, kj=0): image[oy - 1][ox - 1].
    const std::vector<float> row0 = {0, 0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9};
    // Row (ki=1, kj=1): image[oy][ox].
    const std::vector<float> row3 = {1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0, 0, 0, 0, 0};
    CHECK(std::vector<float>(col.begin(), col.begin() + 16) == row0);
    CHECK(std::vector<float>(col.begin() + 48, col.end()) == row3);
}

TEMPLATE_TEST_CASE("kernels: im2col and col2im equal their scalar references and are adjoint, over many geometries",
                   "[kernels][im2col]", float, double) {
    using T = TestType;
    sft::Rng rng(77);
    int checked = 0;
    for (int trial = 0; trial < 300; ++trial) {
        ConvGeometry g;
        g.channels = 1 + rng.randint(3);
        g.height = 1 + rng.randint(9);
        g.width = 1 + rng.randint(21);
        g.kernel_h = 1 + rng.randint(4);
        g.kernel_w = 1 + rng.randint(4);
        g.stride_h = 1 + rng.randint(3);
        g.stride_w = 1 + rng.randint(3);
        g.pad_h = rng.randint(4);  // padding up to the kernel size and beyond
        g.pad_w = rng.randint(4);
        const std::size_t img = g.channels * g.height * g.width, cols = g.col_rows() * g.col_cols();
        INFO("C " << g.channels << " H " << g.height << " W " << g.width << " K " << g.kernel_h << "x" << g.kernel_w << " S "
                  << g.stride_h << "," << g.stride_w << " P " << g.pad_h << "," << g.pad_w);
        TestBuffer<T> image(img, 1), col(cols, 1), col_ref(cols, 0), dcol(cols, 3), back(img, 1), back_ref(img, 0);
        image.fill_uniform(trial, -1, 1);
        dcol.fill_uniform(trial + 1000, -1, 1);
        sft::kernels::im2col(g, image.data(), col.data());
        sft::kernels::reference::im2col(g, image.data(), col_ref.data());
        for (std::size_t i = 0; i < cols; ++i) REQUIRE(col[i] == col_ref[i]);
        for (std::size_t i = 0; i < img; ++i) back[i] = back_ref[i] = T(0);
        sft::kernels::col2im(g, dcol.data(), back.data());
        sft::kernels::reference::col2im(g, dcol.data(), back_ref.data());
        for (std::size_t i = 0; i < img; ++i) REQUIRE(back[i] == back_ref[i]);  // same additions in the same order
        // Adjoint: <im2col(x), c> == <x, col2im(c)>.
        long double lhs = 0, rhs = 0, mag = 0;
        for (std::size_t i = 0; i < cols; ++i) {
            lhs += static_cast<long double>(col[i]) * dcol[i];
            mag += std::fabs(static_cast<long double>(col[i]) * dcol[i]);
        }
        for (std::size_t i = 0; i < img; ++i) rhs += static_cast<long double>(image[i]) * back[i];
        REQUIRE(std::fabs(lhs - rhs) <= 64 * sft::testing::eps<T>() * (mag + 1));
        CHECK(col.guards_intact());
        CHECK(back.guards_intact());
        ++checked;
    }
    CHECK(checked == 300);
}

TEST_CASE("kernels: im2col and col2im with a leading dimension place each sample's columns side by side", "[kernels][im2col]") {
    sft::Rng rng(91);
    for (int trial = 0; trial < 100; ++trial) {
        ConvGeometry g;
        g.channels = 1 + rng.randint(3);
        g.height = 1 + rng.randint(8);
        g.width = 1 + rng.randint(12);
        g.kernel_h = 1 + rng.randint(3);
        g.kernel_w = 1 + rng.randint(3);
        g.stride_h = 1 + rng.randint(2);
        g.stride_w = 1 + rng.randint(2);
        g.pad_h = rng.randint(3);
        g.pad_w = rng.randint(3);
        const std::size_t k = g.col_rows(), p = g.col_cols(), img = g.channels * g.height * g.width;
        const std::size_t samples = 1 + rng.randint(3), ld = samples * p + rng.randint(3);  // extra columns stay untouched
        INFO("trial " << trial << ": " << samples << " samples, P " << p << ", ld " << ld);
        TestBuffer<float> images(samples * img, 1), wide(k * ld, 0), single(k * p, 0), dcol(k * ld, 0);
        images.fill_uniform(trial, -1, 1);
        dcol.fill_uniform(trial + 500, -1, 1);
        const float marker = 12345.0f;
        for (std::size_t i = 0; i < k * ld; ++i) wide[i] = marker;
        for (std::size_t s = 0; s < samples; ++s) sft::kernels::im2col(g, images.data() + s * img, wide.data() + s * p, ld);
        for (std::size_t s = 0; s < samples; ++s) {
            sft::kernels::reference::im2col(g, images.data() + s * img, single.data());
            for (std::size_t r = 0; r < k; ++r)
                for (std::size_t c = 0; c < p; ++c) REQUIRE(wide[r * ld + s * p + c] == single[r * p + c]);
        }
        for (std::size_t r = 0; r < k; ++r)
            for (std::size_t c = samples * p; c < ld; ++c) REQUIRE(wide[r * ld + c] == marker);
        // col2im from the wide matrix: the same sums as from each sample's own contiguous block.
        for (std::size_t s = 0; s < samples; ++s) {
            std::vector<float> a(img, 0.0f), b(img, 0.0f);
            sft::kernels::col2im(g, dcol.data() + s * p, a.data(), ld);
            for (std::size_t r = 0; r < k; ++r)
                for (std::size_t c = 0; c < p; ++c) single[r * p + c] = dcol[r * ld + s * p + c];
            sft::kernels::reference::col2im(g, single.data(), b.data());
            for (std::size_t i = 0; i < img; ++i) REQUIRE(a[i] == b[i]);
        }
        CHECK(wide.guards_intact());
    }
}
