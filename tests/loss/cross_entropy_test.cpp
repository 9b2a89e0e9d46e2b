#include <sft/io/safetensors.hpp>
#include <sft/loss/cross_entropy.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

using sft::Shape;
using sft::Tensor;
using sft::loss::CrossEntropy;
using sft::loss::CrossEntropyOptions;
using sft::loss::Reduction;

namespace {

Tensor<std::int64_t> labels(const Shape& shape, const std::vector<std::int64_t>& v) { return Tensor<std::int64_t>(shape, v); }

// Checks dL/dlogits of `criterion` against central differences of its forward() in double.
void check_ce_grad(CrossEntropy<double>& criterion, const Tensor<double>& logits, const Tensor<std::int64_t>& y,
                   const std::string& what, const Tensor<double>& grad_losses = Tensor<double>()) {
    Tensor<double> x = logits.clone();
    criterion.forward(x, y);
    const Tensor<double> analytic = (grad_losses.defined() ? criterion.backward(grad_losses) : criterion.backward()).clone();
    auto loss = [&]() {
        const double total = criterion.forward(x, y, false);
        if (!grad_losses.defined()) return total;
        double s = 0.0;  // sum_i g_i l_i for reduction none
        for (std::size_t i = 0; i < grad_losses.numel(); ++i) s += grad_losses[i] * criterion.losses()[i];
        return s;
    };
    sft::testing::detail::compare_fd(what, x, analytic, loss, 1e-7, 1e-6);
}

}  // namespace

TEST_CASE("CrossEntropy: gradient matches finite differences in double", "[loss][cross_entropy][gradcheck]") {
    const Tensor<double> x = sft::testing::random_tensor({6, 5}, 11, -3.0, 3.0);
    const auto y = labels({6}, {0, 4, -100, 2, 2, 1});
    const std::vector<double> w{0.5, 2.0, 1.0, 0.25, 3.0};
    SECTION("plain") {
        CrossEntropy<double> ce;
        check_ce_grad(ce, x, labels({6}, {0, 4, 3, 2, 2, 1}), "plain");
    }
    SECTION("ignore_index") {
        CrossEntropy<double> ce;
        check_ce_grad(ce, x, y, "ignore_index");
    }
    SECTION("label smoothing") {
        CrossEntropy<double> ce(CrossEntropyOptions().label_smoothing(0.2));
        check_ce_grad(ce, x, y, "label smoothing");
    }
    SECTION("class weights and smoothing") {
        CrossEntropy<double> ce(CrossEntropyOptions().weight(w).label_smoothing(0.1));
        check_ce_grad(ce, x, y, "weights + smoothing");
    }
    SECTION("sum reduction") {
        CrossEntropy<double> ce(CrossEntropyOptions().weight(w).label_smoothing(0.3).reduction(Reduction::sum));
        check_ce_grad(ce, x, y, "sum");
    }
    SECTION("none reduction, with an upstream gradient") {
        CrossEntropy<double> ce(CrossEntropyOptions().weight(w).label_smoothing(0.1).reduction(Reduction::none));
        check_ce_grad(ce, x, y, "none", sft::testing::random_tensor({6}, 5));
        check_ce_grad(ce, x, y, "none, gradient of the sum");
    }
    SECTION("language model logits [B, T, V] with a masked prompt") {
        const Tensor<double> lm = sft::testing::random_tensor({2, 3, 4}, 12, -2.0, 2.0);
        CrossEntropy<double> ce(CrossEntropyOptions().label_smoothing(0.1));
        check_ce_grad(ce, lm, labels({2, 3}, {-100, 1, 3, -100, -100, 0}), "[B, T, V]");
    }
}

