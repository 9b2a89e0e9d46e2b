/// @file step_lr.hpp
/// The gamma-decay schedulers of PyTorch 1.13: StepLR, MultiStepLR, ExponentialLR.
/// Each is evaluated in torch's closed form (_get_closed_form_lr) from the group's initial lr; torch's
/// chainable form multiplies the previous lr by gamma instead, which agrees to rounding.
#pragma once

#include <sft/sched/scheduler.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace sft::sched {

/// Decays every group's lr by gamma every step_size steps (torch.optim.lr_scheduler.StepLR):
/// lr_t = base_lr * gamma^floor(t / step_size). Default interval: epoch.
class StepLR : public LRScheduler {
public:
    /// Throws sft::Error if step_size < 1 or gamma is not finite and positive.
    StepLR(optim::OptimizerBase& opt, std::int64_t step_size, double gamma = 0.1)
        : LRScheduler(opt, "StepLR", Interval::epoch), step_size_(step_size), gamma_(gamma) {
        detail::require(step_size >= 1, fmt::format("StepLR: step_size {} must be >= 1", step_size));
        detail::require(std::isfinite(gamma) && gamma > 0, fmt::format("StepLR: gamma {} must be finite and > 0", gamma));
        initial_step();
    }

    std::int64_t step_size() const noexcept { return step_size_; }
    double gamma() const noexcept { return gamma_; }

protected:
    double compute_lr(std::size_t i) const override {
        return base_lrs_[i] * std::pow(gamma_, static_cast<double>(last_epoch_ / step_size_));
    }
    void visit_state(detail::StateArchive& ar) override {
        LRScheduler::visit_state(ar);
        ar.config("step_size", step_size_);
        ar.config("gamma", gamma_);
    }

private:
    std::int64_t step_size_;
    double gamma_;
};

/// Decays every group's lr by gamma at each milestone (torch.optim.lr_scheduler.MultiStepLR):
/// lr_t = base_lr * gamma^(number of milestones <= t). Milestones may come in any order; a
/// milestone listed twice decays twice, as torch's Counter does. Default interval: epoch.
class MultiStepLR : public LRScheduler {
public:
    /// Throws sft::Error if a milestone is negative or gamma is not finite and positive.
    MultiStepLR(optim::OptimizerBase& opt, std::vector<std::int64_t> milestones, double gamma = 0.1)
        : LRScheduler(opt, "MultiStepLR", Interval::epoch), milestones_(std::move(milestones)), gamma_(gamma) {
        for (std::int64_t m : milestones_)
            detail::require(m >= 0, fmt::format("MultiStepLR: milestone {} must be >= 0", m));
        detail::require(std::isfinite(gamma) && gamma > 0, fmt::format("MultiStepLR: gamma {} must be finite and > 0", gamma));
        std::sort(milestones_.begin(), milestones_.end());
        initial_step();
    }

    /// The milestones, sorted.
    const std::vector<std::int64_t>& milestones() const noexcept { return milestones_; }
    double gamma() const noexcept { return gamma_; }

protected:
    double compute_lr(std::size_t i) const override {
        // torch: base_lr * gamma ** bisect_right(sorted milestones, last_epoch)
        const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) - milestones_.begin();
        return base_lrs_[i] * std::pow(gamma_, static_cast<double>(passed));
    }
    void visit_state(detail::StateArchive& ar) override {
        LRScheduler::visit_state(ar);
        ar.config("milestones", milestones_);
        ar.config("gamma", gamma_);
    }

private:
    std::vector<std::int64_t> milestones_;
    double gamma_;
};

/// Decays every group's lr by gamma every step (torch.optim.lr_scheduler.ExponentialLR):
/// lr_t = base_lr * gamma^t. Default interval: epoch.
class ExponentialLR : public LRScheduler {
public:
    /// Throws sft::Error if gamma is not finite and positive.
    ExponentialLR(optim::OptimizerBase& opt, double gamma) : LRScheduler(opt, "ExponentialLR", Interval::epoch), gamma_(gamma) {
        detail::require(std::isfinite(gamma) && gamma > 0, fmt::format("ExponentialLR: gamma {} must be finite and > 0", gamma));
        initial_step();
    }

    double gamma() const noexcept { return gamma_; }

protected:
    double compute_lr(std::size_t i) const override {
        return base_lrs_[i] * std::pow(gamma_, static_cast<double>(last_epoch_));
    }
    void visit_state(detail::StateArchive& ar) override {
        LRScheduler::visit_state(ar);
        ar.config("gamma", gamma_);
    }

private:
    double gamma_;
};

}  // namespace sft::sched
