/// @file trainer.hpp
/// sft::train::Trainer<T>: the training loop of fine-tuning, as Keras' model.fit and Hugging
/// Face's Trainer, over sft's own parts: a Module, a loss, an optimizer, an optional scheduler,
/// callbacks (EarlyStopping, ModelCheckpoint, your own), a History and a JSON Lines log.
///
///     sft::train::Trainer<float> trainer(model, criterion, opt);
///     trainer.set_scheduler(sched);
///     trainer.add_callback(sft::train::EarlyStopping(sft::train::EarlyStoppingOptions("val_loss").patience(3).restore_best(true)));
///     sft::train::History h = trainer.fit(train, val, sft::train::FitOptions().epochs(5).batch_size(32).seed(7));
///
/// One optimizer step (PyTorch's loop, with Hugging Face's accumulation and clipping):
///   optimizer.zero_grad();
///   for each of the step's batches b (gradient_accumulation_steps of them, fewer at an epoch's end):
///       loss_b = criterion.forward(model.forward(x_b), y_b);      a non-finite loss throws
///       model.backward(criterion.backward() * n_b / n_step);       n: samples, so the step's
///                                                                  gradient is that of one big batch
///   clip_grad_norm_(trainable parameters, max_grad_norm);          when max_grad_norm > 0
///   optimizer.step(); scheduler.step() (interval step)
/// Evaluation runs at the end of every epoch (or every eval_steps steps) in eval mode; a scheduler
/// of interval epoch steps at each epoch's end, one that needs a metric (ReduceLROnPlateau) after
/// each evaluation with FitOptions::scheduler_metric.
///
/// The loss is taken to be a mean over its batch (Reduction::mean, the default of every sft loss):
/// the epoch's and the evaluation's losses are the sample-weighted means of the batch losses, and
/// accumulation weighs each batch by its share of the step's samples.
#pragma once

#include <sft/data/dataset.hpp>
#include <sft/data/loader.hpp>
#include <sft/error.hpp>
#include <sft/io/safetensors.hpp>
#include <sft/loss/loss.hpp>
#include <sft/nn/module.hpp>
#include <sft/optim/optimizer_base.hpp>
#include <sft/sched/scheduler.hpp>
#include <sft/tensor.hpp>
#include <sft/train/callback.hpp>
#include <sft/train/clip_grad.hpp>
#include <sft/train/early_stopping.hpp>
#include <sft/train/fit_options.hpp>
#include <sft/train/history.hpp>
#include <sft/train/jsonl_log.hpp>
#include <sft/train/model_checkpoint.hpp>
#include <sft/train/progress.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace sft::train {

