/// @file one_cycle.hpp
/// sft::sched::OneCycleLR, the 1cycle policy (Smith & Topin 2017, "Super-Convergence") as
/// torch.optim.lr_scheduler.OneCycleLR computes it in PyTorch 1.13.
#pragma once

#include <sft/sched/cosine_annealing.hpp>
#include <sft/sched/scheduler.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace sft::sched {

/// The 1cycle policy: each group's lr rises from initial_lr = max_lr / div_factor to max_lr over the
/// first pct_start of total_steps, then falls to min_lr = initial_lr / final_div_factor; with
/// three_phase it first falls back to initial_lr symmetrically, then to min_lr. Each phase anneals
/// with anneal(start, end, pct), pct = (t - phase_start) / (phase_end - phase_start):
///     cos:    end + (start - end) / 2 * (cos(pi * pct) + 1)
///     linear: (end - start) * pct + start
/// with phase ends pct_start*total_steps - 1, [2*pct_start*total_steps - 2,] total_steps - 1, as in torch.
///
/// As in torch, construction sets every group's lr to max_lr / div_factor (the group's own initial lr
/// is ignored), and step() may be called total_steps times. Differences from torch: momentum (or
/// Adam's beta1) is not cycled (torch's cycle_momentum, on by default there; set
/// cycle_momentum=False in torch to compare); the optimizer's initial lr is not overwritten (torch
/// overwrites group['initial_lr'], which other schedulers built later then start from); and a
/// configuration in which a phase has no length (pct_start * total_steps <= 1, ...) is rejected
/// (torch divides by zero or extrapolates). Default interval: step.
class OneCycleLR : public LRScheduler {
public:
    /// How each phase interpolates between its start and end lr.
    enum class AnnealStrategy { cos, linear };

    /// One max_lr for every group. See the per-group overload for what throws.
    OneCycleLR(optim::OptimizerBase& opt, double max_lr, std::int64_t total_steps, double pct_start = 0.3,
               AnnealStrategy anneal_strategy = AnnealStrategy::cos, double div_factor = 25.0,
               double final_div_factor = 1e4, bool three_phase = false)
        : OneCycleLR(opt, std::vector<double>(opt.num_param_groups(), max_lr), total_steps, pct_start, anneal_strategy,
                     div_factor, final_div_factor, three_phase) {}

    /// One max_lr per parameter group. Throws sft::Error if max_lrs has not one finite positive value
    /// per group, total_steps < 1, pct_start is outside [0, 1], div_factor or final_div_factor is not
    /// finite and positive, or a phase would be empty.
    OneCycleLR(optim::OptimizerBase& opt, std::vector<double> max_lrs, std::int64_t total_steps, double pct_start = 0.3,
               AnnealStrategy anneal_strategy = AnnealStrategy::cos, double div_factor = 25.0,
               double final_div_factor = 1e4, bool three_phase = false)
        : LRScheduler(opt, "OneCycleLR", Interval::step), max_lrs_(std::move(max_lrs)), total_steps_(total_steps),
          pct_start_(pct_start), anneal_(anneal_strategy), div_factor_(div_factor), final_div_factor_(final_div_factor),
          three_phase_(three_phase) {
        detail::require(max_lrs_.size() == opt.num_param_groups(),
                        fmt::format("OneCycleLR: {} max_lr values for {} parameter groups", max_lrs_.size(), opt.num_param_groups()));
        for (double m : max_lrs_)
            detail::require(std::isfinite(m) && m > 0, fmt::format("OneCycleLR: max_lr {} must be finite and > 0", m));
        detail::require(total_steps >= 1, fmt::format("OneCycleLR: total_steps {} must be >= 1", total_steps));
        detail::require(pct_start >= 0 && pct_start <= 1, fmt::format("OneCycleLR: pct_start {} must be in [0, 1]", pct_start));
        detail::require(std::isfinite(div_factor) && div_factor > 0,
                        fmt::format("OneCycleLR: div_factor {} must be finite and > 0", div_factor));
        detail::require(std::isfinite(final_div_factor) && final_div_factor > 0,
                        fmt::format("OneCycleLR: final_div_factor {} must be finite and > 0", final_div_factor));

        // torch's _schedule_phases: (end_step, start lr, end lr), the products rounded as in Python.
        const double T = static_cast<double>(total_steps);
        if (three_phase) {
            phases_ = {{detail::rounded(pct_start * T) - 1, Level::initial, Level::max},
                       {detail::rounded(2 * pct_start * T) - 2, Level::max, Level::initial},
                       {T - 1, Level::initial, Level::min}};
        } else {
            phases_ = {{detail::rounded(pct_start * T) - 1, Level::initial, Level::max}, {T - 1, Level::max, Level::min}};
        }
        double start = 0;
        for (std::size_t k = 0; k < phases_.size(); ++k) {
            detail::require(phases_[k].end_step - start > 0,
                            fmt::format("OneCycleLR: phase {} of {} is empty (steps {} to {}) with total_steps {} and "
                                        "pct_start {}; it needs pct_start * total_steps > 1 and a later phase of at least one step",
                                        k + 1, phases_.size(), start, phases_[k].end_step, total_steps, pct_start));
            start = phases_[k].end_step;
        }

        // torch overwrites group['initial_lr'] with max_lr / div_factor: that is the base lr here.
        min_lrs_.resize(max_lrs_.size());
        for (std::size_t i = 0; i < max_lrs_.size(); ++i) {
            base_lrs_[i] = max_lrs_[i] / div_factor;
            min_lrs_[i] = base_lrs_[i] / final_div_factor;
        }
        initial_step();
    }

