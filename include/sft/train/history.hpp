/// @file history.hpp
/// sft::train::History: what Trainer::fit measured, per optimizer step, per evaluation and per
/// epoch, as Keras' History and Hugging Face's TrainerState.log_history.
#pragma once

#include <sft/error.hpp>
#include <sft/train/monitor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace sft::train {

/// Named values measured at one point of training: an evaluation or the end of an epoch.
struct Record {
    std::size_t epoch = 0;  ///< epoch number, 1-based
    std::size_t step = 0;   ///< optimizer steps completed when the record was made
    std::map<std::string, double> values;  ///< "loss", "accuracy", "val_loss", "lr", ...

    /// True when the record holds `name`.
    bool has(const std::string& name) const noexcept { return values.count(name) != 0; }
    /// The value `name`. Throws sft::Error (kind key) naming the metric and the names present.
    double at(const std::string& name) const {
        auto it = values.find(name);
        if (it == values.end()) throw Error(ErrorKind::key, fmt::format("Record: no metric '{}'; it holds {}", name, names()));
        return it->second;
    }
    /// "'loss', 'lr'" (for error messages).
    std::string names() const {
        std::string s;
        for (const auto& kv : values) s += (s.empty() ? "'" : ", '") + kv.first + "'";
        return s.empty() ? "nothing" : s;
    }
};

/// What one optimizer step measured.
struct StepRecord {
    std::size_t epoch = 0;     ///< epoch number, 1-based
    std::size_t step = 0;      ///< this step's number, 1-based
    double loss = 0.0;         ///< mean training loss over the step's samples (all accumulated batches)
    double lr = 0.0;           ///< learning rate of the first parameter group used by this step
    double grad_norm = 0.0;    ///< global L2 norm of the gradients before clipping
    std::size_t samples = 0;   ///< samples in the step
};

/// The record of a fit: step records, evaluation records and epoch records, in order.
/// Epoch records hold the epoch's mean training "loss" and "accuracy", the learning rate "lr"
/// at its end, and the validation metrics ("val_loss", ...) of the evaluation that closed it.
class History {
public:
    /// Epochs run, the last one possibly cut short by max_steps or a stop.
    std::size_t epochs() const noexcept { return epochs_.size(); }
    /// Optimizer steps taken.
    std::size_t steps() const noexcept { return steps_.size(); }

    const std::vector<StepRecord>& step_records() const noexcept { return steps_; }
    const std::vector<Record>& eval_records() const noexcept { return evals_; }
    const std::vector<Record>& epoch_records() const noexcept { return epochs_; }

    /// The values of `name` epoch by epoch (a curve to plot). Throws sft::Error (kind key) when
    /// no epoch record holds it, naming the metrics available.
    std::vector<double> values(const std::string& name) const {
        std::vector<double> out;
        for (const auto& r : epochs_)
            if (r.has(name)) out.push_back(r.at(name));
        if (out.empty()) throw missing(name);
        return out;
    }

    /// The best value of `name` over the epoch and evaluation records, the lowest for Mode::min,
    /// the highest for Mode::max; Mode::inferred reads the name ("acc" -> max, "loss" -> min).
    /// NaN values are skipped. Throws sft::Error: kind key when no record holds `name` (naming
    /// the metrics available), kind invalid_argument when the mode cannot be inferred.
    double best(const std::string& name, Mode mode = Mode::inferred) const {
        return best_record(name, mode).at(name);
    }

    /// The record (epoch or evaluation) holding the best value of `name`; the earliest among equals.
    /// Throws as best().
    const Record& best_record(const std::string& name, Mode mode = Mode::inferred) const {
        bool seen = false;
        for (const auto* list : {&evals_, &epochs_})
            for (const auto& r : *list) seen = seen || r.has(name);
        if (!seen) throw missing(name);  // before the mode: a misspelled name is the likelier fault
        const Mode m = resolve_mode(name, mode, "History::best");
        const Record* best = nullptr;
        for (const auto* list : {&evals_, &epochs_})
            for (const auto& r : *list) {
                auto it = r.values.find(name);
                if (it == r.values.end() || std::isnan(it->second)) continue;
                if (!best || is_improvement(it->second, best->at(name), m) ||
                    (it->second == best->at(name) && r.step < best->step))
                    best = &r;
            }
        if (!best) throw Error(ErrorKind::numeric, fmt::format("History::best: every value of '{}' is NaN", name));
        return *best;
    }

    /// The value of `name` in the last epoch record holding it. Throws sft::Error (kind key) if none.
    double last(const std::string& name) const {
        for (auto it = epochs_.rbegin(); it != epochs_.rend(); ++it)
            if (it->has(name)) return it->at(name);
        throw missing(name);
    }

    /// Why training ended before its planned epochs or steps ("" when it ran them all), e.g.
    /// "EarlyStopping: val_loss did not improve for 3 evaluations".
    const std::string& stop_reason() const noexcept { return stop_reason_; }
    bool stopped_early() const noexcept { return !stop_reason_.empty(); }

    /// Appends records (the Trainer does; exposed for callbacks that replay or merge histories).
    void add_step(const StepRecord& r) { steps_.push_back(r); }
    void add_eval(const Record& r) { evals_.push_back(r); }
    void add_epoch(const Record& r) { epochs_.push_back(r); }
    void set_stop_reason(const std::string& reason) { stop_reason_ = reason; }
    /// Makes room for `n` step records in all, so that add_step allocates nothing until then
    /// (the Trainer reserves each epoch's steps at its start). Grows at least geometrically.
    void reserve_steps(std::size_t n) {
        if (n > steps_.capacity()) steps_.reserve(std::max(n, 2 * steps_.capacity()));
    }

private:
    Error missing(const std::string& name) const {
        std::map<std::string, int> names;
        for (const auto* list : {&evals_, &epochs_})
            for (const auto& r : *list)
                for (const auto& kv : r.values) names[kv.first] = 1;
        std::string s;
        for (const auto& kv : names) s += (s.empty() ? "'" : ", '") + kv.first + "'";
        return Error(ErrorKind::key, fmt::format("History: no metric '{}' was recorded; recorded: {}", name, s.empty() ? "nothing" : s));
    }

    std::vector<StepRecord> steps_;
    std::vector<Record> evals_;
    std::vector<Record> epochs_;
    std::string stop_reason_;
};

}  // namespace sft::train
