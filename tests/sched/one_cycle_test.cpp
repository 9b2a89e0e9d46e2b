// OneCycleLR against torch 1.13 (tests/reference/ref_sched.py; torch run with cycle_momentum=False).
#include "sched_support.hpp"

#include <sft/sched/one_cycle.hpp>

#include <catch2/catch.hpp>

using namespace sched_test;
using sft::sched::OneCycleLR;
using Anneal = OneCycleLR::AnnealStrategy;

TEST_CASE("OneCycleLR matches torch and resumes exactly", "[sched][one_cycle]") {
    const std::vector<double> max_lrs{0.5, 0.02};
    check_configs({
        {"onecycle_cos", factory<OneCycleLR>(max_lrs, std::int64_t{100})},
        {"onecycle_linear", factory<OneCycleLR>(max_lrs, std::int64_t{100}, 0.3, Anneal::linear)},
        {"onecycle_three_phase", factory<OneCycleLR>(max_lrs, std::int64_t{100}, 0.25, Anneal::cos, 25.0, 1e4, true)},
        {"onecycle_three_phase_linear", factory<OneCycleLR>(0.2, std::int64_t{80}, 0.4, Anneal::linear, 25.0, 1e4, true)},
        {"onecycle_scalar_custom", factory<OneCycleLR>(0.2, std::int64_t{40}, 0.15, Anneal::cos, 10.0, 100.0)},
    });
}

TEST_CASE("OneCycleLR starts at max_lr / div_factor and ends at min_lr", "[sched][one_cycle]") {
    FakeOptimizer opt({123.0, 7.0});  // ignored: the cycle is defined by max_lr
    OneCycleLR s(opt, std::vector<double>{1.0, 0.1}, 20, 0.5, Anneal::linear, 4.0, 10.0);
    CHECK(opt.lrs() == std::vector<double>{0.25, 0.025});
    CHECK(s.base_lrs() == std::vector<double>{0.25, 0.025});
    CHECK(s.interval() == sft::sched::Interval::step);
    for (int t = 0; t < 9; ++t) s.step();
    CHECK(opt.group_lr(0) == 1.0);  // end of phase 1: step pct_start * total - 1
    CHECK(opt.group_lr(1) == Approx(0.1).epsilon(1e-15));
    for (int t = 9; t < 19; ++t) s.step();
    CHECK(opt.group_lr(0) == Approx(0.025).epsilon(1e-15));
    CHECK(s.min_lrs() == std::vector<double>{0.025, 0.0025});
}

TEST_CASE("OneCycleLR refuses steps past total_steps and changes nothing", "[sched][one_cycle]") {
    FakeOptimizer opt({0.1, 0.01});
    OneCycleLR s(opt, 0.1, 10);
    for (int t = 0; t < 10; ++t) s.step();  // total_steps steps are allowed, as in torch
    const auto lrs = opt.lrs();
    check_throws_with([&] { s.step(); }, "OneCycleLR: step() called 11 times, past total_steps 10");
    CHECK(s.last_epoch() == 10);
    CHECK(opt.lrs() == lrs);
}

TEST_CASE("OneCycleLR rejects invalid arguments", "[sched][one_cycle]") {
    FakeOptimizer opt({0.1, 0.01});
    check_throws_with([&] { OneCycleLR(opt, std::vector<double>{0.1}, 10); }, "OneCycleLR: 1 max_lr values for 2 parameter groups");
    check_throws_with([&] { OneCycleLR(opt, -0.1, 10); }, "OneCycleLR: max_lr -0.1 must be finite and > 0");
    check_throws_with([&] { OneCycleLR(opt, 0.1, 0); }, "OneCycleLR: total_steps 0 must be >= 1");
    check_throws_with([&] { OneCycleLR(opt, 0.1, 10, 1.5); }, "OneCycleLR: pct_start 1.5 must be in [0, 1]");
    check_throws_with([&] { OneCycleLR(opt, 0.1, 10, 0.3, Anneal::cos, 0.0); }, "OneCycleLR: div_factor 0 must be finite and > 0");
    check_throws_with([&] { OneCycleLR(opt, 0.1, 10, 0.3, Anneal::cos, 25.0, -1.0); }, "OneCycleLR: final_div_factor -1");
    // pct_start * total_steps = 1: torch divides by zero at step 0.
    check_throws_with([&] { OneCycleLR(opt, 0.1, 10, 0.1); }, "OneCycleLR: phase 1 of 2 is empty");
    check_throws_with([&] { OneCycleLR(opt, 0.1, 10, 1.0); }, "OneCycleLR: phase 2 of 2 is empty");
    check_throws_with([&] { OneCycleLR(opt, 0.1, 10, 0.6, Anneal::cos, 25.0, 1e4, true); }, "OneCycleLR: phase 3 of 3 is empty");
    CHECK(opt.lrs() == std::vector<double>{0.1, 0.01});
}
