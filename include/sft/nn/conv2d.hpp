/// @file conv2d.hpp
/// sft::nn::Conv2d, a 2-D convolution on NCHW tensors as torch.nn.Conv2d (weight [out, in, KH, KW],
/// bias [out]), computed as im2col then packed GEMMs over tasks of a few samples on sft's thread
/// pool; and its options, Conv2dOptions.
#pragma once

#include <sft/detail/lease_pool.hpp>
#include <sft/detail/thread_pool.hpp>
#include <sft/kernels/activation.hpp>
#include <sft/kernels/gemm.hpp>
#include <sft/kernels/im2col.hpp>
#include <sft/kernels/reduce.hpp>
#include <sft/nn/module.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace sft::nn {

/// A pair of sizes (height, width), built from one size for both, as libtorch's ExpandingArray<2>:
/// `3` or `{3, 5}`.
struct Size2 {
    std::size_t h = 0, w = 0;
    /// The same size for height and width.
    Size2(std::size_t both) noexcept : h(both), w(both) {}  // NOLINT: implicit on purpose, as libtorch
    /// Height and width.
    Size2(std::size_t height, std::size_t width) noexcept : h(height), w(width) {}
    /// "3" or "(3, 5)", as error messages print it.
    std::string str() const { return h == w ? std::to_string(h) : fmt::format("({}, {})", h, w); }
};

/// Options of Conv2d in libtorch's builder style: Conv2dOptions(in, out, 3).stride(2).padding(1).
/// Defaults as PyTorch: stride 1, padding 0, bias on. Dilation and groups are not supported.
struct Conv2dOptions {
    Conv2dOptions(std::size_t in_channels, std::size_t out_channels, Size2 kernel_size)
        : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}

    /// The step of the window, one size or {h, w}.
    Conv2dOptions& stride(Size2 s) noexcept {
        stride_ = s;
        return *this;
    }
    /// Zero padding added on both sides, one size or {h, w}.
    Conv2dOptions& padding(Size2 p) noexcept {
        padding_ = p;
        return *this;
    }
    /// Whether the layer has a bias (default true).
    Conv2dOptions& bias(bool on) noexcept {
        bias_ = on;
        return *this;
    }

    std::size_t in_channels() const noexcept { return in_channels_; }
    std::size_t out_channels() const noexcept { return out_channels_; }
    Size2 kernel_size() const noexcept { return kernel_size_; }
    Size2 stride() const noexcept { return stride_; }
    Size2 padding() const noexcept { return padding_; }
    bool bias() const noexcept { return bias_; }

private:
    std::size_t in_channels_, out_channels_;
    Size2 kernel_size_;
    Size2 stride_{1};
    Size2 padding_{0};
    bool bias_ = true;
};

namespace detail {

/// The scratch of one running task (the unfolded columns, the gathered output gradient).
template <class T>
struct ConvScratch {
    std::vector<T> col, mat;
    static T* grow(std::vector<T>& v, std::size_t size) {
        if (v.size() < size) v.resize(size);
        return v.data();
    }
};

/// The tasks of every Conv2d take their scratch from here, whichever thread runs them. The layer
/// prepares, on its calling thread before its tasks start, as many sets as threads can run them,
/// each at least as large as a task needs: so allocation happens in the first steps only (and
/// later only if sizes grow, or if more tasks run at once than prepared, e.g. two user threads
/// training at the same time), never because a pool thread happens to run its first task late.
template <class T>
class ConvScratchPool : public ::sft::detail::LeasePool<ConvScratch<T>> {
public:
    static ConvScratchPool& instance() {
        static ConvScratchPool pool;
        return pool;
    }
    /// At least `sets` sets, the free ones grown to col_size and mat_size elements.
    void prepare(std::size_t sets, std::size_t col_size, std::size_t mat_size) {
        this->reserve(sets);
        this->for_each_free([&](ConvScratch<T>& s) {
            ConvScratch<T>::grow(s.col, col_size);
            ConvScratch<T>::grow(s.mat, mat_size);
        });
    }
};

/// A task's lease of one scratch set of ConvScratchPool.
template <class T>
using ConvScratchLease = ::sft::detail::Lease<ConvScratchPool<T>>;

/// How a batch is cut into tasks of whole samples: about `target_cols` GEMM columns (samples x
/// OH*OW) per task, from the problem size alone (never the thread count), so that results do not
/// depend on sft::set_num_threads.
struct ConvCut {
    std::size_t per_task = 1, tasks = 0;
    ConvCut(std::size_t samples, std::size_t cols_per_sample, std::size_t target_cols = 512) noexcept {
        per_task = std::max<std::size_t>(1, std::min(samples, (target_cols + cols_per_sample - 1) / std::max<std::size_t>(1, cols_per_sample)));
        tasks = (samples + per_task - 1) / per_task;
    }
    std::size_t begin(std::size_t t) const noexcept { return t * per_task; }
    std::size_t end(std::size_t t, std::size_t samples) const noexcept { return std::min(samples, (t + 1) * per_task); }
};

}  // namespace detail

