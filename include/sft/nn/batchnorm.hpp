/// @file batchnorm.hpp
/// sft::nn::BatchNorm1d and sft::nn::BatchNorm2d, batch normalisation over the channel dimension
/// (dimension 1) as torch.nn.BatchNorm1d / BatchNorm2d, with their options BatchNormOptions.
///
/// The formulas, as PyTorch (torch/nn/modules/batchnorm.py, aten/src/ATen/native/Normalization.cpp),
/// per channel c over the M = N * (spatial size) values x of that channel:
///   training:  mu = mean(x), var = mean((x - mu)^2) (biased, for normalising)
///              running_mean = (1 - m) running_mean + m mu
///              running_var  = (1 - m) running_var  + m var * M / (M - 1) (unbiased)
///              num_batches_tracked += 1; m is the momentum, or 1 / num_batches_tracked when the
///              momentum is unset (cumulative moving average)
///   eval:      mu = running_mean, var = running_var
///   both:      y = (x - mu) / sqrt(var + eps) * weight + bias
///
/// One deviation from PyTorch, on purpose (the fine-tuning trap "a frozen BatchNorm keeps its
/// statistics"): when the layer is affine, tracks running statistics and all its parameters are
/// frozen (requires_grad false, e.g. after model.freeze("backbone")), it normalises with its
/// running statistics and does not update them, even in training mode, as Keras'
/// BatchNormalization(trainable=False) does. PyTorch keeps updating the statistics of a frozen
/// BatchNorm until .eval() is called. A BatchNorm without parameters (affine false) has nothing
/// to freeze and behaves exactly as PyTorch's.
#pragma once

#include <sft/nn/module.hpp>

#include <cmath>
#include <optional>
#include <type_traits>
#include <vector>

namespace sft::nn {

/// Options of BatchNorm1d / BatchNorm2d in libtorch's builder style:
/// BatchNormOptions(64).eps(1e-5).momentum(0.1).affine(true).track_running_stats(true)
/// (PyTorch's defaults). momentum(std::nullopt) selects the cumulative moving average.
struct BatchNormOptions {
    BatchNormOptions(std::size_t num_features) : num_features_(num_features) {}  // NOLINT: implicit, as libtorch

    /// Added to the variance before the square root (default 1e-5).
    BatchNormOptions& eps(double e) noexcept {
        eps_ = e;
        return *this;
    }
    /// Weight of the new batch in the running statistics (default 0.1); nullopt: 1 / num_batches_tracked.
    BatchNormOptions& momentum(std::optional<double> m) noexcept {
        momentum_ = m;
        return *this;
    }
    /// Whether the layer has "weight" (init 1) and "bias" (init 0) [C] (default true).
    BatchNormOptions& affine(bool on) noexcept {
        affine_ = on;
        return *this;
    }
    /// Whether the layer keeps the buffers running_mean, running_var and num_batches_tracked and
    /// uses them in eval mode (default true). Without them it always normalises with batch statistics.
    BatchNormOptions& track_running_stats(bool on) noexcept {
        track_running_stats_ = on;
        return *this;
    }

    std::size_t num_features() const noexcept { return num_features_; }
    double eps() const noexcept { return eps_; }
    std::optional<double> momentum() const noexcept { return momentum_; }
    bool affine() const noexcept { return affine_; }
    bool track_running_stats() const noexcept { return track_running_stats_; }

private:
    std::size_t num_features_;
    double eps_ = 1e-5;
    std::optional<double> momentum_ = 0.1;
    bool affine_ = true;
    bool track_running_stats_ = true;
};

namespace detail {

/// The machinery shared by BatchNorm1d and BatchNorm2d: normalisation over dimension 1 of an
/// input [N, C, *], the spatial dimensions * flattened. The derived classes only check the rank.
template <class T>
class BatchNormBase : public Module<T> {
    static_assert(std::is_floating_point_v<T>, "sft::nn::BatchNorm: T must be float or double");
    // Sums over a channel (up to N * H * W values) accumulate in double even for float.
    using Acc = double;

public:
    /// The options the layer was built with.
    const BatchNormOptions& options() const noexcept { return opt_; }
    std::size_t num_features() const noexcept { return opt_.num_features(); }
    /// The scale [C]; nullptr when not affine.
    Parameter<T>* weight() noexcept { return weight_; }
    /// The shift [C]; nullptr when not affine.
    Parameter<T>* bias() noexcept { return bias_; }
    /// running_mean [C]; nullptr without track_running_stats.
    Buffer<T>* running_mean() noexcept { return running_mean_; }
    /// running_var [C]; nullptr without track_running_stats.
    Buffer<T>* running_var() noexcept { return running_var_; }
    /// num_batches_tracked, a rank-0 tensor; nullptr without track_running_stats.
    /// PyTorch stores it as int64; here it is a T holding an integer value (exact up to 2^24
    /// batches in float, 2^53 in double). load_safetensors<T> converts a file's I64 exactly;
    /// saved as a float tensor it still loads into torch, whose load_state_dict copies values
    /// across dtypes.
    Buffer<T>* num_batches_tracked() noexcept { return num_batches_tracked_; }

