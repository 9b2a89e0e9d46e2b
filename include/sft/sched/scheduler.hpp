/// @file scheduler.hpp
/// sft::sched::Scheduler, the non-template base of every learning-rate scheduler (what the Trainer
/// drives), and sft::sched::LRScheduler, the base of the step-indexed ones (torch's _LRScheduler).
///
/// A scheduler maps a step count to the learning rate of every parameter group of an optimizer
/// (STYLE.md rule 7): it reads and writes the groups' lrs through sft::optim::OptimizerBase and owns
/// nothing else. As in PyTorch 1.13 (torch.optim.lr_scheduler), a step-indexed scheduler writes the
/// step-0 learning rate at construction, and `step()` is called after `optimizer.step()`:
///
///     sft::sched::WarmupCosine sched(opt, /*warmup_steps=*/5, /*total_steps=*/100);
///     for (...) { ...; opt.step(); sched.step(); }
///
/// PyTorch computes most schedules recursively ("chainable form": lr <- lr * gamma); sft evaluates
/// the closed form of each schedule from the step count and the group's initial lr instead. Both
/// agree to rounding when the scheduler is the only writer of the lr (the fixtures of
/// tests/sched measure it); a value written into the optimizer by someone else between two steps is
/// overwritten at the next step rather than compounded. ReduceLROnPlateau is the exception: it
/// scales the optimizer's current lr, as PyTorch does.
///
/// State: `state_dict()` returns `std::map<std::string, sft::Tensor<double>>` (float64, so
/// `sft::io::save_safetensors` can write it and a restored scheduler continues bit-identically).
/// It holds the counters, the lrs and the configuration; `load_state_dict()` restores the counters
/// and lrs and checks the configuration against its own.
#pragma once

#include <sft/config.hpp>
#include <sft/error.hpp>
#include <sft/optim/optimizer_base.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace sft::sched {

/// When a scheduler is meant to be stepped: after every optimizer step, or once per epoch.
/// A hint for the Trainer (Lightning's "interval"); the scheduler itself only counts step() calls.
enum class Interval {
    step,   ///< after every optimizer.step() (warm-up schedules, OneCycleLR)
    epoch,  ///< once per epoch (StepLR, ReduceLROnPlateau on a validation metric)
};

namespace detail {

/// Visits every persistent field of a scheduler, once for each of three jobs: writing a state dict,
/// checking one against the scheduler (keys, shapes, configuration; nothing is modified), and
/// applying a checked one. Loading runs check then apply, so a failed load changes nothing.
/// Integers travel as float64 (exact below 2^53); scalars are stored with shape [1].
class StateArchive {
public:
    enum class Mode { save, check, apply };

    /// For Mode::save: fields are written into `out`.
    StateArchive(std::string owner, std::map<std::string, Tensor<double>>& out)
        : mode_(Mode::save), owner_(std::move(owner)), out_(&out), in_(&out) {}
    /// For Mode::check and Mode::apply: fields are read from `in`, which is never modified.
    /// `owner` names the scheduler in error messages ("StepLR").
    StateArchive(Mode mode, std::string owner, const std::map<std::string, Tensor<double>>& in)
        : mode_(mode), owner_(std::move(owner)), in_(&in) {
        SFT_ASSERT(mode != Mode::save);
    }

    Mode mode() const noexcept { return mode_; }

    /// Keys visited from now on are prefixed (SequentialLR's "schedulers.0.").
    void set_prefix(std::string prefix) { prefix_ = std::move(prefix); }
    /// Error messages name this scheduler from now on.
    void set_owner(std::string owner) { owner_ = std::move(owner); }