namespace detail {

/// Puts a module in train or eval mode and restores its previous mode on destruction.
template <class T>
class ModeGuard {
public:
    ModeGuard(nn::Module<T>& model, bool training) : model_(model), was_training_(model.is_training()) { model_.train(training); }
    ~ModeGuard() { model_.train(was_training_); }
    ModeGuard(const ModeGuard&) = delete;
    ModeGuard& operator=(const ModeGuard&) = delete;

private:
    nn::Module<T>& model_;
    bool was_training_;
};

/// The first non-finite value of a state dict as "'fc1.weight'[3] = nan", or "" when all are finite.
template <class T>
std::string first_non_finite(const std::map<std::string, Tensor<T>>& state) {
    for (const auto& [name, t] : state)
        for (std::size_t i = 0; i < t.numel(); ++i)
            if (!std::isfinite(t[i])) return fmt::format("'{}'[{}] = {}", name, i, t[i]);
    return {};
}

/// A model's weights copied out, restorable into it.
template <class T>
class ModuleSnapshot : public WeightsSnapshot {
public:
    explicit ModuleSnapshot(nn::Module<T>& model) : model_(&model) {
        for (const auto& [name, t] : model.state_dict()) state_.emplace(name, t.clone());
    }
    void restore() override { model_->load_state_dict(state_); }

private:
    nn::Module<T>* model_;
    std::map<std::string, Tensor<T>> state_;
};

/// ModelHandle over an nn::Module<T>.
template <class T>
class ModuleHandle : public ModelHandle {
public:
    explicit ModuleHandle(nn::Module<T>& model) : model_(&model) {}
    std::unique_ptr<WeightsSnapshot> snapshot() override { return std::make_unique<ModuleSnapshot<T>>(*model_); }
    void save(const std::string& path, const std::map<std::string, std::string>& metadata) override {
        const auto state = model_->state_dict();
        const std::string bad = first_non_finite(state);
        if (!bad.empty())
            throw Error(ErrorKind::numeric, fmt::format("checkpoint '{}' not written: the model holds a non-finite value, {}", path, bad));
        io::save_safetensors(state, path, metadata);  // temporary file + rename
    }
    bool all_finite() override { return first_non_finite(model_->state_dict()).empty(); }

private:
    nn::Module<T>* model_;
};

/// Sets `logs` to {"grad_norm", "loss", "lr"} of a step. When it already holds exactly those
/// keys (every step of an epoch but the first) the values are assigned in place: no allocation.
inline void set_step_logs(std::map<std::string, double>& logs, double loss, double lr, double grad_norm) {
    static constexpr const char* keys[] = {"grad_norm", "loss", "lr"};  // the map's order
    bool same = logs.size() == 3;
    std::size_t k = 0;
    for (auto it = logs.begin(); same && it != logs.end(); ++it, ++k) same = it->first == keys[k];
    if (!same) {
        logs.clear();
        for (const char* key : keys) logs.emplace(key, 0.0);
    }
    auto it = logs.begin();
    (it++)->second = grad_norm;
    (it++)->second = loss;
    it->second = lr;
}

/// Number of rows of outputs [B, C] whose argmax (the first maximum, as torch.argmax) equals the
/// label; nullopt when the outputs are not [B, C] with C >= 2.
template <class T>
std::optional<std::size_t> count_correct(const Tensor<T>& out, const Tensor<std::int64_t>& y) noexcept {
    if (out.rank() != 2 || out.shape()[1] < 2 || out.shape()[0] != y.numel()) return std::nullopt;
    const std::size_t rows = out.shape()[0], cols = out.shape()[1];
    std::size_t correct = 0;
    for (std::size_t i = 0; i < rows; ++i) {
        const T* r = out.data() + i * cols;
        std::size_t best = 0;
        for (std::size_t j = 1; j < cols; ++j)
            if (r[j] > r[best]) best = j;
        correct += static_cast<std::int64_t>(best) == y[i];
    }
    return correct;
}

}  // namespace detail

/// Trains an nn::Module<T> on a TensorDataset<T> with a loss of class-index targets, an
/// optimizer, an optional scheduler and callbacks (see the file comment). The Trainer holds
/// references: the model, loss, optimizer, scheduler and callbacks added by reference must
/// outlive it.
template <class T>
class Trainer {
public:
    /// The losses the Trainer drives: predictions Tensor<T> against class indices (CrossEntropy).
    using LossType = loss::Loss<T, std::int64_t>;
    /// A user metric: computed at each evaluation from all the outputs [N, ...] and labels [N].
    using MetricFn = std::function<double(const Tensor<T>& outputs, const Tensor<std::int64_t>& targets)>;

    /// A trainer of `model` with `criterion` (a loss of class indices, Loss<T, std::int64_t>:
    /// CrossEntropy) and `optimizer` (built on the model's parameters). Another loss is a compile
    /// error that says so.
    template <class Criterion>
    Trainer(nn::Module<T>& model, Criterion& criterion, optim::OptimizerBase& optimizer)
        : model_(model), loss_(as_loss(criterion)), opt_(optimizer) {}