    /// True when the next forward() normalises with the statistics of its batch (and updates the
    /// running statistics), false when it uses the running statistics: training mode, unless the
    /// layer tracks running statistics and is frozen (see the file comment), or always without
    /// track_running_stats.
    bool uses_batch_stats() const noexcept {
        if (!running_mean_) return true;
        if (!this->training_) return false;
        return !frozen();
    }

    /// True when the layer is affine and neither weight nor bias requires a gradient.
    bool frozen() const noexcept {
        return weight_ && !weight_->requires_grad() && !bias_->requires_grad();
    }

    /// [N, C, *] -> same shape. Throws sft::Error (kind shape) naming the layer when the rank or the
    /// channel count is wrong, or (kind invalid_argument) when batch statistics are needed and a
    /// channel has a single value, as PyTorch ("Expected more than 1 value per channel").
    Tensor<T> forward(const Tensor<T>& input) override {
        check_input(input);
        const std::size_t n = input.shape()[0], c_count = opt_.num_features();
        const std::size_t inner = inner_size(input.shape());
        const std::size_t m = n * inner;
        batch_stats_ = uses_batch_stats();
        if (batch_stats_ && m <= 1)
            throw Error(ErrorKind::invalid_argument,
                        fmt::format("{}: input {} has 1 value per channel; batch statistics need more than 1 (use eval mode)",
                                    this->label(), input.shape().str()));
        mean_.assign(c_count, T(0));
        rstd_.assign(c_count, T(0));
        const T* x = input.data();
        input_ = Tensor<T>();  // the last saved input, dropped before the output buffer is claimed
        Tensor<T>& out = nn::detail::reuse_or_empty(output_, input.shape());
        T* y = out.data();
        const T eps = static_cast<T>(opt_.eps());
        for (std::size_t c = 0; c < c_count; ++c) {
            Acc mu, var;
            if (batch_stats_) {
                // Two passes (mean, then squared deviations): accurate when |mean| >> std.
                Acc s = 0;
                for (std::size_t i = 0; i < n; ++i) {
                    const T* xc = x + (i * c_count + c) * inner;
                    for (std::size_t j = 0; j < inner; ++j) s += xc[j];
                }
                mu = s / Acc(m);
                Acc v = 0;
                for (std::size_t i = 0; i < n; ++i) {
                    const T* xc = x + (i * c_count + c) * inner;
                    for (std::size_t j = 0; j < inner; ++j) v += (xc[j] - mu) * (xc[j] - mu);
                }
                var = v / Acc(m);
            } else {
                mu = running_mean_->value[c];
                var = running_var_->value[c];
            }
            const Acc r = 1.0 / std::sqrt(var + Acc(eps));
            mean_[c] = static_cast<T>(mu);
            rstd_[c] = static_cast<T>(r);
            // y = x * scale + shift with scale = w r, shift = b - mu w r.
            const Acc w = weight_ ? Acc(weight_->value()[c]) : 1.0;
            const Acc b = bias_ ? Acc(bias_->value()[c]) : 0.0;
            const T scale = static_cast<T>(w * r), shift = static_cast<T>(b - mu * w * r);
            for (std::size_t i = 0; i < n; ++i) {
                const T* xc = x + (i * c_count + c) * inner;
                T* yc = y + (i * c_count + c) * inner;
                for (std::size_t j = 0; j < inner; ++j) yc[j] = xc[j] * scale + shift;
            }
            if (batch_stats_ && running_mean_) update_running(c, mu, var * Acc(m) / Acc(m - 1));
        }
        if (batch_stats_ && running_mean_) num_batches_tracked_->value[0] += T(1);
        input_ = input;
        return out;
    }