/// 2-D convolution (cross-correlation, as PyTorch): [N, in, H, W] -> [N, out, OH, OW] with
/// OH = floor((H + 2 padding - KH) / stride) + 1 (the same for W).
/// Parameters "weight" [out, in, KH, KW] and "bias" [out] (absent when built without bias),
/// initialised as PyTorch: kaiming_uniform_(a = sqrt(5)), that is uniform in +-1/sqrt(fan_in)
/// with fan_in = in * KH * KW, for both.
///
/// Computation: the batch is cut into tasks of a few samples (about 512 output positions each,
/// from the problem size only) that run on sft's thread pool. A task unfolds its samples by
/// im2col side by side into one column matrix col [in*KH*KW, S*OH*OW] and runs one packed GEMM
/// for them: forward y = W col (+ bias); backward dW_task = dy col^T and dcol = W^T dy, then col2im.
/// The per-task weight and bias gradients are summed in task order, so results are bit-identical
/// for every thread count. Column matrices live in per-thread scratch; the output and the input
/// gradient are kept and reused across steps when the caller dropped them (Tensor::use_count()),
/// and backward() releases the input saved by forward(): a steady-state step allocates nothing.
template <class T>
class Conv2d : public Module<T> {
public:
    /// Throws sft::Error when a channel count, kernel size or stride is 0.
    explicit Conv2d(const Conv2dOptions& options, Rng& rng = default_rng()) : opt_(options) {
        const auto& o = options;
        if (o.in_channels() == 0 || o.out_channels() == 0 || o.kernel_size().h == 0 || o.kernel_size().w == 0 ||
            o.stride().h == 0 || o.stride().w == 0)
            throw Error(ErrorKind::invalid_argument,
                        fmt::format("Conv2d({}, {}, kernel_size={}, stride={}, padding={}): channels, kernel size and stride must be positive",
                                    o.in_channels(), o.out_channels(), o.kernel_size().str(), o.stride().str(), o.padding().str()));
        const std::size_t kh = o.kernel_size().h, kw = o.kernel_size().w;
        // kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in) = 1/sqrt(fan_in).
        const double bound = 1.0 / std::sqrt(static_cast<double>(o.in_channels() * kh * kw));
        Tensor<T> w = Tensor<T>::empty({o.out_channels(), o.in_channels(), kh, kw});
        for (auto& v : w) v = static_cast<T>(rng.uniform(-bound, bound));
        weight_ = this->register_parameter("weight", std::move(w));
        if (o.bias()) {
            Tensor<T> b = Tensor<T>::empty({o.out_channels()});
            for (auto& v : b) v = static_cast<T>(rng.uniform(-bound, bound));
            bias_ = this->register_parameter("bias", std::move(b));
        }
    }

    /// Plain form: Conv2d<T>(in, out, kernel, stride, padding, bias). Throws as the options form.
    Conv2d(std::size_t in_channels, std::size_t out_channels, Size2 kernel_size, Size2 stride = 1, Size2 padding = 0, bool bias = true,
           Rng& rng = default_rng())
        : Conv2d(Conv2dOptions(in_channels, out_channels, kernel_size).stride(stride).padding(padding).bias(bias), rng) {}

    std::string type_name() const override { return "Conv2d"; }
    const Conv2dOptions& options() const noexcept { return opt_; }
    /// The weight [out, in, KH, KW].
    Parameter<T>& weight() noexcept { return *weight_; }
    /// The bias [out]; nullptr when built without one.
    Parameter<T>* bias() noexcept { return bias_; }