    const std::vector<double>& max_lrs() const noexcept { return max_lrs_; }
    /// The lr each group ends at: max_lr / div_factor / final_div_factor.
    const std::vector<double>& min_lrs() const noexcept { return min_lrs_; }
    std::int64_t total_steps() const noexcept { return total_steps_; }
    double pct_start() const noexcept { return pct_start_; }
    AnnealStrategy anneal_strategy() const noexcept { return anneal_; }
    double div_factor() const noexcept { return div_factor_; }
    double final_div_factor() const noexcept { return final_div_factor_; }
    bool three_phase() const noexcept { return three_phase_; }

protected:
    void advance() override {
        if (last_epoch_ > total_steps_) {
            --last_epoch_;  // a refused step changes nothing
            throw Error(ErrorKind::state, fmt::format("OneCycleLR: step() called {} times, past total_steps {}",
                                                      last_epoch_ + 1, total_steps_));
        }
    }

    double compute_lr(std::size_t i) const override {
        const double t = static_cast<double>(last_epoch_);
        double start = 0;
        for (std::size_t k = 0; k < phases_.size(); ++k) {
            const Phase& p = phases_[k];
            if (t <= p.end_step || k + 1 == phases_.size()) {
                const double pct = (t - start) / (p.end_step - start);
                return anneal(level(p.from, i), level(p.to, i), pct);
            }
            start = p.end_step;
        }
        return base_lrs_[i];  // unreachable: the last phase always matches
    }

    void visit_state(detail::StateArchive& ar) override {
        LRScheduler::visit_state(ar);
        ar.config("max_lrs", max_lrs_);
        ar.config("total_steps", total_steps_);
        ar.config("pct_start", pct_start_);
        ar.config("anneal_strategy", static_cast<std::int64_t>(anneal_ == AnnealStrategy::linear));
        ar.config("div_factor", div_factor_);
        ar.config("final_div_factor", final_div_factor_);
        ar.config("three_phase", three_phase_);
    }

private:
    enum class Level { initial, max, min };
    struct Phase {
        double end_step;
        Level from;
        Level to;
    };

    double level(Level l, std::size_t i) const noexcept {
        return l == Level::initial ? base_lrs_[i] : l == Level::max ? max_lrs_[i] : min_lrs_[i];
    }

    double anneal(double start, double end, double pct) const noexcept {
        if (anneal_ == AnnealStrategy::cos) {
            const double cos_out = std::cos(detail::pi * pct) + 1;  // torch's _annealing_cos
            return end + (start - end) / 2.0 * cos_out;
        }
        return (end - start) * pct + start;  // torch's _annealing_linear
    }

    std::vector<double> max_lrs_;
    std::vector<double> min_lrs_;
    std::int64_t total_steps_;
    double pct_start_;
    AnnealStrategy anneal_;
    double div_factor_;
    double final_div_factor_;
    bool three_phase_;
    std::vector<Phase> phases_;
};

}  // namespace sft::sched
