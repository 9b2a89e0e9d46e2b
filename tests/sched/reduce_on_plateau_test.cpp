// ReduceLROnPlateau against torch 1.13 (tests/reference/ref_sched.py: metric sequences stored with
// the lrs).
#include "sched_support.hpp"

#include <sft/sched/reduce_on_plateau.hpp>

#include <catch2/catch.hpp>

#include <limits>

using namespace sched_test;
using sft::sched::ReduceLROnPlateau;
using Mode = ReduceLROnPlateau::Mode;
using Threshold = ReduceLROnPlateau::ThresholdMode;

TEST_CASE("ReduceLROnPlateau matches torch and resumes exactly", "[sched][reduce_on_plateau]") {
    check_configs({
        {"plateau_min_rel", factory<ReduceLROnPlateau>(Mode::min, 0.5, std::int64_t{2})},
        {"plateau_min_rel_cooldown",
         factory<ReduceLROnPlateau>(Mode::min, 0.5, std::int64_t{1}, 1e-3, Threshold::rel, std::int64_t{3})},
        {"plateau_max_abs_minlr", factory<ReduceLROnPlateau>(Mode::max, 0.3, std::int64_t{0}, 0.01, Threshold::abs,
                                                             std::int64_t{0}, std::vector<double>{0.01, 0.001})},
        {"plateau_min_abs_eps",
         factory<ReduceLROnPlateau>(Mode::min, 0.1, std::int64_t{3}, 0.05, Threshold::abs, std::int64_t{0}, 1e-4, 2e-3)},
        {"plateau_max_rel_cooldown",
         factory<ReduceLROnPlateau>(Mode::max, 0.7, std::int64_t{2}, 1e-4, Threshold::rel, std::int64_t{2})},
    });
}

TEST_CASE("ReduceLROnPlateau needs a metric and keeps the lr at construction", "[sched][reduce_on_plateau]") {
    FakeOptimizer opt({0.1, 0.01});
    opt.set_group_lr(0, 0.05);  // it scales the current lr, not the initial one
    ReduceLROnPlateau s(opt, Mode::min, 0.5, 0);
    CHECK(s.needs_metric());
    CHECK(s.interval() == sft::sched::Interval::epoch);
    CHECK(opt.lrs() == std::vector<double>{0.05, 0.01});
    CHECK(s.get_last_lr() == std::vector<double>{0.05, 0.01});
    CHECK(s.best() == std::numeric_limits<double>::infinity());
    check_throws_with([&] { s.step(); }, "ReduceLROnPlateau: step() called without the metric");
    s.step(1.0);  // improvement
    CHECK(opt.lrs() == std::vector<double>{0.05, 0.01});
    s.step(1.0);  // one bad epoch > patience 0: halve
    CHECK(opt.lrs() == std::vector<double>{0.025, 0.005});
    CHECK(s.last_epoch() == 2);
    CHECK(s.best() == 1.0);
    s.step(std::nan(""));  // NaN never improves (torch's comparison)
    CHECK(opt.lrs() == std::vector<double>{0.0125, 0.0025});
}

TEST_CASE("ReduceLROnPlateau rejects invalid arguments", "[sched][reduce_on_plateau]") {
    FakeOptimizer opt({0.1, 0.01});
    check_throws_with([&] { ReduceLROnPlateau(opt, Mode::min, 1.0); }, "ReduceLROnPlateau: factor 1 must be in [0, 1)");
    check_throws_with([&] { ReduceLROnPlateau(opt, Mode::min, 0.1, -1); }, "ReduceLROnPlateau: patience -1 must be >= 0");
    check_throws_with([&] { ReduceLROnPlateau(opt, Mode::min, 0.1, 10, -1e-4); }, "ReduceLROnPlateau: threshold -0.0001");
    check_throws_with([&] { ReduceLROnPlateau(opt, Mode::min, 0.1, 10, 1e-4, Threshold::rel, -2); },
                      "ReduceLROnPlateau: cooldown -2 must be >= 0");
    check_throws_with([&] { ReduceLROnPlateau(opt, Mode::min, 0.1, 10, 1e-4, Threshold::rel, 0, std::vector<double>{0.0}); },
                      "ReduceLROnPlateau: 1 min_lr values for 2 parameter groups");
    check_throws_with([&] { ReduceLROnPlateau(opt, Mode::min, 0.1, 10, 1e-4, Threshold::rel, 0, -1.0); },
                      "ReduceLROnPlateau: min_lr -1 must be finite and >= 0");
    check_throws_with([&] { ReduceLROnPlateau(opt, Mode::min, 0.1, 10, 1e-4, Threshold::rel, 0, 0.0, -1.0); },
                      "ReduceLROnPlateau: eps -1 must be finite and >= 0");
}
