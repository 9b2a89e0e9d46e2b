/// @file model_checkpoint.hpp
/// sft::train::ModelCheckpoint: writes the best and/or the last weights to safetensors files, as
/// Keras' ModelCheckpoint(save_best_only=True) plus a "last" file, each write atomic (a temporary
/// file in the same folder renamed over the target) and refused when a weight is not finite, so
/// that a checkpoint on disk is always complete and finite.
#pragma once

#include <sft/error.hpp>
#include <sft/train/callback.hpp>
#include <sft/train/monitor.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstddef>
#include <map>
#include <string>

namespace sft::train {

/// Options of ModelCheckpoint: ModelCheckpointOptions("val_loss").best_path("best.safetensors").
class ModelCheckpointOptions {
public:
    /// The metric that decides which weights are best ("val_loss" by default).
    explicit ModelCheckpointOptions(std::string monitor = "val_loss") : monitor_(std::move(monitor)) {}

    const std::string& monitor() const noexcept { return monitor_; }
    /// Mode::min, Mode::max, or Mode::inferred from the name (default).
    ModelCheckpointOptions& mode(Mode v) noexcept { mode_ = v; return *this; }
    Mode mode() const noexcept { return mode_; }
    /// Where the best weights go, rewritten at each evaluation that improves on the best (empty: not saved).
    ModelCheckpointOptions& best_path(std::string v) { best_path_ = std::move(v); return *this; }
    const std::string& best_path() const noexcept { return best_path_; }
    /// Where the last weights go, rewritten at the end of every epoch (empty: not saved).
    ModelCheckpointOptions& last_path(std::string v) { last_path_ = std::move(v); return *this; }
    const std::string& last_path() const noexcept { return last_path_; }

private:
    std::string monitor_;
    Mode mode_ = Mode::inferred;
    std::string best_path_;
    std::string last_path_;
};

/// Saves the model's state_dict at the best evaluation (best_path) and at every epoch end
/// (last_path), with metadata {"epoch", "step", and the monitored metric's value} in the file's
/// __metadata__. Throws sft::Error: at construction when neither path is given or the mode
/// cannot be inferred (kind invalid_argument); at the first evaluation when the monitored metric
/// is not logged (kind key); when saving, kind numeric (a non-finite weight: the file on disk is
/// left as it was) or kind io.
class ModelCheckpoint : public Callback {
public:
    explicit ModelCheckpoint(ModelCheckpointOptions options) : options_(std::move(options)) {
        if (options_.best_path().empty() && options_.last_path().empty())
            throw Error(ErrorKind::invalid_argument, "ModelCheckpoint: give best_path, last_path or both");
        if (!options_.best_path().empty()) mode_ = resolve_mode(options_.monitor(), options_.mode(), "ModelCheckpoint");
    }

    const ModelCheckpointOptions& options() const noexcept { return options_; }
    /// Best monitored value saved so far (NaN before the first).
    double best() const noexcept { return best_; }
    /// Number of files written (best and last together) in the current fit.
    std::size_t saves() const noexcept { return saves_; }

    void on_train_begin(TrainState&) override {
        best_ = std::nan("");
        saves_ = 0;
    }

    void on_evaluate(TrainState& state) override {
        if (options_.best_path().empty()) return;
        const double current = state.metric(options_.monitor(), "ModelCheckpoint");
        if (std::isnan(current)) return;
        if (!std::isnan(best_) && !is_improvement(current, best_, mode_)) return;
        save(state, options_.best_path(), current);
        best_ = current;
    }

    void on_epoch_end(TrainState& state) override {
        if (options_.last_path().empty()) return;
        auto it = state.logs.find(options_.monitor());
        save(state, options_.last_path(), it == state.logs.end() ? std::nan("") : it->second);
    }

private:
    void save(TrainState& state, const std::string& path, double value) {
        std::map<std::string, std::string> meta{{"epoch", std::to_string(state.epoch)}, {"step", std::to_string(state.global_step)}};
        if (!std::isnan(value)) meta[options_.monitor()] = fmt::format("{}", value);
        state.model->save(path, meta);  // refuses non-finite weights, writes atomically
        ++saves_;
    }

    ModelCheckpointOptions options_;
    Mode mode_ = Mode::min;
    double best_ = std::nan("");
    std::size_t saves_ = 0;
};

}  // namespace sft::train