    /// grad_output [N, C, *] -> grad_input [N, C, *]; adds dL/dweight = sum(dy * xhat) and
    /// dL/dbias = sum(dy) into the trainable parameters' grad(). With batch statistics the mean
    /// and variance depend on x:
    ///   dx = w r / M * (M dy - sum(dy) - xhat sum(dy xhat));
    /// with running statistics they are constants: dx = w r dy.
    /// Releases the saved input. Throws sft::Error without a forward() since the last backward(),
    /// or on a shape mismatch.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        if (!input_.defined()) this->throw_no_forward();
        this->check_grad_shape(grad_output, input_.shape());
        const Tensor<T> input = input_;
        input_ = Tensor<T>();  // released, as PyTorch frees saved tensors after backward
        const std::size_t n = input.shape()[0], c_count = opt_.num_features();
        const std::size_t inner = inner_size(input.shape());
        const std::size_t m = n * inner;
        const bool dw = weight_ && weight_->requires_grad();
        const bool db = bias_ && bias_->requires_grad();
        Tensor<T> grad_input;
        if (need_input_grad) grad_input = nn::detail::reuse_or_empty(grad_input_, input.shape());
        const T* x = input.data();
        const T* gy = grad_output.data();
        for (std::size_t c = 0; c < c_count; ++c) {
            const Acc mu = mean_[c], r = rstd_[c];
            Acc sg = 0, sgx = 0;  // sum(dy), sum(dy * xhat)
            for (std::size_t i = 0; i < n; ++i) {
                const std::size_t off = (i * c_count + c) * inner;
                for (std::size_t j = 0; j < inner; ++j) {
                    sg += gy[off + j];
                    sgx += gy[off + j] * ((x[off + j] - mu) * r);
                }
            }
            if (dw) weight_->grad()[c] += static_cast<T>(sgx);
            if (db) bias_->grad()[c] += static_cast<T>(sg);
            if (!need_input_grad) continue;
            const Acc w = weight_ ? Acc(weight_->value()[c]) : 1.0;
            T* dx = grad_input.data();
            if (batch_stats_) {
                const Acc mg = sg / Acc(m), mgx = sgx / Acc(m);
                for (std::size_t i = 0; i < n; ++i) {
                    const std::size_t off = (i * c_count + c) * inner;
                    for (std::size_t j = 0; j < inner; ++j) {
                        const Acc xh = (x[off + j] - mu) * r;
                        dx[off + j] = static_cast<T>(w * r * (gy[off + j] - mg - xh * mgx));
                    }
                }
            } else {
                const T k = static_cast<T>(w * r);
                for (std::size_t i = 0; i < n; ++i) {
                    const std::size_t off = (i * c_count + c) * inner;
                    for (std::size_t j = 0; j < inner; ++j) dx[off + j] = gy[off + j] * k;
                }
            }
        }
        return grad_input;
    }

    /// Zeroes running_mean and num_batches_tracked and sets running_var to 1, as PyTorch's
    /// reset_running_stats(). Does nothing without track_running_stats.
    void reset_running_stats() noexcept {
        if (!running_mean_) return;
        running_mean_->value.zero_();
        running_var_->value.fill_(T(1));
        num_batches_tracked_->value.zero_();
    }

protected:
    /// Throws sft::Error on a zero channel count, a negative eps or a momentum outside [0, 1].
    explicit BatchNormBase(const BatchNormOptions& options, const char* type) : opt_(options) {
        const std::size_t c = options.num_features();
        if (c == 0 || !(options.eps() >= 0) || (options.momentum() && !(*options.momentum() >= 0 && *options.momentum() <= 1)))
            throw Error(ErrorKind::invalid_argument,
                        fmt::format("{}({}, eps={}, momentum={}): num_features must be positive, eps >= 0 and momentum in [0, 1]", type, c,
                                    options.eps(), options.momentum() ? fmt::format("{}", *options.momentum()) : std::string("None")));
        if (options.affine()) {
            weight_ = this->register_parameter("weight", Tensor<T>::ones({c}));
            bias_ = this->register_parameter("bias", Tensor<T>::zeros({c}));
        }
        if (options.track_running_stats()) {
            running_mean_ = this->register_buffer("running_mean", Tensor<T>::zeros({c}));
            running_var_ = this->register_buffer("running_var", Tensor<T>::ones({c}));
            num_batches_tracked_ = this->register_buffer("num_batches_tracked", Tensor<T>::zeros(Shape{}));
        }
    }

    /// Throws sft::Error (kind shape) naming the layer when `input` does not have the rank of the
    /// derived layer and num_features channels in dimension 1.
    virtual void check_input(const Tensor<T>& input) const = 0;

    /// Throws the error of an input that does not fit, e.g. "BatchNorm2d 'bn1': input [8, 3, 4, 4],
    /// expected [N, 16, H, W]".
    [[noreturn]] void throw_input(const Tensor<T>& input, const std::string& expected) const {
        throw Error(ErrorKind::shape, fmt::format("{}: input {}, expected {}", this->label(), input.shape().str(), expected));
    }

