#include <sft/io/safetensors.hpp>
#include <sft/loss/mse.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <string>

using sft::Tensor;
using sft::loss::MSE;
using sft::loss::MSEOptions;
using sft::loss::Reduction;

TEST_CASE("MSE: gradient matches finite differences in double", "[loss][mse][gradcheck]") {
    const Tensor<double> y = sft::testing::random_tensor({3, 4}, 2);
    for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::none}) {
        INFO(sft::loss::reduction_name(r));
        MSE<double> mse(MSEOptions().reduction(r));
        Tensor<double> x = sft::testing::random_tensor({3, 4}, 1);
        mse.forward(x, y);
        const Tensor<double> analytic = mse.backward().clone();
        sft::testing::detail::compare_fd("MSE", x, analytic, [&] { return double(mse.forward(x, y, false)); }, 1e-8, 1e-6);
    }
    MSE<double> none(MSEOptions().reduction(Reduction::none));
    Tensor<double> x = sft::testing::random_tensor({3, 4}, 1);
    const Tensor<double> up = sft::testing::random_tensor({3, 4}, 9);
    none.forward(x, y);
    const Tensor<double> analytic = none.backward(up);
    sft::testing::detail::compare_fd("MSE none with upstream gradient", x, analytic, [&] {
        none.forward(x, y, false);
        double s = 0.0;
        for (std::size_t i = 0; i < up.numel(); ++i) s += up[i] * none.losses()[i];
        return s;
    }, 1e-8, 1e-6);
}

TEST_CASE("MSE: matches torch.nn.functional.mse_loss", "[loss][mse][pytorch]") {
    const auto file = sft::io::load_safetensors_with_metadata<double>(SFT_REFERENCE_DIR "/loss_reference.safetensors");
    const auto& t = file.tensors;
    double worst64 = 0.0, worst32 = 0.0;
    for (const char* name : {"mse_mean", "mse_sum", "mse_none"}) {
        const std::string c = name;
        INFO(c);
        const std::string red = file.metadata.at(c + ".reduction");
        const MSEOptions opt = MSEOptions().reduction(red == "none" ? Reduction::none : red == "sum" ? Reduction::sum : Reduction::mean);
        MSE<double> m(opt);
        const double loss = m.forward(t.at(c + ".pred"), t.at(c + ".target"));
        double err = std::abs(loss - t.at(c + ".loss")[0]);
        const Tensor<double> g = m.backward();
        for (std::size_t i = 0; i < g.numel(); ++i) err = std::max(err, std::abs(g[i] - t.at(c + ".grad")[i]));
        if (red == "none")
            for (std::size_t i = 0; i < g.numel(); ++i) err = std::max(err, std::abs(m.losses()[i] - t.at(c + ".losses")[i]));
        CHECK(err < 1e-12);
        worst64 = std::max(worst64, err);
        MSE<float> mf(opt);
        const float lf = mf.forward(t.at(c + ".pred").to<float>(), t.at(c + ".target").to<float>());
        double errf = std::abs(lf - t.at(c + ".loss_f32")[0]) / std::max(1.0, std::abs(t.at(c + ".loss_f32")[0]));
        const Tensor<float> gf = mf.backward();
        for (std::size_t i = 0; i < gf.numel(); ++i) errf = std::max(errf, std::abs(gf[i] - t.at(c + ".grad_f32")[i]));
        CHECK(errf < 1e-6);
        worst32 = std::max(worst32, errf);
    }
    WARN("MSE vs PyTorch: max error " << worst64 << " (double), " << worst32 << " (float)");
}

TEST_CASE("MSE: shape mismatch and out-of-order calls throw", "[loss][mse]") {
    MSE<float> m;
    CHECK_THROWS_WITH(m.backward(), Catch::Contains("before forward"));
    CHECK_THROWS_WITH(m.forward(Tensor<float>({2, 3}), Tensor<float>({3, 2})), Catch::Contains("[2, 3]") && Catch::Contains("[3, 2]"));
    CHECK_THROWS_WITH(m.backward(Tensor<float>({2, 3})), Catch::Contains("reduction none"));
    CHECK(m.forward(Tensor<float>({0, 3}), Tensor<float>({0, 3})) == 0.0f);
    const Tensor<float> x({2, 2}, {1.0f, 2.0f, 3.0f, 4.0f}), y({2, 2}, {0.0f, 0.0f, 1.0f, 6.0f});
    CHECK(m.forward(x, y) == Approx((1.0 + 4.0 + 4.0 + 4.0) / 4.0));
    const Tensor<float> g = m.backward();
    CHECK(g[3] == Approx(2.0 * (4.0 - 6.0) / 4.0));
}
