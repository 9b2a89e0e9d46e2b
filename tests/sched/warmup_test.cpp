// WarmupLinear and WarmupCosine against transformers' lambdas run by torch 1.13's LambdaLR
// (tests/reference/ref_sched.py).
#include "sched_support.hpp"

#include <sft/sched/warmup.hpp>

#include <catch2/catch.hpp>

using namespace sched_test;
using sft::sched::WarmupCosine;
using sft::sched::WarmupLinear;

TEST_CASE("WarmupLinear and WarmupCosine match transformers' schedules and resume exactly", "[sched][warmup]") {
    check_configs({
        {"warmup_linear_5_100", factory<WarmupLinear>(5, 100)},
        {"warmup_linear_0_50", factory<WarmupLinear>(0, 50)},
        {"warmup_linear_10_10", factory<WarmupLinear>(10, 10)},
        {"warmup_cosine_5_100", factory<WarmupCosine>(5, 100)},
        {"warmup_cosine_0_50", factory<WarmupCosine>(0, 50)},
        {"warmup_cosine_10_60_cycles1", factory<WarmupCosine>(10, 60, 1.0)},
    });
}

TEST_CASE("WarmupCosine: 0 after construction, base lr after warm-up, 0 at total_steps", "[sched][warmup]") {
    FakeOptimizer opt({1e-3, 4e-4});
    WarmupCosine sched(opt, /*warmup_steps=*/5, /*total_steps=*/100);
    CHECK(opt.lr() == 0.0);
    CHECK(sched.interval() == sft::sched::Interval::step);
    for (int t = 0; t < 5; ++t) {
        opt.step();
        sched.step();
    }
    CHECK(opt.lrs() == std::vector<double>{1e-3, 4e-4});
    for (int t = 5; t < 100; ++t) sched.step();
    CHECK(opt.lr() == Approx(0.0).margin(1e-30));
    CHECK(sched.last_epoch() == 100);
}

TEST_CASE("Warm-up schedules reject invalid arguments", "[sched][warmup]") {
    FakeOptimizer opt({0.1, 0.02});
    check_throws_with([&] { WarmupCosine(opt, 200, 100); }, "WarmupCosine: warmup_steps 200 > total_steps 100");
    check_throws_with([&] { WarmupLinear(opt, 200, 100); }, "WarmupLinear: warmup_steps 200 > total_steps 100");
    check_throws_with([&] { WarmupLinear(opt, -1, 100); }, "WarmupLinear: warmup_steps -1 must be >= 0");
    check_throws_with([&] { WarmupCosine(opt, 0, 0); }, "WarmupCosine: total_steps 0 must be >= 1");
    check_throws_with([&] { WarmupCosine(opt, 5, 100, -0.5); }, "WarmupCosine: num_cycles -0.5 must be finite and >= 0");
    CHECK(opt.lrs() == std::vector<double>{0.1, 0.02});
}
