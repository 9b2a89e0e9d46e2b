/// @file linear_lr.hpp
/// The factor schedulers of PyTorch 1.13, usually a warm-up in front of a SequentialLR:
/// ConstantLR (a constant factor for total_iters steps) and LinearLR (a factor moving linearly).
#pragma once

#include <sft/sched/scheduler.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace sft::sched {

/// Multiplies every group's lr by `factor` for the first total_iters steps, then restores it
/// (torch.optim.lr_scheduler.ConstantLR): lr_t = base_lr * factor if t < total_iters, else base_lr.
/// Default interval: epoch.
class ConstantLR : public LRScheduler {
public:
    /// Throws sft::Error if factor is not in (0, 1] or total_iters < 1. (torch accepts factor 0 and
    /// then divides by it at total_iters; with total_iters 0 its chainable form keeps the factor
    /// forever while its closed form never applies it: both rejected here.)
    ConstantLR(optim::OptimizerBase& opt, double factor = 1.0 / 3, std::int64_t total_iters = 5)
        : LRScheduler(opt, "ConstantLR", Interval::epoch), factor_(factor), total_iters_(total_iters) {
        detail::require(factor > 0 && factor <= 1, fmt::format("ConstantLR: factor {} must be in (0, 1]", factor));
        detail::require(total_iters >= 1, fmt::format("ConstantLR: total_iters {} must be >= 1", total_iters));
        initial_step();
    }

    double factor() const noexcept { return factor_; }
    std::int64_t total_iters() const noexcept { return total_iters_; }

protected:
    double compute_lr(std::size_t i) const override {
        return last_epoch_ < total_iters_ ? base_lrs_[i] * factor_ : base_lrs_[i];
    }
    void visit_state(detail::StateArchive& ar) override {
        LRScheduler::visit_state(ar);
        ar.config("factor", factor_);
        ar.config("total_iters", total_iters_);
    }

private:
    double factor_;
    std::int64_t total_iters_;
};

/// Moves every group's lr factor linearly from start_factor to end_factor over total_iters steps,
/// then holds it (torch.optim.lr_scheduler.LinearLR): lr_t = base_lr * (start + (end - start) *
/// min(t, total_iters) / total_iters). Default interval: epoch.
class LinearLR : public LRScheduler {
public:
    /// Throws sft::Error if start_factor is not in (0, 1], end_factor not in [0, 1], or total_iters < 1.
    LinearLR(optim::OptimizerBase& opt, double start_factor = 1.0 / 3, double end_factor = 1.0, std::int64_t total_iters = 5)
        : LRScheduler(opt, "LinearLR", Interval::epoch), start_factor_(start_factor), end_factor_(end_factor), total_iters_(total_iters) {
        // torch's chainable form divides by total_iters * start_factor: start_factor 0 is unusable there.
        detail::require(start_factor > 0 && start_factor <= 1, fmt::format("LinearLR: start_factor {} must be in (0, 1]", start_factor));
        detail::require(end_factor >= 0 && end_factor <= 1, fmt::format("LinearLR: end_factor {} must be in [0, 1]", end_factor));
        detail::require(total_iters >= 1, fmt::format("LinearLR: total_iters {} must be >= 1", total_iters));
        initial_step();
    }

    double start_factor() const noexcept { return start_factor_; }
    double end_factor() const noexcept { return end_factor_; }
    std::int64_t total_iters() const noexcept { return total_iters_; }

protected:
    double compute_lr(std::size_t i) const override {
        const double t = static_cast<double>(std::min(total_iters_, last_epoch_));
        return base_lrs_[i] * (start_factor_ + (end_factor_ - start_factor_) * t / static_cast<double>(total_iters_));
    }
    void visit_state(detail::StateArchive& ar) override {
        LRScheduler::visit_state(ar);
        ar.config("start_factor", start_factor_);
        ar.config("end_factor", end_factor_);
        ar.config("total_iters", total_iters_);
    }

private:
    double start_factor_;
    double end_factor_;
    std::int64_t total_iters_;
};

}  // namespace sft::sched
