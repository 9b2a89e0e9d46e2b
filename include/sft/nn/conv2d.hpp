/// @file conv2d.hpp
/// sft::nn::Conv2d, a 2-D convolution on NCHW tensors as torch.nn.Conv2d (weight [out, in, KH, KW],
/// bias [out]), computed per sample as im2col then one GEMM; and its options, Conv2dOptions.
#pragma once

#include <sft/kernels/gemm.hpp>
#include <sft/kernels/im2col.hpp>
#include <sft/nn/module.hpp>

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

/// 2-D convolution (cross-correlation, as PyTorch): [N, in, H, W] -> [N, out, OH, OW] with
/// OH = floor((H + 2 padding - KH) / stride) + 1 (the same for W).
/// Parameters "weight" [out, in, KH, KW] and "bias" [out] (absent when built without bias),
/// initialised as PyTorch: kaiming_uniform_(a = sqrt(5)), that is uniform in +-1/sqrt(fan_in)
/// with fan_in = in * KH * KW, for both.
///
/// Each sample is unfolded by im2col into one column buffer [in*KH*KW, OH*OW] that is reused
/// across samples and calls (a 1x1 kernel with stride 1 and no padding uses the input directly);
/// backward recomputes the columns from the cached input rather than keeping N of them.
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

    /// [N, in, H, W] -> [N, out, OH, OW]. Throws sft::Error (kind shape) naming the layer and the
    /// shapes when the input is not rank 4, has another channel count, or is smaller than the kernel.
    Tensor<T> forward(const Tensor<T>& input) override {
        const kernels::ConvGeometry g = geometry(input);
        const std::size_t n = input.shape()[0], out_c = opt_.out_channels();
        const std::size_t k = g.col_rows(), p = g.col_cols();
        Tensor<T> out = Tensor<T>::empty({n, out_c, g.out_h(), g.out_w()});
        const T* w = weight_->value().data();
        const std::size_t in_stride = g.channels * g.height * g.width;
        for (std::size_t s = 0; s < n; ++s) {
            const T* col = columns(g, input.data() + s * in_stride);
            T* y = out.data() + s * out_c * p;
            // y[out, P] = W[out, K] col[K, P]
            kernels::gemm<T>(false, false, out_c, p, k, T(1), w, k, col, p, T(0), y, p);
            if (bias_) {
                const T* b = bias_->value().data();
                for (std::size_t o = 0; o < out_c; ++o)
                    for (std::size_t i = 0; i < p; ++i) y[o * p + i] += b[o];
            }
        }
        input_ = input;
        geom_ = g;
        out_shape_ = out.shape();
        return out;
    }

    /// grad_output [N, out, OH, OW] -> grad_input [N, in, H, W]; adds dL/dweight and dL/dbias into
    /// the trainable parameters' grad(). Throws sft::Error before any forward() or on a shape mismatch.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        if (!input_.defined()) this->throw_no_forward();
        this->check_grad_shape(grad_output, out_shape_);
        const kernels::ConvGeometry& g = geom_;
        const std::size_t n = input_.shape()[0], out_c = opt_.out_channels();
        const std::size_t k = g.col_rows(), p = g.col_cols();
        const std::size_t in_stride = g.channels * g.height * g.width;
        const bool dw = weight_->requires_grad();
        const bool db = bias_ && bias_->requires_grad();
        Tensor<T> grad_input;
        if (need_input_grad) grad_input = Tensor<T>::zeros(input_.shape());
        const T* w = weight_->value().data();
        for (std::size_t s = 0; s < n; ++s) {
            const T* gy = grad_output.data() + s * out_c * p;
            if (dw) {  // dW[out, K] += gy[out, P] col[K, P]^T
                const T* col = columns(g, input_.data() + s * in_stride);
                kernels::gemm<T>(false, true, out_c, k, p, T(1), gy, p, col, p, T(1), weight_->grad().data(), k);
            }
            if (db) {  // db[out] += sum over P of gy[out, P]
                T* b = bias_->grad().data();
                for (std::size_t o = 0; o < out_c; ++o) {
                    T acc = T(0);
                    for (std::size_t i = 0; i < p; ++i) acc += gy[o * p + i];
                    b[o] += acc;
                }
            }
            if (need_input_grad) {  // dcol[K, P] = W[out, K]^T gy[out, P], then col2im into dx
                T* dx = grad_input.data() + s * in_stride;
                if (pointwise(g)) {
                    kernels::gemm<T>(true, false, k, p, out_c, T(1), w, k, gy, p, T(0), dx, p);
                } else {
                    T* dcol = column_buffer(k * p);
                    kernels::gemm<T>(true, false, k, p, out_c, T(1), w, k, gy, p, T(0), dcol, p);
                    kernels::col2im<T>(g, dcol, dx);
                }
            }
        }
        return grad_input;
    }

private:
    // A 1x1 kernel with stride 1 and no padding: the image [C, H*W] is already the column matrix.
    static bool pointwise(const kernels::ConvGeometry& g) noexcept {
        return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
    }

    // The one column buffer, grown when needed and reused by every sample and call.
    T* column_buffer(std::size_t size) {
        if (col_.size() < size) col_.resize(size);
        return col_.data();
    }

    // The column matrix of one sample [C, H, W]: the image itself for a pointwise conv.
    const T* columns(const kernels::ConvGeometry& g, const T* image) {
        if (pointwise(g)) return image;
        T* col = column_buffer(g.col_rows() * g.col_cols());
        kernels::im2col<T>(g, image, col);
        return col;
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
    Tensor<T> input_;
    kernels::ConvGeometry geom_;
    Shape out_shape_;
    std::vector<T> col_;
};

}  // namespace sft::nn