    /// [N, in, H, W] -> [N, out, OH, OW]; saves the input for backward(). Throws sft::Error (kind
    /// shape) naming the layer and the shapes when the input is not rank 4, has another channel
    /// count, or is smaller than the kernel.
    Tensor<T> forward(const Tensor<T>& input) override { return forward_act(input, kernels::GemmActivation::none, output_); }

    /// y = act(conv(x) + b) written into `buffer` (reused when only `buffer` holds it, else a
    /// fresh tensor): the activation is applied in the pass that adds the bias to each task's
    /// GEMM result while it is in cache. Sequential calls it with act = relu to fuse a following
    /// ReLU, whose output buffer it passes; the values are those of forward() then ReLU, bit for
    /// bit. Throws sft::Error as forward().
    Tensor<T> forward_act(const Tensor<T>& input, kernels::GemmActivation act, Tensor<T>& buffer) {
        const kernels::ConvGeometry g = geometry(input);
        const std::size_t n = input.shape()[0], out_c = opt_.out_channels();
        const std::size_t k = g.col_rows(), p = g.col_cols(), in_stride = g.channels * g.height * g.width;
        input_ = Tensor<T>();  // the previous step's, if backward() did not run
        Tensor<T>& out = nn::detail::reuse_or_empty(buffer, Shape{n, out_c, g.out_h(), g.out_w()});
        const bool relu = act == kernels::GemmActivation::relu;
        // As the ReLU kernels: x < 0 ? 0 : x keeps NaN and -0, like vmaxps(0, x).
        const auto finish = [relu](T v) noexcept { return relu && v < T(0) ? T(0) : v; };
        const T* w = weight_->value().data();
        const T* b = bias_ ? bias_->value().data() : nullptr;
        const T* x = input.data();
        T* y = out.data();
        const detail::ConvCut cut(n, p);
        prepare_scratch(cut, p, k, out_c);
        sft::detail::ThreadPool::instance().run(cut.tasks, [&](std::size_t t) {
            const std::size_t s0 = cut.begin(t), s1 = cut.end(t, n), cols = (s1 - s0) * p;
            detail::ConvScratchLease<T> lease;
            auto& scratch = *lease;
            T* col = detail::ConvScratch<T>::grow(scratch.col, k * cols);
            for (std::size_t s = s0; s < s1; ++s) kernels::im2col<T>(g, x + s * in_stride, col + (s - s0) * p, cols);
            if (s1 - s0 == 1) {  // y[out, P] = W[out, K] col[K, P], straight into the output
                T* ys = y + s0 * out_c * p;
                kernels::gemm<T>(false, false, out_c, p, k, T(1), w, k, col, cols, T(0), ys, p);
                if (b || relu)
                    for (std::size_t o = 0; o < out_c; ++o) {
                        const T bo = b ? b[o] : T(0);
                        for (std::size_t i = 0; i < p; ++i) ys[o * p + i] = finish(b ? ys[o * p + i] + bo : ys[o * p + i]);
                    }
                return;
            }
            // tmp[out, S*P] = W[out, K] col[K, S*P], then each sample's [out, P] block (+ bias) to y.
            T* tmp = detail::ConvScratch<T>::grow(scratch.mat, out_c * cols);
            kernels::gemm<T>(false, false, out_c, cols, k, T(1), w, k, col, cols, T(0), tmp, cols);
            for (std::size_t s = s0; s < s1; ++s)
                for (std::size_t o = 0; o < out_c; ++o) {
                    const T* src = tmp + o * cols + (s - s0) * p;
                    T* dst = y + (s * out_c + o) * p;
                    const T bo = b ? b[o] : T(0);
                    for (std::size_t i = 0; i < p; ++i) dst[i] = finish(src[i] + bo);
                }
        });
        input_ = input;
        geom_ = g;
        out_shape_ = out.shape();
        return out;
    }