    /// A counter restored on load.
    void state(const std::string& key, std::int64_t& value) {
        if (mode_ == Mode::save) return put(key, {static_cast<double>(value)});
        const double v = scalar(key)[0];
        check_integer(key, v);
        if (mode_ == Mode::apply) value = static_cast<std::int64_t>(v);
    }
    /// A real number restored on load (inf allowed: ReduceLROnPlateau's best before any metric).
    void state(const std::string& key, double& value) {
        if (mode_ == Mode::save) return put(key, {value});
        const double v = scalar(key)[0];
        if (mode_ == Mode::apply) value = v;
    }
    /// One value per parameter group (or any fixed length), restored on load.
    void state(const std::string& key, std::vector<double>& values) {
        if (mode_ == Mode::save) return put(key, values);
        const Tensor<double>& t = vector(key, values.size());
        if (mode_ == Mode::apply) values.assign(t.begin(), t.end());
    }

    /// A configuration value: saved, and on load required to equal this scheduler's.
    void config(const std::string& key, double value) { config(key, std::vector<double>{value}, true); }
    void config(const std::string& key, std::int64_t value) { config(key, static_cast<double>(value)); }
    void config(const std::string& key, bool value) { config(key, value ? 1.0 : 0.0); }
    void config(const std::string& key, const std::vector<std::int64_t>& values) {
        config(key, std::vector<double>(values.begin(), values.end()), false);
    }
    void config(const std::string& key, const std::vector<double>& values) { config(key, values, false); }

    /// After a check pass: throws sft::Error (ErrorKind::key) naming the first key no field visited.
    void check_no_unexpected_keys() const {
        for (const auto& kv : *in_)
            if (!visited_.count(kv.first))
                throw Error(ErrorKind::key, fmt::format("{}: unexpected key '{}' in state_dict", owner_, kv.first));
    }

private:
    void put(const std::string& key, const std::vector<double>& values) {
        Tensor<double> t({values.size()}, values);
        (*out_)[prefix_ + key] = t;
    }

    const Tensor<double>& find(const std::string& key) {
        const std::string full = prefix_ + key;
        auto it = in_->find(full);
        if (it == in_->end())
            throw Error(ErrorKind::key, fmt::format("{}: state_dict has no key '{}'", owner_, full));
        visited_.insert(full);
        return it->second;
    }

    const Tensor<double>& scalar(const std::string& key) {
        const Tensor<double>& t = find(key);
        if (t.numel() != 1 || t.rank() > 1)
            throw Error(ErrorKind::shape, fmt::format("{}: state_dict '{}{}' has shape {}, expected [1]", owner_,
                                                      prefix_, key, t.shape().str()));
        return t;
    }

    const Tensor<double>& vector(const std::string& key, std::size_t n) {
        const Tensor<double>& t = find(key);
        if (t.rank() != 1 || t.numel() != n)
            throw Error(ErrorKind::shape, fmt::format("{}: state_dict '{}{}' has shape {}, expected [{}]", owner_,
                                                      prefix_, key, t.shape().str(), n));
        return t;
    }

    void check_integer(const std::string& key, double v) const {
        if (!(std::floor(v) == v && std::fabs(v) <= 9007199254740992.0))
            throw Error(ErrorKind::format,
                        fmt::format("{}: state_dict '{}{}' is {}, expected an integer", owner_, prefix_, key, v));
    }

    void config(const std::string& key, const std::vector<double>& values, bool is_scalar) {
        if (mode_ == Mode::save) return put(key, values);
        const Tensor<double>& t = is_scalar ? scalar(key) : vector(key, values.size());
        for (std::size_t i = 0; i < values.size(); ++i)
            if (!(t[i] == values[i]))
                throw Error(ErrorKind::invalid_argument,
                            fmt::format("{}: state_dict '{}{}' was saved with {}, this scheduler has {}", owner_,
                                        prefix_, key, fmt::join(t.begin(), t.end(), ", "),
                                        fmt::join(values.begin(), values.end(), ", ")));
    }