TEST_CASE("CrossEntropy: matches torch.nn.functional.cross_entropy", "[loss][cross_entropy][pytorch]") {
    const auto file = sft::io::load_safetensors_with_metadata<double>(SFT_REFERENCE_DIR "/loss_reference.safetensors");
    const auto& t = file.tensors;
    const auto& meta = file.metadata;
    double worst_f64 = 0.0, worst_f32 = 0.0;
    for (const char* name : {"ce_plain", "ce_ignore", "ce_smooth", "ce_weight", "ce_weight_smooth", "ce_sum", "ce_none",
                             "ce_ignore_class", "ce_large", "ce_lm", "ce_wide"}) {
        const std::string c = name;
        INFO(c);
        CrossEntropyOptions opt;
        opt.label_smoothing(std::stod(meta.at(c + ".label_smoothing"))).ignore_index(std::stoll(meta.at(c + ".ignore_index")));
        const std::string red = meta.at(c + ".reduction");
        opt.reduction(red == "none" ? Reduction::none : red == "sum" ? Reduction::sum : Reduction::mean);
        if (t.count(c + ".weight")) {
            const auto& w = t.at(c + ".weight");
            opt.weight(std::vector<double>(w.begin(), w.end()));
        }
        const Tensor<std::int64_t> y = t.at(c + ".targets").to<std::int64_t>();
        const Tensor<double> x = t.at(c + ".logits");
        const bool none = red == "none";

        CrossEntropy<double> ce(opt);
        const double loss = ce.forward(x, y);
        const Tensor<double> g = none ? ce.backward(t.at(c + ".grad_out")) : ce.backward();
        const Tensor<double>& ref_g = t.at(c + ".grad");
        REQUIRE(g.shape() == ref_g.shape());
        const double ref_loss = t.at(c + ".loss")[0];
        double err = std::abs(loss - ref_loss) / std::max(1.0, std::abs(ref_loss));
        for (std::size_t i = 0; i < g.numel(); ++i) err = std::max(err, std::abs(g[i] - ref_g[i]));
        if (none)
            for (std::size_t i = 0; i < y.numel(); ++i) err = std::max(err, std::abs(ce.losses()[i] - t.at(c + ".losses")[i]));
        CHECK(err < 1e-12);
        worst_f64 = std::max(worst_f64, err);

        CrossEntropy<float> cef(opt);
        const Tensor<float> xf = x.to<float>();
        const float lossf = cef.forward(xf, y);
        const Tensor<float> gf = none ? cef.backward(t.at(c + ".grad_out").to<float>()) : cef.backward();
        const Tensor<double>& ref_gf = t.at(c + ".grad_f32");
        const double ref_lossf = t.at(c + ".loss_f32")[0];
        double errf = std::abs(lossf - ref_lossf) / std::max(1.0, std::abs(ref_lossf));
        for (std::size_t i = 0; i < gf.numel(); ++i) errf = std::max(errf, std::abs(gf[i] - ref_gf[i]));
        CHECK(errf < 2e-6);
        worst_f32 = std::max(worst_f32, errf);
    }
    WARN("CrossEntropy vs PyTorch: max error " << worst_f64 << " (double), " << worst_f32 << " (float)");
}

TEST_CASE("CrossEntropy: a target outside the classes throws naming the row and the value", "[loss][cross_entropy]") {
    CrossEntropy<float> ce;
    Tensor<float> x({3, 4}, 0.5f);
    CHECK_THROWS_WITH(ce.forward(x, labels({3}, {0, 1, 4})), Catch::Contains("target 4 at row 2") && Catch::Contains("[0, 4)"));
    CHECK_THROWS_WITH(ce.forward(x, labels({3}, {-1, 1, 2})), Catch::Contains("target -1 at row 0"));
    CHECK_THROWS_WITH(ce.backward(), Catch::Contains("before forward"));  // the failed forwards computed nothing
    try {
        ce.forward(x, labels({3}, {0, 7, 1}));
        FAIL("no throw");
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::invalid_argument);
    }
    // After a good forward, a failed one leaves no stale gradient for backward().
    ce.forward(x, labels({3}, {0, 1, 2}));
    CHECK_THROWS(ce.forward(x, labels({3}, {0, 1, 9})));
    CHECK_THROWS_WITH(ce.backward(), Catch::Contains("before forward"));
    // A custom ignore_index makes -100 an invalid target.
    CrossEntropy<float> ce2(CrossEntropyOptions().ignore_index(-1));
    CHECK_THROWS_WITH(ce2.forward(x, labels({3}, {-100, 1, 2})), Catch::Contains("target -100 at row 0") && Catch::Contains("(-1)"));
    CHECK(ce2.forward(x, labels({3}, {-1, 1, 2})) == Approx(std::log(4.0f)));
}