    /// Drives `scheduler` during fit: see the file comment. Throws sft::Error (kind
    /// invalid_argument) when the scheduler was built on another optimizer than the Trainer's.
    Trainer& set_scheduler(sched::Scheduler& scheduler) {
        if (&scheduler.optimizer() != &opt_)
            throw Error(ErrorKind::invalid_argument,
                        fmt::format("Trainer::set_scheduler: {} drives another optimizer than this Trainer's", scheduler.name()));
        sched_ = &scheduler;
        return *this;
    }

    /// Adds a callback that the Trainer keeps (moved in), as
    /// trainer.add_callback(EarlyStopping(EarlyStoppingOptions("val_loss").patience(3))).
    template <class CB, class = std::enable_if_t<std::is_base_of_v<Callback, std::decay_t<CB>> && !std::is_lvalue_reference_v<CB>>>
    Trainer& add_callback(CB&& callback) {
        owned_.push_back(std::make_unique<std::decay_t<CB>>(std::move(callback)));
        callbacks_.push_back(owned_.back().get());
        return *this;
    }
    /// Adds a callback by reference (to read its state after fit); it must outlive the Trainer.
    Trainer& add_callback(Callback& callback) {
        callbacks_.push_back(&callback);
        return *this;
    }
    /// Adds an owned callback. Throws sft::Error (kind invalid_argument) on null.
    Trainer& add_callback(std::unique_ptr<Callback> callback) {
        if (!callback) throw Error(ErrorKind::invalid_argument, "Trainer::add_callback: null callback");
        owned_.push_back(std::move(callback));
        callbacks_.push_back(owned_.back().get());
        return *this;
    }
    /// The callbacks, in the order their hooks run.
    const std::vector<Callback*>& callbacks() const noexcept { return callbacks_; }

    /// Adds a metric computed at each evaluation, logged as `name` by evaluate() and "val_<name>"
    /// by fit. Throws sft::Error (kind invalid_argument) on an empty, built-in ("loss",
    /// "accuracy") or repeated name, or an empty function.
    Trainer& add_metric(const std::string& name, MetricFn fn) {
        if (name.empty() || name == "loss" || name == "accuracy" || !fn)
            throw Error(ErrorKind::invalid_argument, fmt::format("Trainer::add_metric: '{}' is empty, built in, or has no function", name));
        for (const auto& m : metrics_)
            if (m.first == name) throw Error(ErrorKind::invalid_argument, fmt::format("Trainer::add_metric: '{}' added twice", name));
        metrics_.emplace_back(name, std::move(fn));
        return *this;
    }

    /// Trains on `train`, evaluating on `val` (see the file comment), in train mode (the previous
    /// mode is restored at the end). Returns the History. Throws sft::Error: kind invalid_argument
    /// on inconsistent options or an empty set, kind shape when the sets' sample shapes differ or
    /// the model's output is not [B, ...], kind numeric when a loss or the gradient norm is not
    /// finite (naming the step; the weights are those of the previous step, and no checkpoint is
    /// written after it), and whatever the model, loss, callbacks or file writes throw.
    History fit(const data::TensorDataset<T>& train, const data::TensorDataset<T>& val, const FitOptions& options = FitOptions()) {
        if (val.empty()) throw Error(ErrorKind::invalid_argument, "Trainer::fit: the validation set is empty");
        if (val.batch_shape(0) != train.batch_shape(0))
            throw Error(ErrorKind::shape, fmt::format("Trainer::fit: training samples {} and validation samples {} differ in shape",
                                                      train.x().shape().str(), val.x().shape().str()));
        return run(train, &val, options);
    }

    /// Trains on `train` without a validation set: evaluations log the training metrics only.
    History fit(const data::TensorDataset<T>& train, const FitOptions& options = FitOptions()) { return run(train, nullptr, options); }

