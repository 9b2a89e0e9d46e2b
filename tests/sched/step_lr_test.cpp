// StepLR, MultiStepLR, ExponentialLR against torch 1.13 (tests/reference/ref_sched.py).
#include "sched_support.hpp"

#include <sft/sched/step_lr.hpp>

#include <catch2/catch.hpp>

using namespace sched_test;
using sft::sched::ExponentialLR;
using sft::sched::MultiStepLR;
using sft::sched::StepLR;

TEST_CASE("StepLR, MultiStepLR, ExponentialLR match torch and resume exactly", "[sched][step_lr]") {
    check_configs({
        {"step_7_half", factory<StepLR>(7, 0.5)},
        {"step_10_default", factory<StepLR>(10)},
        {"step_1", factory<StepLR>(1, 0.9)},
        {"multistep", factory<MultiStepLR>(std::vector<std::int64_t>{10, 25, 40}, 0.3)},
        // Unsorted, repeated (decays twice) and 0 (applied at construction), as torch's Counter.
        {"multistep_repeat_unsorted", factory<MultiStepLR>(std::vector<std::int64_t>{30, 5, 30, 0}, 0.5)},
        {"exponential_095", factory<ExponentialLR>(0.95)},
        {"exponential_up", factory<ExponentialLR>(1.05)},
    });
}

TEST_CASE("StepLR scales each group from its own initial lr", "[sched][step_lr]") {
    FakeOptimizer opt({0.2, 0.04});
    opt.set_group_lr(0, 123.0);  // the current lr is not the base: the initial lr is
    StepLR s(opt, 2, 0.5);
    CHECK(opt.group_lr(0) == 0.2);
    CHECK(opt.group_lr(1) == 0.04);
    s.step();
    s.step();
    CHECK(opt.group_lr(0) == 0.1);
    CHECK(opt.group_lr(1) == 0.02);
    CHECK(s.get_last_lr() == std::vector<double>{0.1, 0.02});
    CHECK(s.base_lrs() == std::vector<double>{0.2, 0.04});
    CHECK(s.last_epoch() == 2);
    CHECK(s.interval() == sft::sched::Interval::epoch);
    CHECK_FALSE(s.needs_metric());
}

TEST_CASE("StepLR family rejects invalid arguments", "[sched][step_lr]") {
    FakeOptimizer opt({0.1, 0.01});
    check_throws_with([&] { StepLR(opt, 0); }, "StepLR: step_size 0 must be >= 1");
    check_throws_with([&] { StepLR(opt, 3, -0.5); }, "StepLR: gamma -0.5");
    check_throws_with([&] { StepLR(opt, 3, std::nan("")); }, "StepLR: gamma nan");
    check_throws_with([&] { MultiStepLR(opt, {3, -2}); }, "MultiStepLR: milestone -2 must be >= 0");
    check_throws_with([&] { MultiStepLR(opt, {3}, 0.0); }, "MultiStepLR: gamma 0 must be finite and > 0");
    check_throws_with([&] { ExponentialLR(opt, std::numeric_limits<double>::infinity()); }, "ExponentialLR: gamma inf");
    // A refused construction leaves the optimizer's lrs alone.
    CHECK(opt.lrs() == std::vector<double>{0.1, 0.01});
}

TEST_CASE("MultiStepLR sorts its milestones", "[sched][step_lr]") {
    FakeOptimizer opt({1.0});
    MultiStepLR s(opt, {8, 2, 5}, 0.5);
    CHECK(s.milestones() == std::vector<std::int64_t>{2, 5, 8});
    std::vector<double> lrs{opt.lr()};
    for (int t = 0; t < 9; ++t) {
        s.step();
        lrs.push_back(opt.lr());
    }
    CHECK(lrs == std::vector<double>{1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125});
}