    void release_saved() noexcept override { input_ = Tensor<T>(); }

private:
    static std::size_t inner_size(const Shape& s) noexcept {
        std::size_t k = 1;
        for (std::size_t d = 2; d < s.rank(); ++d) k *= s[d];
        return k;
    }

    void update_running(std::size_t c, Acc mu, Acc unbiased_var) noexcept {
        // num_batches_tracked is incremented after the channel loop, so + 1 here is this batch's count.
        const Acc factor = opt_.momentum() ? *opt_.momentum() : 1.0 / (Acc(num_batches_tracked_->value[0]) + 1.0);
        T& rm = running_mean_->value[c];
        T& rv = running_var_->value[c];
        rm = static_cast<T>((1.0 - factor) * Acc(rm) + factor * mu);
        rv = static_cast<T>((1.0 - factor) * Acc(rv) + factor * unbiased_var);
    }

    BatchNormOptions opt_;
    Parameter<T>* weight_ = nullptr;
    Parameter<T>* bias_ = nullptr;
    Buffer<T>* running_mean_ = nullptr;
    Buffer<T>* running_var_ = nullptr;
    Buffer<T>* num_batches_tracked_ = nullptr;
    // Cached by forward() for backward(): the input, the per-channel mean and 1/sqrt(var + eps)
    // that were used (batch or running), and which of the two.
    Tensor<T> input_;
    std::vector<T> mean_, rstd_;
    Tensor<T> output_, grad_input_;  // kept buffers, reused across steps (see Module)
    bool batch_stats_ = true;
};

}  // namespace detail

/// Batch normalisation of [N, C] or [N, C, L] over N (and L) per channel, as torch.nn.BatchNorm1d.
/// Parameters "weight", "bias" [C] (if affine); buffers "running_mean", "running_var" [C] and
/// "num_batches_tracked" [] (if track_running_stats). See the file comment for the formulas and
/// for the frozen-layer behaviour.
template <class T>
class BatchNorm1d : public detail::BatchNormBase<T> {
public:
    /// Throws sft::Error on a zero channel count, a negative eps or a momentum outside [0, 1].
    explicit BatchNorm1d(const BatchNormOptions& options) : detail::BatchNormBase<T>(options, "BatchNorm1d") {}
    /// Plain form, PyTorch's argument order: BatchNorm1d<T>(C, eps, momentum, affine, track_running_stats).
    explicit BatchNorm1d(std::size_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1, bool affine = true,
                         bool track_running_stats = true)
        : BatchNorm1d(BatchNormOptions(num_features).eps(eps).momentum(momentum).affine(affine).track_running_stats(track_running_stats)) {}

    std::string type_name() const override { return "BatchNorm1d"; }

protected:
    void check_input(const Tensor<T>& input) const override {
        const Shape& s = input.shape();
        if (s.rank() == 2 && s[1] == this->num_features()) return;
        if (s.rank() == 3 && s[1] == this->num_features()) return;
        this->throw_input(input, fmt::format("[N, {0}] or [N, {0}, L]", this->num_features()));
    }
};

/// Batch normalisation of [N, C, H, W] over N, H and W per channel, as torch.nn.BatchNorm2d.
/// Parameters "weight", "bias" [C] (if affine); buffers "running_mean", "running_var" [C] and
/// "num_batches_tracked" [] (if track_running_stats). See the file comment for the formulas and
/// for the frozen-layer behaviour.
template <class T>
class BatchNorm2d : public detail::BatchNormBase<T> {
public:
    /// Throws sft::Error on a zero channel count, a negative eps or a momentum outside [0, 1].
    explicit BatchNorm2d(const BatchNormOptions& options) : detail::BatchNormBase<T>(options, "BatchNorm2d") {}
    /// Plain form, PyTorch's argument order: BatchNorm2d<T>(C, eps, momentum, affine, track_running_stats).
    explicit BatchNorm2d(std::size_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1, bool affine = true,
                         bool track_running_stats = true)
        : BatchNorm2d(BatchNormOptions(num_features).eps(eps).momentum(momentum).affine(affine).track_running_stats(track_running_stats)) {}

    std::string type_name() const override { return "BatchNorm2d"; }

protected:
    void check_input(const Tensor<T>& input) const override {
        const Shape& s = input.shape();
        if (s.rank() == 4 && s[1] == this->num_features()) return;
        this->throw_input(input, fmt::format("[N, {}, H, W]", this->num_features()));
    }
};

}  // namespace sft::nn
