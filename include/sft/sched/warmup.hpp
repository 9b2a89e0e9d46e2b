/// @file warmup.hpp
/// Hugging Face's warm-up schedules (transformers/optimization.py, get_linear_schedule_with_warmup
/// and get_cosine_schedule_with_warmup): a LambdaLR whose factor rises linearly from 0 to 1 over
/// warmup_steps, then decays linearly or along a cosine to 0 at total_steps.
#pragma once

#include <sft/sched/scheduler.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

namespace sft::sched {

namespace detail {
/// Both schedules' arguments: 0 <= warmup_steps <= total_steps, total_steps >= 1.
inline void check_warmup(const char* who, std::int64_t warmup_steps, std::int64_t total_steps) {
    require(warmup_steps >= 0, fmt::format("{}: warmup_steps {} must be >= 0", who, warmup_steps));
    require(total_steps >= 1, fmt::format("{}: total_steps {} must be >= 1", who, total_steps));
    require(warmup_steps <= total_steps, fmt::format("{}: warmup_steps {} > total_steps {}", who, warmup_steps, total_steps));
}

/// The warm-up factor of both: float(step) / float(max(1, warmup_steps)).
inline double warmup_factor(std::int64_t step, std::int64_t warmup_steps) noexcept {
    return static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(1, warmup_steps));
}
}  // namespace detail

/// transformers' get_linear_schedule_with_warmup: lr_t = base_lr * f(t) with
///     f(t) = t / max(1, warmup)                                     if t < warmup
///     f(t) = max(0, (total - t) / max(1, total - warmup))          otherwise.
/// The lr is 0 right after construction when warmup_steps > 0, base_lr at t == warmup_steps, 0 from
/// total_steps on. Default interval: step.
class WarmupLinear : public LRScheduler {
public:
    /// Throws sft::Error unless 0 <= warmup_steps <= total_steps and total_steps >= 1.
    WarmupLinear(optim::OptimizerBase& opt, std::int64_t warmup_steps, std::int64_t total_steps)
        : LRScheduler(opt, "WarmupLinear", Interval::step), warmup_steps_(warmup_steps), total_steps_(total_steps) {
        detail::check_warmup("WarmupLinear", warmup_steps, total_steps);
        initial_step();
    }

    std::int64_t warmup_steps() const noexcept { return warmup_steps_; }
    std::int64_t total_steps() const noexcept { return total_steps_; }

    /// The factor f(t) above (transformers' _get_linear_schedule_with_warmup_lr_lambda).
    double factor(std::int64_t t) const noexcept {
        if (t < warmup_steps_) return detail::warmup_factor(t, warmup_steps_);
        return std::max(0.0, static_cast<double>(total_steps_ - t) /
                                 static_cast<double>(std::max<std::int64_t>(1, total_steps_ - warmup_steps_)));
    }

protected:
    double compute_lr(std::size_t i) const override { return base_lrs_[i] * factor(last_epoch_); }
    void visit_state(detail::StateArchive& ar) override {
        LRScheduler::visit_state(ar);
        ar.config("warmup_steps", warmup_steps_);
        ar.config("total_steps", total_steps_);
    }

private:
    std::int64_t warmup_steps_;
    std::int64_t total_steps_;
};

/// transformers' get_cosine_schedule_with_warmup: lr_t = base_lr * f(t) with
///     f(t) = t / max(1, warmup)                                     if t < warmup
///     f(t) = max(0, (1 + cos(pi * num_cycles * 2 * p)) / 2)         otherwise,
///     p = (t - warmup) / max(1, total - warmup).
/// With the default num_cycles 0.5 the factor falls from 1 to 0 along a half cosine between
/// warmup_steps and total_steps (and, as in transformers, rises again past total_steps).
/// The lr is 0 right after construction when warmup_steps > 0. Default interval: step.
class WarmupCosine : public LRScheduler {
public:
    /// Throws sft::Error unless 0 <= warmup_steps <= total_steps, total_steps >= 1, and num_cycles
    /// is finite and >= 0.
    WarmupCosine(optim::OptimizerBase& opt, std::int64_t warmup_steps, std::int64_t total_steps, double num_cycles = 0.5)
        : LRScheduler(opt, "WarmupCosine", Interval::step), warmup_steps_(warmup_steps), total_steps_(total_steps), num_cycles_(num_cycles) {
        detail::check_warmup("WarmupCosine", warmup_steps, total_steps);
        detail::require(std::isfinite(num_cycles) && num_cycles >= 0,
                        fmt::format("WarmupCosine: num_cycles {} must be finite and >= 0", num_cycles));
        initial_step();
    }

    std::int64_t warmup_steps() const noexcept { return warmup_steps_; }
    std::int64_t total_steps() const noexcept { return total_steps_; }
    double num_cycles() const noexcept { return num_cycles_; }

    /// The factor f(t) above (transformers' _get_cosine_schedule_with_warmup_lr_lambda), in its
    /// order of operations.
    double factor(std::int64_t t) const noexcept {
        if (t < warmup_steps_) return detail::warmup_factor(t, warmup_steps_);
        const double progress = static_cast<double>(t - warmup_steps_) /
                                static_cast<double>(std::max<std::int64_t>(1, total_steps_ - warmup_steps_));
        return std::max(0.0, 0.5 * (1.0 + std::cos(detail::pi * num_cycles_ * 2.0 * progress)));
    }

protected:
    double compute_lr(std::size_t i) const override { return base_lrs_[i] * factor(last_epoch_); }
    void visit_state(detail::StateArchive& ar) override {
        LRScheduler::visit_state(ar);
        ar.config("warmup_steps", warmup_steps_);
        ar.config("total_steps", total_steps_);
        ar.config("num_cycles", num_cycles_);
    }

private:
    std::int64_t warmup_steps_;
    std::int64_t total_steps_;
    double num_cycles_;
};

}  // namespace sft::sched
