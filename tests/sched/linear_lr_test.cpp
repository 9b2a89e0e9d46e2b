// ConstantLR and LinearLR against torch 1.13 (tests/reference/ref_sched.py).
#include "sched_support.hpp"

#include <sft/sched/linear_lr.hpp>

#include <catch2/catch.hpp>

using namespace sched_test;
using sft::sched::ConstantLR;
using sft::sched::LinearLR;

TEST_CASE("ConstantLR and LinearLR match torch and resume exactly", "[sched][linear_lr]") {
    check_configs({
        {"constant_default", factory<ConstantLR>()},
        {"constant_half_10", factory<ConstantLR>(0.5, 10)},
        {"constant_third_1", factory<ConstantLR>(1.0 / 3, 1)},
        {"linear_warmup", factory<LinearLR>(0.25, 1.0, 8)},
        {"linear_decay", factory<LinearLR>(1.0, 0.1, 20)},
    });
}

TEST_CASE("ConstantLR: factor for total_iters steps, then the initial lr", "[sched][linear_lr]") {
    FakeOptimizer opt({0.05, 1.0});
    ConstantLR s(opt, 0.5, 4);
    for (int t = 0; t < 4; ++t) {
        CHECK(opt.lrs() == std::vector<double>{0.025, 0.5});
        s.step();
    }
    CHECK(opt.lrs() == std::vector<double>{0.05, 1.0});
}

TEST_CASE("ConstantLR and LinearLR reject invalid arguments", "[sched][linear_lr]") {
    FakeOptimizer opt({0.1, 0.01});
    check_throws_with([&] { ConstantLR(opt, 0.0); }, "ConstantLR: factor 0 must be in (0, 1]");
    check_throws_with([&] { ConstantLR(opt, 1.5); }, "ConstantLR: factor 1.5");
    check_throws_with([&] { ConstantLR(opt, 0.5, 0); }, "ConstantLR: total_iters 0 must be >= 1");
    check_throws_with([&] { LinearLR(opt, 0.0); }, "LinearLR: start_factor 0 must be in (0, 1]");
    check_throws_with([&] { LinearLR(opt, 0.5, 1.2); }, "LinearLR: end_factor 1.2 must be in [0, 1]");
    check_throws_with([&] { LinearLR(opt, 0.5, 1.0, -3); }, "LinearLR: total_iters -3 must be >= 1");
}
