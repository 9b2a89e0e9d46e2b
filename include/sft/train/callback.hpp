/// @file callback.hpp
/// sft::train::Callback, the virtual base of everything that hooks into Trainer::fit, and the
/// TrainState it is handed. A hook is an `override` of a virtual function, so a misspelled hook
/// does not compile (STYLE.md: no callbacks detected by SFINAE).
///
/// Order of the hooks in a fit:
///   on_train_begin
///   for each epoch: on_epoch_begin
///                   for each optimizer step: on_step_begin, on_step_end, [on_evaluate every eval_steps]
///                   [on_evaluate when evaluating every epoch], on_epoch_end
///   on_train_end   (not called when fit throws)
/// A callback stops training with state.request_stop(reason): the current step finishes, then
/// the epoch is closed (on_epoch_end), then on_train_end runs.
#pragma once

#include <sft/error.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <map>
#include <memory>
#include <string>

namespace sft::train {

class History;

/// A copy of a model's parameters and buffers taken at some point, that can be put back.
class WeightsSnapshot {
public:
    virtual ~WeightsSnapshot() = default;
    /// Copies the saved values back into the model they were taken from.
    virtual void restore() = 0;
};

/// What callbacks may do with the model being trained, whatever its element type.
class ModelHandle {
public:
    virtual ~ModelHandle() = default;
    /// A copy of every parameter and buffer (clone()d: later training does not change it).
    virtual std::unique_ptr<WeightsSnapshot> snapshot() = 0;
    /// Saves the state_dict to `path` as safetensors (a temporary file renamed over `path`, so a
    /// reader never sees a partial file). Throws sft::Error (kind numeric) without writing when a
    /// value is not finite, (kind io) when the file cannot be written.
    virtual void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) = 0;
    /// True when every parameter and buffer value is finite.
    virtual bool all_finite() = 0;
};

/// The state of a fit as callbacks see it.
struct TrainState {
    std::size_t epoch = 0;            ///< current epoch number, 1-based (0 before the first)
    std::size_t num_epochs = 0;       ///< epochs planned
    std::size_t global_step = 0;      ///< optimizer steps completed
    std::size_t max_steps = 0;        ///< optimizer steps planned in total
    std::size_t steps_per_epoch = 0;  ///< optimizer steps in a full epoch
    std::size_t step_in_epoch = 0;    ///< optimizer steps completed in the current epoch
    std::size_t samples_seen = 0;     ///< training samples processed since the fit began
    std::size_t batch_size = 0;       ///< samples per batch
    std::size_t eval_count = 0;       ///< evaluations done so far
    /// The latest measurements. After a step: "loss", "lr", "grad_norm" of that step. At
    /// on_evaluate and on_epoch_end: "loss" and "accuracy" (mean over the epoch so far), "lr",
    /// and the validation metrics "val_loss", "val_accuracy", "val_<name>".
    std::map<std::string, double> logs;
    const History* history = nullptr;  ///< the history being written
    ModelHandle* model = nullptr;      ///< the model being trained

    bool should_stop = false;  ///< set by request_stop()
    std::string stop_reason;   ///< why (the first reason given)

    /// Asks the Trainer to stop after the current step (the epoch is then closed as usual).
    void request_stop(const std::string& reason) {
        if (!should_stop) stop_reason = reason;
        should_stop = true;
    }

    /// logs[name]. Throws sft::Error (kind key) naming `who`, the metric and the names logged.
    double metric(const std::string& name, const std::string& who = "TrainState") const {
        auto it = logs.find(name);
        if (it != logs.end()) return it->second;
        std::string names;
        for (const auto& kv : logs) names += (names.empty() ? "'" : ", '") + kv.first + "'";
        throw Error(ErrorKind::key, fmt::format("{}: metric '{}' is not logged at epoch {} step {}; logged: {}", who, name, epoch,
                                                global_step, names.empty() ? "nothing" : names));
    }
};

/// Base of every callback: override the hooks you need (all do nothing by default).
class Callback {
public:
    virtual ~Callback() = default;
    /// Once, before the first epoch.
    virtual void on_train_begin(TrainState&) {}
    /// Once, after the last epoch (also after a stop); not when fit throws.
    virtual void on_train_end(TrainState&) {}
    /// At the start of each epoch (state.epoch is the new epoch's number).
    virtual void on_epoch_begin(TrainState&) {}
    /// At the end of each epoch, after its evaluation; state.logs holds the epoch's record.
    virtual void on_epoch_end(TrainState&) {}
    /// Before each optimizer step's first batch.
    virtual void on_step_begin(TrainState&) {}
    /// After each optimizer step (and the scheduler's step); state.logs holds "loss", "lr", "grad_norm".
    virtual void on_step_end(TrainState&) {}
    /// After each evaluation; state.logs holds the training and validation metrics.
    virtual void on_evaluate(TrainState&) {}
};

}  // namespace sft::train