TEST_CASE("CrossEntropy: shape errors name both shapes", "[loss][cross_entropy]") {
    CrossEntropy<float> ce;
    CHECK_THROWS_WITH(ce.forward(Tensor<float>({3, 4}), labels({2}, {0, 1})), Catch::Contains("[3, 4]") && Catch::Contains("[2]") && Catch::Contains("expected targets [3]"));
    CHECK_THROWS_WITH(ce.forward(Tensor<float>({4}), labels({4}, {0, 1, 2, 3})), Catch::Contains("logits [4]"));
    CHECK_THROWS_WITH(ce.forward(Tensor<float>({2, 3, 4}), labels({3, 2}, {0, 1, 2, 3, 0, 1})), Catch::Contains("expected targets [2, 3]"));
    // [B, T] targets may also come flat.
    CHECK_NOTHROW(ce.forward(Tensor<float>({2, 3, 4}), labels({6}, {0, 1, 2, 3, 0, 1})));
    CrossEntropy<float> cw(CrossEntropyOptions().weight({1.0, 2.0}));
    CHECK_THROWS_WITH(cw.forward(Tensor<float>({3, 4}), labels({3}, {0, 1, 2})), Catch::Contains("2 class weights") && Catch::Contains("4 classes"));
    CHECK_THROWS_WITH(CrossEntropyOptions().label_smoothing(1.5), Catch::Contains("label_smoothing 1.5"));
    CHECK_THROWS_WITH(CrossEntropyOptions().weight({1.0, -2.0}), Catch::Contains("weight[1] = -2"));
    CrossEntropy<float> fresh;
    CHECK_THROWS_WITH(fresh.backward(), Catch::Contains("before forward"));
    CHECK_THROWS_WITH(fresh.backward(Tensor<float>({3})), Catch::Contains("reduction none"));
}

TEST_CASE("CrossEntropy: a batch with every target ignored gives 0 and a zero gradient", "[loss][cross_entropy]") {
    Tensor<float> x = sft::testing::random_tensor({3, 5}, 3).to<float>();
    for (double smoothing : {0.0, 0.1}) {
        CrossEntropy<float> ce(CrossEntropyOptions().label_smoothing(smoothing).weight({1, 2, 3, 4, 5}));
        const float loss = ce.forward(x, labels({3}, {-100, -100, -100}));
        CHECK(loss == 0.0f);
        CHECK(ce.denominator() == 0.0);
        for (float g : ce.backward()) CHECK(g == 0.0f);
    }
    // Classes of zero weight only: the divisor is 0 as well.
    CrossEntropy<float> ce(CrossEntropyOptions().weight({0, 1, 1, 1, 1}));
    CHECK(ce.forward(x, labels({3}, {0, 0, -100})) == 0.0f);
}

TEST_CASE("CrossEntropy: the mean is over the rows not ignored, weighted by the target weights", "[loss][cross_entropy]") {
    const Tensor<double> x = sft::testing::random_tensor({4, 3}, 8, -2.0, 2.0);
    CrossEntropy<double> sum(CrossEntropyOptions().reduction(Reduction::sum).weight({1.0, 2.0, 4.0}));
    CrossEntropy<double> mean(CrossEntropyOptions().weight({1.0, 2.0, 4.0}));
    const auto y = labels({4}, {2, -100, 1, 2});
    const double s = sum.forward(x, y);
    CHECK(mean.forward(x, y) == Approx(s / (4.0 + 2.0 + 4.0)).epsilon(1e-14));
    CHECK(mean.denominator() == 10.0);
    // Row losses are the weighted log-likelihoods: row 0 is 4 * (logsumexp(x_0) - x_0[2]).
    const double lse = std::log(std::exp(x(0, 0)) + std::exp(x(0, 1)) + std::exp(x(0, 2)));
    CHECK(mean.losses()[0] == Approx(4.0 * (lse - x(0, 2))).epsilon(1e-14));
    CHECK(mean.losses()[1] == 0.0);
}

TEST_CASE("CrossEntropy: need_grad false computes the same loss, outputs are not overwritten while held", "[loss][cross_entropy]") {
    const Tensor<float> x = sft::testing::random_tensor({5, 9}, 21).to<float>();
    const auto y = labels({5}, {0, 8, 3, -100, 4});
    CrossEntropy<float> a, b;
    const float la = a.forward(x, y);
    CHECK(b.forward(x, y, false) == la);
    CHECK_THROWS_WITH(b.backward(), Catch::Contains("need_grad false"));
    // The gradient handed out is kept intact by a later forward while the caller holds it.
    Tensor<float> g1 = a.backward();
    const Tensor<float> g1_copy = g1.clone();
    a.forward(x, labels({5}, {1, 1, 1, 1, 1}));
    for (std::size_t i = 0; i < g1.numel(); ++i) REQUIRE(g1[i] == g1_copy[i]);
    CHECK_FALSE(a.backward().is_same(g1));
}
