#include <sft/nn/flatten.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

using sft::Shape;
using sft::Tensor;
using sft::nn::Flatten;

TEST_CASE("Flatten: [N, C, H, W] -> [N, C*H*W] by default, as a view", "[nn][flatten]") {
    Tensor<float> x({2, 3, 4, 5});
    for (std::size_t i = 0; i < x.numel(); ++i) x[i] = float(i);
    Flatten<float> flat;
    CHECK(flat.start_dim() == 1);
    CHECK(flat.end_dim() == -1);
    const Tensor<float> y = flat.forward(x);
    CHECK(y.shape() == Shape{2, 60});
    CHECK(y.data() == x.data());  // no copy
    CHECK(y(1, 59) == 119.0f);
    Tensor<float> g({2, 60}, 1.0f);
    const Tensor<float> dx = flat.backward(g);
    CHECK(dx.shape() == x.shape());
    CHECK(dx.data() == g.data());
    CHECK_THROWS_WITH(flat.backward(g), Catch::Contains("before forward"));  // one backward per forward
    flat.forward(x);
    CHECK_FALSE(flat.backward(g, false).defined());
}

TEST_CASE("Flatten: start_dim and end_dim as torch.nn.Flatten, negative dims from the end", "[nn][flatten]") {
    const Tensor<double> x({2, 3, 4, 5});
    CHECK(Flatten<double>(0).forward(x).shape() == Shape{120});
    CHECK(Flatten<double>(1, 2).forward(x).shape() == Shape{2, 12, 5});
    CHECK(Flatten<double>(-3, -2).forward(x).shape() == Shape{2, 12, 5});
    CHECK(Flatten<double>(2, 2).forward(x).shape() == x.shape());
    CHECK(Flatten<double>(0, -2).forward(x).shape() == Shape{24, 5});
    CHECK(Flatten<double>().forward(Tensor<double>({7, 3})).shape() == Shape{7, 3});
    CHECK(Flatten<double>(0, -1).forward(Tensor<double>(Shape{}, 4.0)).shape() == Shape{1});  // 0-d: as if rank 1
}

TEST_CASE("Flatten: errors name the layer, the dims and the shape", "[nn][flatten]") {
    sft::nn::Sequential<float> model;
    model.add("flat", Flatten<float>());
    auto& flat = model.at("flat");
    CHECK_THROWS_WITH(flat.backward(Tensor<float>({2, 3})), Catch::Contains("Flatten 'flat'") && Catch::Contains("before forward"));
    CHECK_THROWS_WITH(flat.forward(Tensor<float>({5})), Catch::Contains("Flatten 'flat'") && Catch::Contains("start_dim 1") && Catch::Contains("[5]"));
    CHECK_THROWS_WITH(Flatten<float>(2, 1).forward(Tensor<float>({2, 3, 4})), Catch::Contains("Flatten") && Catch::Contains("comes after"));
    CHECK_THROWS_WITH(Flatten<float>(0, 4).forward(Tensor<float>({2, 3, 4})), Catch::Contains("out of range") && Catch::Contains("[2, 3, 4]"));
    CHECK_THROWS_WITH(Flatten<float>(-5).forward(Tensor<float>({2, 3, 4, 1})), Catch::Contains("out of range"));
    CHECK_THROWS_WITH(flat.forward(Tensor<float>()), Catch::Contains("Flatten 'flat'") && Catch::Contains("undefined"));
    flat.forward(Tensor<float>({2, 3, 4}));
    CHECK_THROWS_WITH(flat.backward(Tensor<float>({2, 3, 4})), Catch::Contains("Flatten 'flat'") && Catch::Contains("[2, 12]"));
}

TEST_CASE("Flatten: gradients flow through a conv-style stack (finite differences in double)", "[nn][flatten][gradcheck]") {
    sft::Rng rng(3);
    sft::nn::Sequential<double> model;
    model.add("flat", Flatten<double>());
    model.add("fc", sft::nn::Linear<double>(12, 3, true, rng));
    const Tensor<double> x = sft::testing::random_tensor({2, 3, 2, 2}, 8);
    sft::testing::check_input_grad(model, x, 1e-7);
    sft::testing::check_param_grads(model, x, 1e-7);
    Flatten<double> alone(1, 2);
    sft::testing::check_input_grad(alone, x, 1e-7);
}