    /// Mean loss ("loss"), "accuracy" (when the outputs are [N, C]) and the added metrics of the
    /// model on `data`, in eval mode (the previous mode is restored), batch by batch without
    /// copying the inputs. Throws sft::Error (kind invalid_argument) on an empty set or batch_size
    /// 0, (kind numeric) when the loss is not finite.
    std::map<std::string, double> evaluate(const data::TensorDataset<T>& data, std::size_t batch_size = 256) {
        return evaluate_impl(data, batch_size, true, "Trainer::evaluate");
    }

    /// The model's outputs for x [N, ...], [N, ...out], in eval mode, batch by batch.
    /// Throws sft::Error (kind invalid_argument) on an empty x or batch_size 0, (kind shape) when
    /// the model's output is not [B, ...] for a batch of B.
    Tensor<T> predict(const Tensor<T>& x, std::size_t batch_size = 256) {
        if (x.rank() == 0 || x.shape()[0] == 0) throw Error(ErrorKind::invalid_argument, fmt::format("Trainer::predict: empty input {}", x.shape().str()));
        if (batch_size == 0) throw Error(ErrorKind::invalid_argument, "Trainer::predict: batch_size must be > 0");
        detail::ModeGuard<T> guard(model_, false);
        const std::size_t n = x.shape()[0];
        Tensor<T> out;
        for (std::size_t start = 0; start < n; start += batch_size) {
            const std::size_t b = std::min(batch_size, n - start);
            Tensor<T> o = forward_checked(x.narrow(start, b), "Trainer::predict");
            if (!out.defined()) {
                Shape s = o.shape();
                s[0] = n;
                out = Tensor<T>::empty(s);
            }
            std::copy(o.begin(), o.end(), out.data() + start * (out.numel() / n));
        }
        return out;
    }
    /// The model's outputs for the inputs of `data` (labels ignored).
    Tensor<T> predict(const data::TensorDataset<T>& data, std::size_t batch_size = 256) { return predict(data.x(), batch_size); }

private:
    template <class Criterion>
    static LossType& as_loss(Criterion& criterion) {
        static_assert(std::is_base_of_v<LossType, Criterion>,
                      "sft::train::Trainer<T> trains on class-index labels: its loss must derive from "
                      "sft::loss::Loss<T, std::int64_t> (CrossEntropy<T>), with the Trainer's T");
        if constexpr (std::is_base_of_v<LossType, Criterion>) return criterion;
        else return *static_cast<LossType*>(nullptr);  // never compiled into a program: the assertion failed
    }

    /// model.forward(x), checked to be [B, ...] for the batch of B. `who` names the caller in the
    /// error (a C string: the training step builds no std::string).
    Tensor<T> forward_checked(const Tensor<T>& x, const char* who) {
        Tensor<T> out = model_.forward(x);
        if (out.rank() == 0 || out.shape()[0] != x.shape()[0])
            throw Error(ErrorKind::shape, fmt::format("{}: {} returned {} for a batch {}; expected [{}, ...]", who, model_.label(),
                                                      out.shape().str(), x.shape().str(), x.shape()[0]));
        return out;
    }