    Mode mode_;
    std::string owner_;
    std::string prefix_;
    std::map<std::string, Tensor<double>>* out_ = nullptr;
    const std::map<std::string, Tensor<double>>* in_;
    std::set<std::string> visited_;
};

/// Python's math.pi, the constant torch's and transformers' formulas use.
inline constexpr double pi = 3.141592653589793;

/// `v` rounded to double right here: a volatile round trip keeps the compiler from fusing the
/// product that made `v` into a later add (-ffp-contract=fast, GCC's default, makes an FMA of
/// `a * b - 1` once FMA instructions are enabled), so that values torch compares against step
/// counts (OneCycleLR's phase ends) round as they do in Python.
inline double rounded(double v) noexcept {
    volatile double r = v;
    return r;
}

/// Throws sft::Error (ErrorKind::invalid_argument) with `message` unless `ok`: constructor checks.
inline void require(bool ok, const std::string& message) {
    if (!ok) throw Error(ErrorKind::invalid_argument, message);
}

}  // namespace detail

/// The base of every scheduler: what the Trainer needs to drive one without knowing its type.
///
/// step() advances a step-indexed scheduler; step(metric) advances one that monitors a metric
/// (needs_metric() tells which; the other overload throws). interval() says whether the Trainer
/// should step it after every optimizer step or once per epoch. Not copyable: a scheduler holds a
/// reference to its optimizer, which must outlive it.
class Scheduler {
public:
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;
    virtual ~Scheduler() = default;

    /// Advances one step and writes the new lr of every group into the optimizer.
    /// Throws sft::Error (ErrorKind::state) if the scheduler needs a metric (use step(metric)),
    /// or if the schedule is exhausted (OneCycleLR past total_steps).
    void step() {
        if (needs_metric())
            throw Error(ErrorKind::state, fmt::format("{}: step() called without the metric it monitors; call step(metric)", name_));
        do_step();
    }

    /// Advances one step given the monitored metric (a validation loss, an accuracy).
    /// Throws sft::Error (ErrorKind::state) if the scheduler takes no metric (use step()).
    void step(double metric) {
        if (!needs_metric())
            throw Error(ErrorKind::state, fmt::format("{}: step({}) called with a metric, but this scheduler takes none; call step()", name_, metric));
        do_step_metric(metric);
    }

    /// True if the scheduler must be stepped with step(metric) (ReduceLROnPlateau).
    virtual bool needs_metric() const noexcept { return false; }

    /// Whether the Trainer should step this scheduler per optimizer step or per epoch.
    Interval interval() const noexcept { return interval_; }
    /// Overrides the default interval of the scheduler's type; returns *this.
    Scheduler& set_interval(Interval interval) noexcept {
        interval_ = interval;
        return *this;
    }

    /// The number of step() calls since construction (torch's last_epoch: 0 right after construction).
    std::int64_t last_epoch() const noexcept { return last_epoch_; }

    /// The lr of every parameter group as this scheduler last set it (torch's get_last_lr()).
    const std::vector<double>& get_last_lr() const noexcept { return last_lr_; }

    /// The scheduler's type name, as error messages print it ("WarmupCosine").
    const std::string& name() const noexcept { return name_; }

    /// The optimizer whose learning rates this scheduler writes.
    optim::OptimizerBase& optimizer() const noexcept { return *opt_; }

    /// The counters, lrs and configuration, as float64 tensors (scalars have shape [1]).
    std::map<std::string, Tensor<double>> state_dict() const {
        std::map<std::string, Tensor<double>> dict;
        detail::StateArchive ar(name_, dict);
        const_cast<Scheduler*>(this)->visit_state(ar);  // save mode only reads the fields
        return dict;
    }

    /// Restores what state_dict() saved, then writes the restored lrs into the optimizer so that the
    /// run continues exactly where the saved one was. Throws sft::Error and changes nothing if a key
    /// is missing or unexpected (ErrorKind::key), a shape differs (ErrorKind::shape, e.g. another
    /// number of parameter groups) or the configuration differs (ErrorKind::invalid_argument).
    void load_state_dict(const std::map<std::string, Tensor<double>>& state) {
        detail::StateArchive check(detail::StateArchive::Mode::check, name_, state);
        visit_state(check);
        check.check_no_unexpected_keys();
        detail::StateArchive apply(detail::StateArchive::Mode::apply, name_, state);
        visit_state(apply);
        after_load();
    }

protected:
    /// `name` is the type name used in messages; `interval` the default stepping interval.
    Scheduler(optim::OptimizerBase& opt, std::string name, Interval interval)
        : opt_(&opt), name_(std::move(name)), interval_(interval), last_lr_(opt.num_param_groups()) {}

