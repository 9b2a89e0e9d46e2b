/// @file sequential_lr.hpp
/// sft::sched::SequentialLR: step-indexed schedulers run one after the other, switching at
/// milestones, as torch.optim.lr_scheduler.SequentialLR does in PyTorch 1.13.
#pragma once

#include <sft/sched/scheduler.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sft::sched {

/// Runs schedulers[0] until milestones[0], schedulers[1] until milestones[1], and so on; the
/// milestones count this SequentialLR's own steps.
///
/// What PyTorch 1.13 does, and sft with it:
///  - construction sets every group's lr back to its initial lr, moves every scheduler's step count
///    back by one (undoing the step their own construction took) and re-runs the first scheduler's
///    initial step; last_epoch() is 0;
///  - at step t == milestones[k-1], schedulers[k] is restarted at its step 0 (torch calls
///    scheduler.step(0), which evaluates the closed form at step 0), not advanced by one: the new
///    scheduler's step-0 lr is used at the milestone itself. E.g. ConstantLR(factor 0.1,
///    total_iters 2) then ExponentialLR(gamma 0.9) with milestone 2 gives 0.1, 0.1, 1, 0.9, 0.81...
///    (torch's docstring claims 0.9 at step 2; its code gives 1);
///  - a scheduler no longer (or not yet) active is not stepped.
/// Since sft's schedulers are closed forms of their own step count, each scheduler's lrs here are
/// its standalone lrs shifted by its milestone. Not reproduced: torch's OneCycleLR overwrites the
/// optimizer's initial lr, which changes what the other schedulers of a SequentialLR start from.
/// The schedulers are shared (the caller may keep handles to read them); only SequentialLR should
/// step them. The interval is the first scheduler's.
class SequentialLR : public Scheduler {
public:
    /// Throws sft::Error if `schedulers` is empty or holds a null or repeated pointer or a scheduler
    /// of another optimizer, if milestones.size() != schedulers.size() - 1, or if the milestones are
    /// not strictly increasing and >= 1.
    SequentialLR(optim::OptimizerBase& opt, std::vector<std::shared_ptr<LRScheduler>> schedulers,
                 std::vector<std::int64_t> milestones)
        : Scheduler(opt, "SequentialLR", Interval::epoch), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
        detail::require(!schedulers_.empty(), "SequentialLR: no schedulers given");
        for (std::size_t i = 0; i < schedulers_.size(); ++i) {
            detail::require(schedulers_[i] != nullptr, fmt::format("SequentialLR: scheduler {} is null", i));
            detail::require(&schedulers_[i]->optimizer() == &opt,
                            fmt::format("SequentialLR: scheduler {} ({}) drives another optimizer", i, schedulers_[i]->name()));
            for (std::size_t j = 0; j < i; ++j)
                detail::require(schedulers_[j] != schedulers_[i],
                                fmt::format("SequentialLR: schedulers {} and {} are the same {}", j, i, schedulers_[i]->name()));
        }
        detail::require(milestones_.size() + 1 == schedulers_.size(),
                        fmt::format("SequentialLR: {} schedulers need {} milestones, {} given", schedulers_.size(),
                                    schedulers_.size() - 1, milestones_.size()));
        for (std::size_t k = 0; k < milestones_.size(); ++k) {
            detail::require(milestones_[k] >= 1, fmt::format("SequentialLR: milestone {} must be >= 1", milestones_[k]));
            detail::require(k == 0 || milestones_[k] > milestones_[k - 1],
                            fmt::format("SequentialLR: milestones {} then {} are not increasing", k ? milestones_[k - 1] : 0,
                                        milestones_[k]));
        }
        interval_ = schedulers_.front()->interval();

        // torch 1.13: reset the lrs to the initial ones, undo each scheduler's initial step, and
        // redo the first scheduler's.
        for (std::size_t i = 0; i < opt.num_param_groups(); ++i) opt.set_group_lr(i, opt.group_initial_lr(i));
        for (auto& s : schedulers_) --s->last_epoch_;
        schedulers_.front()->do_step();
        last_epoch_ = 0;
        last_lr_ = schedulers_.front()->get_last_lr();
    }

    /// The schedulers, in order.
    const std::vector<std::shared_ptr<LRScheduler>>& schedulers() const noexcept { return schedulers_; }
    /// The steps at which the next scheduler takes over.
    const std::vector<std::int64_t>& milestones() const noexcept { return milestones_; }

protected:
    void do_step() override {
        ++last_epoch_;
        const std::size_t idx = static_cast<std::size_t>(
            std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) - milestones_.begin());
        LRScheduler& s = *schedulers_[idx];
        try {
            if (idx > 0 && milestones_[idx - 1] == last_epoch_)
                s.restart_at_zero();
            else
                s.do_step();
        } catch (...) {
            --last_epoch_;  // a refused step (an exhausted OneCycleLR) changes nothing
            throw;
        }
        last_lr_ = s.get_last_lr();
    }

    void visit_state(detail::StateArchive& ar) override {
        Scheduler::visit_state(ar);
        ar.config("milestones", milestones_);
        for (std::size_t i = 0; i < schedulers_.size(); ++i) {
            ar.set_prefix(fmt::format("schedulers.{}.", i));
            ar.set_owner(fmt::format("SequentialLR scheduler {} ({})", i, schedulers_[i]->name()));
            schedulers_[i]->visit_state(ar);
        }
        ar.set_prefix("");
        ar.set_owner(name_);
    }

private:
    std::vector<std::shared_ptr<LRScheduler>> schedulers_;
    std::vector<std::int64_t> milestones_;
};

}  // namespace sft::sched