    std::map<std::string, double> evaluate_impl(const data::TensorDataset<T>& data, std::size_t batch_size, bool accuracy, const std::string& who) {
        if (data.empty()) throw Error(ErrorKind::invalid_argument, fmt::format("{}: the dataset is empty", who));
        if (batch_size == 0) throw Error(ErrorKind::invalid_argument, fmt::format("{}: batch_size must be > 0", who));
        detail::ModeGuard<T> guard(model_, false);
        const std::size_t n = data.size();
        double loss_sum = 0.0;
        std::size_t correct = 0;
        bool has_accuracy = accuracy;
        Tensor<T> outputs;  // all of them, only when a user metric needs them
        for (std::size_t start = 0; start < n; start += batch_size) {
            const std::size_t b = std::min(batch_size, n - start);
            const Tensor<std::int64_t> y = data.y().narrow(start, b);
            Tensor<T> out = forward_checked(data.x().narrow(start, b), who.c_str());
            const double l = static_cast<double>(loss_.forward(out, y, /*need_grad=*/false));
            if (!std::isfinite(l))
                throw Error(ErrorKind::numeric, fmt::format("{}: {} is {} on samples [{}, {}) of {}", who, loss_.type_name(), l, start, start + b, n));
            loss_sum += l * static_cast<double>(b);
            if (has_accuracy) {
                const auto c = detail::count_correct(out, y);
                if (c) correct += *c;
                else has_accuracy = false;
            }
            if (!metrics_.empty()) {
                if (!outputs.defined()) {
                    Shape s = out.shape();
                    s[0] = n;
                    outputs = Tensor<T>::empty(s);
                }
                std::copy(out.begin(), out.end(), outputs.data() + start * (outputs.numel() / n));
            }
        }
        std::map<std::string, double> result{{"loss", loss_sum / static_cast<double>(n)}};
        if (has_accuracy) result["accuracy"] = static_cast<double>(correct) / static_cast<double>(n);
        for (const auto& [name, fn] : metrics_) result[name] = fn(outputs, data.y());
        return result;
    }

    static void check(const FitOptions& o, std::size_t n_train) {
        auto fail = [](const std::string& what) { throw Error(ErrorKind::invalid_argument, "Trainer::fit: " + what); };
        if (n_train == 0) fail("the training set is empty");
        if (o.batch_size() == 0) fail("batch_size must be > 0");
        if (o.gradient_accumulation_steps() == 0) fail("gradient_accumulation_steps must be > 0");
        if (o.epochs() == 0 && o.max_steps() == 0) fail("epochs and max_steps are both 0: nothing to train");
        if (!(o.max_grad_norm() >= 0.0) || !std::isfinite(o.max_grad_norm()))
            fail(fmt::format("max_grad_norm {} must be finite and >= 0 (0: no clipping)", o.max_grad_norm()));
        if (o.verbose() < 0 || o.verbose() > 2) fail(fmt::format("verbose {} must be 0, 1 or 2", o.verbose()));
        if (o.drop_last() && n_train < o.batch_size())
            fail(fmt::format("drop_last with batch_size {} leaves no batch of the {} training samples", o.batch_size(), n_train));
    }