    /// grad_output [N, out, OH, OW] -> grad_input [N, in, H, W] (undefined when need_input_grad is
    /// false); adds dL/dweight and dL/dbias into the trainable parameters' grad(), then releases
    /// the input saved by forward(). Throws sft::Error without a forward() since the last
    /// backward(), or on a shape mismatch.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        return backward_impl(grad_output, nullptr, need_input_grad);
    }

    /// backward() of relu(conv(x)) given dL/d relu's output and relu's output y (Sequential's fused
    /// Conv2d + ReLU): each task masks its rows of grad_output (dy where y > 0, else 0, the ReLU's
    /// kernel) as it gathers them for its GEMMs, instead of a pass of its own over the whole tensor.
    /// Bit-identical to ReLU::backward then backward(). Throws as backward(), and sft::Error (kind
    /// shape) when y's shape is not the last output's.
    Tensor<T> backward_relu(const Tensor<T>& grad_output, const Tensor<T>& relu_output, bool need_input_grad = true) {
        if (input_.defined()) this->check_grad_shape(relu_output, out_shape_);
        return backward_impl(grad_output, relu_output.data(), need_input_grad);
    }

private:
    Tensor<T> backward_impl(const Tensor<T>& grad_output, const T* mask_y, bool need_input_grad) {
        if (!input_.defined()) this->throw_no_forward();
        this->check_grad_shape(grad_output, out_shape_);
        const Tensor<T> input = input_;
        input_ = Tensor<T>();  // released, as PyTorch frees saved tensors after backward
        const kernels::ConvGeometry& g = geom_;
        const std::size_t n = input.shape()[0], out_c = opt_.out_channels();
        const std::size_t k = g.col_rows(), p = g.col_cols(), in_stride = g.channels * g.height * g.width;
        const bool dw = weight_->requires_grad();
        const bool db = bias_ && bias_->requires_grad();
        if (!dw && !db && !need_input_grad) return Tensor<T>();
        const detail::ConvCut cut(n, p);
        // The weight gradient of each task as [out, K], or transposed [K, out] when that pads less
        // in the GEMM's register tiles (few output channels or a short K).
        const bool dw_t = transposed_wgrad(out_c, k);
        if (dw) partial_dw_.resize(cut.tasks * out_c * k);
        if (db) partial_db_.resize(cut.tasks * out_c);
        Tensor<T> grad_input;
        if (need_input_grad) grad_input = nn::detail::reuse_or_empty(grad_input_, input.shape());
        const T* w = weight_->value().data();
        const T* x = input.data();
        const T* gy = grad_output.data();
        T* dx = need_input_grad ? grad_input.data() : nullptr;
        prepare_scratch(cut, p, k, out_c);
        sft::detail::ThreadPool::instance().run(cut.tasks, [&](std::size_t t) {
            const std::size_t s0 = cut.begin(t), s1 = cut.end(t, n), cols = (s1 - s0) * p;
            detail::ConvScratchLease<T> lease;
            auto& scratch = *lease;
            // dy of the task's samples as one matrix [out, S*P] (for one sample: dy itself), masked
            // by the ReLU's output when fused.
            const T* gm = gy + s0 * out_c * p;
            if (s1 - s0 > 1 || mask_y) {
                T* m = detail::ConvScratch<T>::grow(scratch.mat, out_c * cols);
                for (std::size_t s = s0; s < s1; ++s)
                    for (std::size_t o = 0; o < out_c; ++o) {
                        const std::size_t from = (s * out_c + o) * p;
                        T* to = m + o * cols + (s - s0) * p;
                        if (mask_y) kernels::serial::relu_backward(gy + from, mask_y + from, to, p);
                        else std::copy_n(gy + from, p, to);
                    }
                gm = m;
            }
            if (db) kernels::row_sums(gm, out_c, cols, partial_db_.data() + t * out_c);  // db_task[out] = sum over S*P of dy
            T* col = detail::ConvScratch<T>::grow(scratch.col, k * cols);
            if (dw) {
                for (std::size_t s = s0; s < s1; ++s) kernels::im2col<T>(g, x + s * in_stride, col + (s - s0) * p, cols);
                T* pw = partial_dw_.data() + t * out_c * k;
                if (dw_t)  // dW^T[K, out] = col[K, S*P] dy[out, S*P]^T
                    kernels::gemm<T>(false, true, k, out_c, cols, T(1), col, cols, gm, cols, T(0), pw, out_c);
                else  // dW[out, K] = dy[out, S*P] col[K, S*P]^T
                    kernels::gemm<T>(false, true, out_c, k, cols, T(1), gm, cols, col, cols, T(0), pw, k);
            }
            if (dx) {  // dcol[K, S*P] = W[out, K]^T dy[out, S*P], then col2im into each sample's dx
                kernels::gemm<T>(true, false, k, cols, out_c, T(1), w, k, gm, cols, T(0), col, cols);
                for (std::size_t s = s0; s < s1; ++s) {
                    T* dxs = dx + s * in_stride;
                    std::fill(dxs, dxs + in_stride, T(0));
                    kernels::col2im<T>(g, col + (s - s0) * p, dxs, cols);
                }
            }
        });
        // The tasks' partial gradients summed in task order: the same sums for every thread count.
        if (dw) {
            T* gw = weight_->grad().data();
            for (std::size_t o = 0; o < out_c; ++o)
                for (std::size_t r = 0; r < k; ++r) {
                    T acc = T(0);
                    for (std::size_t t = 0; t < cut.tasks; ++t) {
                        const T* pw = partial_dw_.data() + t * out_c * k;
                        acc += dw_t ? pw[r * out_c + o] : pw[o * k + r];
                    }
                    gw[o * k + r] += acc;
                }
        }
        if (db) {
            T* gb = bias_->grad().data();
            for (std::size_t o = 0; o < out_c; ++o) {
                T acc = T(0);
                for (std::size_t t = 0; t < cut.tasks; ++t) acc += partial_db_[t * out_c + o];
                gb[o] += acc;
            }
        }
        return grad_input;
    }