    Scheduler(Scheduler&&) noexcept = default;

    /// One step without a metric (step-indexed schedulers override it).
    virtual void do_step() {}
    /// One step with a metric (ReduceLROnPlateau overrides it).
    virtual void do_step_metric(double /*metric*/) {}

    /// Visits every persistent field (see detail::StateArchive). Overrides call the base first.
    virtual void visit_state(detail::StateArchive& ar) {
        ar.state("last_epoch", last_epoch_);
        ar.state("last_lr", last_lr_);
    }

    /// After a successful load: writes the restored lrs into the optimizer.
    virtual void after_load() { write_lrs(last_lr_); }

    /// Sets every group's lr in the optimizer and records it as get_last_lr().
    void write_lrs(const std::vector<double>& lrs) {
        for (std::size_t i = 0; i < lrs.size(); ++i) opt_->set_group_lr(i, lrs[i]);
        last_lr_ = lrs;
    }

    /// Rereads the groups' current lrs into get_last_lr().
    void read_lrs() {
        for (std::size_t i = 0; i < last_lr_.size(); ++i) last_lr_[i] = opt_->group_lr(i);
    }

    optim::OptimizerBase* opt_;
    std::string name_;
    Interval interval_;
    std::int64_t last_epoch_ = 0;
    std::vector<double> last_lr_;

    friend class SequentialLR;
};

/// The base of the step-indexed schedulers (torch's _LRScheduler): the lr of group i after
/// last_epoch() steps is a function of last_epoch() and the group's base lr (its initial lr,
/// OptimizerBase::group_initial_lr). Construction performs PyTorch's initial step: last_epoch()
/// is 0 and the step-0 lr is written into the optimizer.
class LRScheduler : public Scheduler {
public:
    /// The lr each group's schedule is scaled from (torch's base_lrs).
    const std::vector<double>& base_lrs() const noexcept { return base_lrs_; }

protected:
    LRScheduler(optim::OptimizerBase& opt, std::string name, Interval interval) : Scheduler(opt, std::move(name), interval) {
        base_lrs_.resize(opt.num_param_groups());
        for (std::size_t i = 0; i < base_lrs_.size(); ++i) base_lrs_[i] = opt.group_initial_lr(i);
        last_epoch_ = -1;
    }

    /// Each concrete scheduler's constructor ends with this: torch's _initial_step(), the step
    /// from last_epoch -1 to 0 that writes the step-0 lr.
    void initial_step() { do_step(); }

    /// The lr of group i at the current last_epoch_.
    virtual double compute_lr(std::size_t group) const = 0;

    /// Updates internal state after last_epoch_ was incremented (CosineAnnealingWarmRestarts'
    /// cycle counters); the default has none. Throws when the schedule is exhausted.
    virtual void advance() {}

    /// Resets internal state for last_epoch_ == 0 (SequentialLR's step(0) at a milestone).
    virtual void restart() {}

    void do_step() override {
        ++last_epoch_;
        advance();
        apply();
    }

    /// torch's scheduler.step(0): jumps back to step 0 of the schedule (SequentialLR).
    void restart_at_zero() {
        last_epoch_ = 0;
        restart();
        apply();
    }

    /// Writes compute_lr(i) into every group. In place into last_lr_ (compute_lr does not read
    /// it): a step allocates nothing.
    void apply() {
        last_lr_.resize(base_lrs_.size());
        for (std::size_t i = 0; i < last_lr_.size(); ++i) last_lr_[i] = compute_lr(i);
        for (std::size_t i = 0; i < last_lr_.size(); ++i) opt_->set_group_lr(i, last_lr_[i]);
    }

    void visit_state(detail::StateArchive& ar) override {
        Scheduler::visit_state(ar);
        ar.state("base_lrs", base_lrs_);
    }

    std::vector<double> base_lrs_;

    friend class SequentialLR;
};

}  // namespace sft::sched