    History run(const data::TensorDataset<T>& train, const data::TensorDataset<T>* val, const FitOptions& options) {
        check(options, train.size());
        data::DataLoader<T> loader(train, data::DataLoaderOptions()
                                              .batch_size(options.batch_size())
                                              .shuffle(options.shuffle())
                                              .seed(options.seed())
                                              .drop_last(options.drop_last()));
        const std::size_t batches = loader.num_batches();
        const std::size_t accum = options.gradient_accumulation_steps();
        const std::size_t steps_per_epoch = (batches + accum - 1) / accum;
        const std::size_t total_steps = options.max_steps() ? options.max_steps() : steps_per_epoch * options.epochs();
        const std::size_t num_epochs = options.max_steps() ? (total_steps + steps_per_epoch - 1) / steps_per_epoch : options.epochs();
        const std::string sched_metric =
            !options.scheduler_metric().empty() ? options.scheduler_metric() : (val ? std::string("val_loss") : std::string("loss"));

        std::vector<nn::Parameter<T>*> trainable;
        for (auto* p : model_.parameters())
            if (p->requires_grad()) trainable.push_back(p);

        JsonlLog log(options.log_file());
        History history;
        detail::ModuleHandle<T> handle(model_);
        TrainState state;
        state.num_epochs = num_epochs;
        state.max_steps = total_steps;
        state.steps_per_epoch = steps_per_epoch;
        state.batch_size = options.batch_size();
        state.history = &history;
        state.model = &handle;

        std::unique_ptr<ProgressBar> progress;
        std::vector<Callback*> callbacks;
        if (options.verbose() > 0) {
            progress = std::make_unique<ProgressBar>(options.verbose());
            callbacks.push_back(progress.get());
        }
        callbacks.insert(callbacks.end(), callbacks_.begin(), callbacks_.end());
        auto fire = [&](void (Callback::*hook)(TrainState&)) {
            for (Callback* cb : callbacks) (cb->*hook)(state);
        };

        detail::ModeGuard<T> guard(model_, true);
        const auto t0 = std::chrono::steady_clock::now();
        auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

        // Running sums of the current epoch's training loss and accuracy.
        double epoch_loss = 0.0;
        std::size_t epoch_samples = 0, epoch_correct = 0;
        bool has_accuracy = options.accuracy();
        auto train_logs = [&] {
            std::map<std::string, double> logs;
            if (epoch_samples) logs["loss"] = epoch_loss / static_cast<double>(epoch_samples);
            if (has_accuracy && epoch_samples) logs["accuracy"] = static_cast<double>(epoch_correct) / static_cast<double>(epoch_samples);
            logs["lr"] = opt_.lr();
            return logs;
        };

        // An evaluation: training metrics so far, validation metrics, hooks, plateau scheduler.
        auto evaluate_now = [&] {
            std::map<std::string, double> logs = train_logs();
            if (val) {
                const auto v = evaluate_impl(*val, options.eval_batch_size(), options.accuracy(),
                                             fmt::format("Trainer::fit: validation after step {} (epoch {})", state.global_step, state.epoch));
                for (const auto& [k, x] : v) logs["val_" + k] = x;
            }
            ++state.eval_count;
            state.logs = logs;
            history.add_eval(Record{state.epoch, state.global_step, logs});
            log.write("eval", {{"epoch", state.epoch}, {"step", state.global_step}}, logs);
            fire(&Callback::on_evaluate);
            if (sched_ && sched_->needs_metric()) sched_->step(state.metric(sched_metric, "Trainer (scheduler_metric)"));
        };

        try {
            fire(&Callback::on_train_begin);
            data::Batch<T> batch;
            for (std::size_t epoch = 1; epoch <= num_epochs; ++epoch) {
                state.epoch = epoch;
                state.step_in_epoch = 0;
                epoch_loss = 0.0;
                epoch_samples = epoch_correct = 0;
                bool evaluated_at_end = false;
                fire(&Callback::on_epoch_begin);
                history.reserve_steps(std::min(total_steps, state.global_step + steps_per_epoch));
                loader.start_epoch();
                for (std::size_t first = 0; first < batches && !state.should_stop && state.global_step < total_steps; first += accum) {
                    const std::size_t group = std::min(accum, batches - first);
                    std::size_t step_samples = 0;
                    for (std::size_t b = first; b < first + group; ++b) step_samples += loader.batch_size_at(b);
                    const std::size_t step = state.global_step + 1;
                    fire(&Callback::on_step_begin);

                    opt_.zero_grad();
                    double step_loss = 0.0;
                    for (std::size_t k = 0; k < group; ++k) {
                        loader.next(batch);
                        const std::size_t n = batch.size();
                        const Tensor<T> out = forward_checked(batch.x, "Trainer::fit");
                        const double l = static_cast<double>(loss_.forward(out, batch.y));
                        if (!std::isfinite(l))
                            throw Error(ErrorKind::numeric,
                                        fmt::format("Trainer::fit: {} is {} at step {} (epoch {}, batch {} of {}); training stopped before "
                                                    "this step's update, the weights are those after step {}",
                                                    loss_.type_name(), l, step, epoch, batch.index + 1, batches, step - 1));
                        if (has_accuracy) {
                            const auto c = detail::count_correct(out, batch.y);
                            if (c) epoch_correct += *c;
                            else has_accuracy = false;
                        }
                        Tensor<T> grad = loss_.backward();
                        if (group > 1 || n != step_samples) {
                            // The batch's share of the step: k batches weigh as one batch of their union.
                            const T w = static_cast<T>(static_cast<double>(n) / static_cast<double>(step_samples));
                            for (T& g : grad) g *= w;
                        }
                        model_.backward(grad, /*need_input_grad=*/false);
                        step_loss += l * static_cast<double>(n);
                    }
                    step_loss /= static_cast<double>(step_samples);

                    double norm;
                    if (options.max_grad_norm() > 0.0) {
                        try {
                            norm = clip_grad_norm_(trainable, options.max_grad_norm());
                        } catch (const Error& e) {
                            throw Error(ErrorKind::numeric, fmt::format("Trainer::fit: at step {} (epoch {}): {}", step, epoch, e.what()));
                        }
                    } else {
                        norm = grad_norm(trainable);
                        if (!std::isfinite(norm))
                            throw Error(ErrorKind::numeric, fmt::format("Trainer::fit: the gradient norm is {} at step {} (epoch {}); training "
                                                                        "stopped before this step's update",
                                                                        norm, step, epoch));
                    }
                    const double lr = opt_.lr();
                    opt_.step();
                    if (sched_ && !sched_->needs_metric() && sched_->interval() == sched::Interval::step) sched_->step();

                    state.global_step = step;
                    ++state.step_in_epoch;
                    state.samples_seen += step_samples;
                    epoch_loss += step_loss * static_cast<double>(step_samples);
                    epoch_samples += step_samples;
                    // Nothing below allocates in steady state: History has room for the epoch's
                    // steps, the log line is formatted on the stack, the logs map keeps its nodes.
                    history.add_step(StepRecord{epoch, step, step_loss, lr, norm, step_samples});
                    if (log.is_open())
                        log.write_values("step", {{"epoch", epoch}, {"step", step}, {"samples", step_samples}},
                                         {{"elapsed_s", elapsed()}, {"grad_norm", norm}, {"loss", step_loss}, {"lr", lr}});
                    detail::set_step_logs(state.logs, step_loss, lr, norm);
                    fire(&Callback::on_step_end);

                    if (options.eval_steps() && step % options.eval_steps() == 0) {
                        evaluate_now();
                        evaluated_at_end = first + group >= batches;
                    }
                }
                // The epoch's end (also when cut short by a stop or max_steps).
                if (!options.eval_steps() && !evaluated_at_end) evaluate_now();
                if (sched_ && !sched_->needs_metric() && sched_->interval() == sched::Interval::epoch) sched_->step();
                std::map<std::string, double> logs = options.eval_steps() ? train_logs() : state.logs;
                logs["lr"] = opt_.lr();
                if (options.eval_steps() && evaluated_at_end)
                    for (const auto& [k, v] : state.logs)
                        if (k.rfind("val_", 0) == 0) logs[k] = v;
                state.logs = logs;
                history.add_epoch(Record{epoch, state.global_step, logs});
                log.write("epoch", {{"epoch", epoch}, {"step", state.global_step}}, logs);
                fire(&Callback::on_epoch_end);
                if (state.should_stop || state.global_step >= total_steps) break;
            }
            if (state.should_stop) history.set_stop_reason(state.stop_reason);
            fire(&Callback::on_train_end);
            log.write("train_end", {{"epochs", history.epochs()}, {"steps", state.global_step}}, {{"elapsed_s", elapsed()}},
                      {{"stop_reason", state.stop_reason}});
        } catch (const std::exception& e) {
            try {
                log.write("error", {{"epoch", state.epoch}, {"step", state.global_step}}, {}, {{"message", e.what()}});
            } catch (const std::exception&) {
                // The original error matters more than a failed log line.
            }
            throw;
        }
        return history;
    }

    nn::Module<T>& model_;
    LossType& loss_;
    optim::OptimizerBase& opt_;
    sched::Scheduler* sched_ = nullptr;
    std::vector<Callback*> callbacks_;
    std::vector<std::unique_ptr<Callback>> owned_;
    std::vector<std::pair<std::string, MetricFn>> metrics_;
};

}  // namespace sft::train
