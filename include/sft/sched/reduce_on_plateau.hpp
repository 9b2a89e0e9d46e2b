/// @file reduce_on_plateau.hpp
/// sft::sched::ReduceLROnPlateau: lowers the lr when a monitored metric stops improving, as
/// torch.optim.lr_scheduler.ReduceLROnPlateau does in PyTorch 1.13.
#pragma once

#include <sft/sched/scheduler.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace sft::sched {

/// Multiplies every group's lr by `factor` once the metric passed to step(metric) has not improved
/// for more than `patience` steps (torch.optim.lr_scheduler.ReduceLROnPlateau):
///  - improvement: in min mode a < best * (1 - threshold) (rel) or a < best - threshold (abs);
///    in max mode a > best * (1 + threshold) (rel) or a > best + threshold (abs). best starts at
///    +inf (min) or -inf (max). A NaN metric never improves (torch's comparison, kept).
///  - after a reduction, `cooldown` steps ignore bad epochs;
///  - new_lr = max(lr * factor, min_lr[i]), applied only if lr - new_lr > eps.
/// It scales the optimizer's current lr (not the initial one) and does not touch the lr at
/// construction. It needs a metric: step() throws, needs_metric() is true. Default interval: epoch.
class ReduceLROnPlateau : public Scheduler {
public:
    /// min: lower is better (a loss); max: higher is better (an accuracy).
    enum class Mode { min, max };
    /// rel: improvement relative to best; abs: by an absolute margin.
    enum class ThresholdMode { rel, abs };

    /// One min_lr for every group. See the per-group overload for what throws.
    explicit ReduceLROnPlateau(optim::OptimizerBase& opt, Mode mode = Mode::min, double factor = 0.1, std::int64_t patience = 10,
                               double threshold = 1e-4, ThresholdMode threshold_mode = ThresholdMode::rel,
                               std::int64_t cooldown = 0, double min_lr = 0.0, double eps = 1e-8)
        : ReduceLROnPlateau(opt, mode, factor, patience, threshold, threshold_mode, cooldown,
                            std::vector<double>(opt.num_param_groups(), min_lr), eps) {}

    /// One min_lr per parameter group. Throws sft::Error if factor is not in [0, 1), patience or
    /// cooldown is negative, threshold or eps is negative or not finite, or min_lrs has not one
    /// finite non-negative value per group.
    ReduceLROnPlateau(optim::OptimizerBase& opt, Mode mode, double factor, std::int64_t patience, double threshold,
                      ThresholdMode threshold_mode, std::int64_t cooldown, std::vector<double> min_lrs, double eps = 1e-8)
        : Scheduler(opt, "ReduceLROnPlateau", Interval::epoch), mode_(mode), factor_(factor), patience_(patience),
          threshold_(threshold), threshold_mode_(threshold_mode), cooldown_(cooldown), min_lrs_(std::move(min_lrs)), eps_(eps) {
        detail::require(factor >= 0 && factor < 1, fmt::format("ReduceLROnPlateau: factor {} must be in [0, 1)", factor));
        detail::require(patience >= 0, fmt::format("ReduceLROnPlateau: patience {} must be >= 0", patience));
        detail::require(std::isfinite(threshold) && threshold >= 0,
                        fmt::format("ReduceLROnPlateau: threshold {} must be finite and >= 0", threshold));
        detail::require(cooldown >= 0, fmt::format("ReduceLROnPlateau: cooldown {} must be >= 0", cooldown));
        detail::require(min_lrs_.size() == opt.num_param_groups(),
                        fmt::format("ReduceLROnPlateau: {} min_lr values for {} parameter groups", min_lrs_.size(),
                                    opt.num_param_groups()));
        for (double m : min_lrs_)
            detail::require(std::isfinite(m) && m >= 0, fmt::format("ReduceLROnPlateau: min_lr {} must be finite and >= 0", m));
        detail::require(std::isfinite(eps) && eps >= 0, fmt::format("ReduceLROnPlateau: eps {} must be finite and >= 0", eps));
        best_ = worst();
        read_lrs();  // torch has no last lr before the first step; the current lrs stand for it
    }

    bool needs_metric() const noexcept override { return true; }

    /// The best metric seen so far (+inf in min mode, -inf in max mode before any step).
    double best() const noexcept { return best_; }
    /// Steps since the last improvement (reset by a reduction and during cooldown).
    std::int64_t num_bad_epochs() const noexcept { return num_bad_epochs_; }
    /// Steps of cooldown left.
    std::int64_t cooldown_counter() const noexcept { return cooldown_counter_; }
    bool in_cooldown() const noexcept { return cooldown_counter_ > 0; }

    Mode mode() const noexcept { return mode_; }
    double factor() const noexcept { return factor_; }
    std::int64_t patience() const noexcept { return patience_; }
    double threshold() const noexcept { return threshold_; }
    ThresholdMode threshold_mode() const noexcept { return threshold_mode_; }
    std::int64_t cooldown() const noexcept { return cooldown_; }
    const std::vector<double>& min_lrs() const noexcept { return min_lrs_; }
    double eps() const noexcept { return eps_; }

    /// True if `a` improves on `best` under this mode and threshold (torch's is_better).
    bool is_better(double a, double best) const noexcept {
        if (mode_ == Mode::min)
            return threshold_mode_ == ThresholdMode::rel ? a < best * (1. - threshold_) : a < best - threshold_;
        return threshold_mode_ == ThresholdMode::rel ? a > best * (threshold_ + 1.) : a > best + threshold_;
    }

protected:
    void do_step_metric(double current) override {
        ++last_epoch_;
        if (is_better(current, best_)) {
            best_ = current;
            num_bad_epochs_ = 0;
        } else {
            ++num_bad_epochs_;
        }
        if (in_cooldown()) {
            --cooldown_counter_;
            num_bad_epochs_ = 0;  // bad epochs during cooldown do not count
        }
        if (num_bad_epochs_ > patience_) {
            reduce_lr();
            cooldown_counter_ = cooldown_;
            num_bad_epochs_ = 0;
        }
        read_lrs();
    }

    void visit_state(detail::StateArchive& ar) override {
        Scheduler::visit_state(ar);
        ar.state("best", best_);
        ar.state("num_bad_epochs", num_bad_epochs_);
        ar.state("cooldown_counter", cooldown_counter_);
        ar.config("mode", static_cast<std::int64_t>(mode_ == Mode::max));
        ar.config("factor", factor_);
        ar.config("patience", patience_);
        ar.config("threshold", threshold_);
        ar.config("threshold_mode", static_cast<std::int64_t>(threshold_mode_ == ThresholdMode::abs));
        ar.config("cooldown", cooldown_);
        ar.config("min_lrs", min_lrs_);
        ar.config("eps", eps_);
    }

private:
    double worst() const noexcept {
        return mode_ == Mode::min ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
    }

    void reduce_lr() {
        for (std::size_t i = 0; i < min_lrs_.size(); ++i) {
            const double old_lr = opt_->group_lr(i);
            const double new_lr = std::max(old_lr * factor_, min_lrs_[i]);
            if (old_lr - new_lr > eps_) opt_->set_group_lr(i, new_lr);
        }
    }

    Mode mode_;
    double factor_;
    std::int64_t patience_;
    double threshold_;
    ThresholdMode threshold_mode_;
    std::int64_t cooldown_;
    std::vector<double> min_lrs_;
    double eps_;
    double best_ = 0;
    std::int64_t num_bad_epochs_ = 0;
    std::int64_t cooldown_counter_ = 0;
};

}  // namespace sft::sched