public:
    /// Drops the input saved by the last forward() (afterwards backward() throws as without a forward).
    void release_saved() noexcept override { input_ = Tensor<T>(); }

private:
    // Scratch for the tasks of a forward or backward: one set per thread that can run them, each
    // large enough for a task of `cut` (the column matrix [K, S*P] and the [out, S*P] matrix).
    static void prepare_scratch(const detail::ConvCut& cut, std::size_t p, std::size_t k, std::size_t out_c) {
        const std::size_t cols = cut.per_task * p;
        const std::size_t sets = std::min(cut.tasks, sft::detail::ThreadPool::instance().num_threads()) + 1;
        detail::ConvScratchPool<T>::instance().prepare(sets, k * cols, out_c * cols);
    }

    // Whether the weight-gradient GEMM pads less as [K, out] than as [out, K] in the packed
    // kernel's MR x NR register tiles.
    static bool transposed_wgrad(std::size_t out_c, std::size_t k) noexcept {
        using Bl = kernels::gemm_detail::Blocking<T>;
        auto fill = [](std::size_t m, std::size_t n) {
            const double pm = double((m + Bl::mr - 1) / Bl::mr * Bl::mr), pn = double((n + Bl::nr - 1) / Bl::nr * Bl::nr);
            return double(m) * double(n) / (pm * pn);
        };
        return fill(k, out_c) > fill(out_c, k);
    }

    kernels::ConvGeometry geometry(const Tensor<T>& input) const {
        const Shape& s = input.shape();
        if (s.rank() != 4 || s[1] != opt_.in_channels())
            throw Error(ErrorKind::shape, fmt::format("{}: input {}, expected [N, {}, H, W]", this->label(), s.str(), opt_.in_channels()));
        kernels::ConvGeometry g;
        g.channels = s[1];
        g.height = s[2];
        g.width = s[3];
        g.kernel_h = opt_.kernel_size().h;
        g.kernel_w = opt_.kernel_size().w;
        g.stride_h = opt_.stride().h;
        g.stride_w = opt_.stride().w;
        g.pad_h = opt_.padding().h;
        g.pad_w = opt_.padding().w;
        if (g.out_h() == 0 || g.out_w() == 0)
            throw Error(ErrorKind::shape, fmt::format("{}: input {} with padding {} is smaller than the kernel {}", this->label(), s.str(),
                                                      opt_.padding().str(), opt_.kernel_size().str()));
        return g;
    }

    Conv2dOptions opt_;
    Parameter<T>* weight_ = nullptr;
    Parameter<T>* bias_ = nullptr;
    Tensor<T> input_;  // saved by forward for backward, released by backward
    kernels::ConvGeometry geom_;
    Shape out_shape_;
    Tensor<T> output_, grad_input_;         // kept and reused across steps (see nn::detail::reuse_or_empty)
    std::vector<T> partial_dw_, partial_db_;  // per-task weight and bias gradients
};

}  // namespace sft::nn
