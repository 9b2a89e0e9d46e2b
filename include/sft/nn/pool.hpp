/// @file pool.hpp
/// sft::nn::MaxPool2d and sft::nn::AvgPool2d on NCHW tensors, as torch.nn.MaxPool2d / AvgPool2d
/// (ceil_mode false, dilation 1), with their options in libtorch's builder style.
#pragma once

#include <sft/detail/thread_pool.hpp>
#include <sft/nn/conv2d.hpp>
#include <sft/nn/module.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace sft::nn {

/// Options of MaxPool2d: MaxPool2dOptions(2).stride(2).padding(0). The stride defaults to the kernel size.
struct MaxPool2dOptions {
    MaxPool2dOptions(Size2 kernel_size) : kernel_size_(kernel_size) {}  // NOLINT: implicit, as libtorch
    /// The step of the window (default: the kernel size).
    MaxPool2dOptions& stride(Size2 s) noexcept {
        stride_ = s;
        return *this;
    }
    /// Implicit padding on both sides (padded positions never win the max); at most half the kernel.
    MaxPool2dOptions& padding(Size2 p) noexcept {
        padding_ = p;
        return *this;
    }
    Size2 kernel_size() const noexcept { return kernel_size_; }
    Size2 stride() const noexcept { return stride_ ? *stride_ : kernel_size_; }
    Size2 padding() const noexcept { return padding_; }

private:
    Size2 kernel_size_;
    std::optional<Size2> stride_;
    Size2 padding_{0};
};

/// Options of AvgPool2d: AvgPool2dOptions(2).stride(2).padding(1).count_include_pad(false).
struct AvgPool2dOptions {
    AvgPool2dOptions(Size2 kernel_size) : kernel_size_(kernel_size) {}  // NOLINT: implicit, as libtorch
    /// The step of the window (default: the kernel size).
    AvgPool2dOptions& stride(Size2 s) noexcept {
        stride_ = s;
        return *this;
    }
    /// Zero padding on both sides; at most half the kernel.
    AvgPool2dOptions& padding(Size2 p) noexcept {
        padding_ = p;
        return *this;
    }
    /// Whether padded zeros count in the divisor (default true, as PyTorch): the divisor is then
    /// always KH * KW; otherwise it is the number of real input elements in the window.
    AvgPool2dOptions& count_include_pad(bool on) noexcept {
        count_include_pad_ = on;
        return *this;
    }
    Size2 kernel_size() const noexcept { return kernel_size_; }
    Size2 stride() const noexcept { return stride_ ? *stride_ : kernel_size_; }
    Size2 padding() const noexcept { return padding_; }
    bool count_include_pad() const noexcept { return count_include_pad_; }

private:
    Size2 kernel_size_;
    std::optional<Size2> stride_;
    Size2 padding_{0};
    bool count_include_pad_ = true;
};

namespace detail {
/// Validates pooling options (sizes positive, padding at most half the kernel, as PyTorch).
inline void check_pool_options(const char* type, Size2 k, Size2 s, Size2 p) {
    if (k.h == 0 || k.w == 0 || s.h == 0 || s.w == 0 || 2 * p.h > k.h || 2 * p.w > k.w)
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("{}(kernel_size={}, stride={}, padding={}): kernel size and stride must be positive and padding at most "
                                "half the kernel size",
                                type, k.str(), s.str(), p.str()));
}

/// The window geometry of a pooling layer for an NCHW input; throws sft::Error naming `module`
/// (its label is built only to throw: a forward allocates nothing).
template <class T>
kernels::ConvGeometry pool_geometry(const Module<T>& module, const Shape& s, Size2 k, Size2 st, Size2 p) {
    if (s.rank() != 4)
        throw Error(ErrorKind::shape, fmt::format("{}: input {}, expected [N, C, H, W]", module.label(), s.str()));
    kernels::ConvGeometry g;
    g.channels = s[1];
    g.height = s[2];
    g.width = s[3];
    g.kernel_h = k.h;
    g.kernel_w = k.w;
    g.stride_h = st.h;
    g.stride_w = st.w;
    g.pad_h = p.h;
    g.pad_w = p.w;
    if (g.out_h() == 0 || g.out_w() == 0)
        throw Error(ErrorKind::shape, fmt::format("{}: input {} with padding {} is smaller than the kernel {}", module.label(), s.str(), p.str(), k.str()));
    if (g.height * g.width > std::numeric_limits<std::uint32_t>::max())
        throw Error(ErrorKind::shape, fmt::format("{}: input {} has planes of more than 2^32 elements", module.label(), s.str()));
    return g;
}
}  // namespace detail

/// Max over each window: [N, C, H, W] -> [N, C, OH, OW], OH = floor((H + 2 padding - KH) / stride) + 1.
/// No parameters. Backward routes each output's gradient to the input element that won the max
/// (the first one in row-major order on ties, as PyTorch's CPU kernel; a NaN wins and propagates).
/// Forward and backward run over the N*C planes on sft's thread pool (each plane computed
/// alone: results do not depend on the thread count), with a branch-free path for the common
/// 2x2 window of stride 2; the output and input-gradient tensors are kept and reused across steps
/// when the caller dropped them (Tensor::use_count()).
template <class T>
class MaxPool2d : public Module<T> {
public:
    /// Throws sft::Error on a zero kernel size or stride, or padding above half the kernel.
    explicit MaxPool2d(const MaxPool2dOptions& options) : opt_(options) {
        detail::check_pool_options("MaxPool2d", opt_.kernel_size(), opt_.stride(), opt_.padding());
    }
    /// Plain form: MaxPool2d<T>(kernel, stride = kernel, padding = 0). Throws as the options form.
    explicit MaxPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0)
        : MaxPool2d(make_options(kernel_size, stride, padding)) {}

    std::string type_name() const override { return "MaxPool2d"; }
    const MaxPool2dOptions& options() const noexcept { return opt_; }

    /// [N, C, H, W] -> [N, C, OH, OW]. Throws sft::Error (kind shape) when the input is not rank 4
    /// or is smaller than the window.
    Tensor<T> forward(const Tensor<T>& input) override {
        const kernels::ConvGeometry g =
            detail::pool_geometry(*this, input.shape(), opt_.kernel_size(), opt_.stride(), opt_.padding());
        const std::size_t n = input.shape()[0], oh = g.out_h(), ow = g.out_w(), plane = g.height * g.width, oplane = oh * ow;
        Tensor<T>& out = nn::detail::reuse_or_empty(output_, Shape{n, g.channels, oh, ow});
        argmax_.resize(out.numel());
        const T* x = input.data();
        T* y = out.data();
        const bool two_by_two = g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 0 && g.pad_w == 0;
        sft::detail::parallel_for(n * g.channels, plane_grain(plane), [&](std::size_t begin, std::size_t end) {
            for (std::size_t nc = begin; nc < end; ++nc) {
                if (two_by_two) max_2x2(g, x + nc * plane, y + nc * oplane, argmax_.data() + nc * oplane);
                else max_window(g, x + nc * plane, y + nc * oplane, argmax_.data() + nc * oplane);
            }
        });
        in_shape_ = input.shape();
        out_shape_ = out.shape();
        forwarded_ = true;
        return out;
    }

    /// grad_output [N, C, OH, OW] -> grad_input [N, C, H, W]. Throws sft::Error before any
    /// forward() or on a shape mismatch.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        if (!forwarded_) this->throw_no_forward();
        this->check_grad_shape(grad_output, out_shape_);
        if (!need_input_grad) return Tensor<T>();
        Tensor<T> grad_input = nn::detail::reuse_or_empty(grad_input_, in_shape_);
        const std::size_t planes = in_shape_[0] * in_shape_[1], plane = in_shape_[2] * in_shape_[3];
        const std::size_t oplane = out_shape_[2] * out_shape_[3];
        T* dx = grad_input.data();
        const T* gy = grad_output.data();
        const std::uint32_t* am = argmax_.data();
        sft::detail::parallel_for(planes, plane_grain(plane), [&](std::size_t begin, std::size_t end) {
            for (std::size_t nc = begin; nc < end; ++nc) {  // one plane at a time: zeroed and scattered while in L1
                T* d = dx + nc * plane;
                std::fill(d, d + plane, T(0));
                const T* gp = gy + nc * oplane;
                const std::uint32_t* ap = am + nc * oplane;
                for (std::size_t o = 0; o < oplane; ++o) d[ap[o]] += gp[o];
            }
        });
        return grad_input;
    }

private:
    static MaxPool2dOptions make_options(Size2 k, std::optional<Size2> s, Size2 p) {
        MaxPool2dOptions o(k);
        if (s) o.stride(*s);
        o.padding(p);
        return o;
    }

    // Planes per task: a few thousand elements at least, so that small planes are not one task each.
    static std::size_t plane_grain(std::size_t plane) noexcept { return std::max<std::size_t>(1, 4096 / std::max<std::size_t>(1, plane)); }

    // Whether v replaces the running max m: larger, or NaN (as PyTorch's CPU kernel).
    static bool wins(T v, T m) noexcept { return v > m || v != v; }

    // 2x2 windows of stride 2 without padding, branch-free, in two passes that vectorise: the
    // winner of each horizontal pair of two input rows (one long loop over several rows when
    // W == 2*OW), then the winner of the two pairs above each other. Same result as the row-major
    // scan of a window: the first maximum in the row wins ties, the top row wins a tie between rows,
    // a NaN wins and the last NaN in row-major order wins among NaNs. The pair winners live in a
    // buffer on the stack, a block of output rows (or of columns, for rows wider than it) at a time:
    // nothing is allocated, whichever thread runs the plane.
    static void max_2x2(const kernels::ConvGeometry& g, const T* xp, T* yp, std::uint32_t* ap) noexcept {
        const std::size_t oh = g.out_h(), ow = g.out_w(), w = g.width;
        constexpr std::size_t scratch = 2048;  // pair winners held at once
        alignas(64) T h[scratch];
        alignas(64) std::uint32_t hx[scratch];
        auto pairs = [](const T* __restrict x, std::size_t count, T* __restrict hout, std::uint32_t* __restrict iout) {
            for (std::size_t i = 0; i < count; ++i) {
                const T a = x[2 * i], b = x[2 * i + 1];
                const bool wb = b > a || b != b;
                hout[i] = wb ? b : a;
                iout[i] = std::uint32_t(2 * i) + (wb ? 1u : 0u);
            }
        };
        // Output row oy, columns [c0, c0 + cols): the winners of its top and bottom pairs are at
        // top/ti and bot/bi; their indices count from top_base and bot_base in the plane.
        auto combine = [&](std::size_t oy, std::size_t c0, std::size_t cols, const T* top, const std::uint32_t* ti, const T* bot,
                           const std::uint32_t* bi, std::uint32_t top_base, std::uint32_t bot_base) {
            T* __restrict y = yp + oy * ow + c0;
            std::uint32_t* __restrict am = ap + oy * ow + c0;
            for (std::size_t ox = 0; ox < cols; ++ox) {
                const T t = top[ox], u = bot[ox];
                const bool wu = u > t || u != u;
                y[ox] = wu ? u : t;
                am[ox] = wu ? bot_base + bi[ox] : top_base + ti[ox];
            }
        };
        if (w == 2 * ow && 2 * ow <= scratch) {
            // Whole rows, `block` output rows (2 * block input rows, contiguous) per pass; a pair's
            // index is flat in the plane, from the block's first element.
            const std::size_t block = scratch / (2 * ow);
            for (std::size_t oy0 = 0; oy0 < oh; oy0 += block) {
                const std::size_t rows = std::min(block, oh - oy0);
                const std::uint32_t base = std::uint32_t(2 * oy0 * w);
                pairs(xp + 2 * oy0 * w, 2 * rows * ow, h, hx);
                for (std::size_t r = 0; r < rows; ++r)
                    combine(oy0 + r, 0, ow, h + 2 * r * ow, hx + 2 * r * ow, h + (2 * r + 1) * ow, hx + (2 * r + 1) * ow, base, base);
            }
            return;
        }
        // Otherwise one output row at a time, its columns in chunks of scratch / 2 (a pair's
        // index is the column in its row, from the chunk's first column).
        const std::size_t chunk = scratch / 2;
        for (std::size_t oy = 0; oy < oh; ++oy)
            for (std::size_t c0 = 0; c0 < ow; c0 += chunk) {
                const std::size_t cols = std::min(chunk, ow - c0);
                pairs(xp + 2 * oy * w + 2 * c0, cols, h, hx);
                pairs(xp + (2 * oy + 1) * w + 2 * c0, cols, h + chunk, hx + chunk);
                combine(oy, c0, cols, h, hx, h + chunk, hx + chunk, std::uint32_t(2 * oy * w + 2 * c0), std::uint32_t((2 * oy + 1) * w + 2 * c0));
            }
    }

    // Any window: clipped to the image (padding only shifts it, padded cells never win).
    static void max_window(const kernels::ConvGeometry& g, const T* xp, T* yp, std::uint32_t* ap) noexcept {
        const std::size_t oh = g.out_h(), ow = g.out_w();
        for (std::size_t oy = 0; oy < oh; ++oy)
            for (std::size_t ox = 0; ox < ow; ++ox) {
                const long y0 = long(oy * g.stride_h) - long(g.pad_h), x0 = long(ox * g.stride_w) - long(g.pad_w);
                const std::size_t ys = std::size_t(std::max(0L, y0)), xs = std::size_t(std::max(0L, x0));
                const std::size_t ye = std::min(g.height, std::size_t(y0 + long(g.kernel_h)));
                const std::size_t xe = std::min(g.width, std::size_t(x0 + long(g.kernel_w)));
                std::size_t best = ys * g.width + xs;
                T m = xp[best];
                for (std::size_t iy = ys; iy < ye; ++iy)
                    for (std::size_t ix = xs; ix < xe; ++ix) {
                        const T v = xp[iy * g.width + ix];
                        if (wins(v, m)) {
                            m = v;
                            best = iy * g.width + ix;
                        }
                    }
                yp[oy * ow + ox] = m;
                ap[oy * ow + ox] = std::uint32_t(best);
            }
    }

    MaxPool2dOptions opt_;
    std::vector<std::uint32_t> argmax_;  // index inside its plane of each output's max
    Shape in_shape_, out_shape_;
    Tensor<T> output_, grad_input_;  // kept and reused across steps
    bool forwarded_ = false;
};

/// Mean over each window: [N, C, H, W] -> [N, C, OH, OW], OH = floor((H + 2 padding - KH) / stride) + 1.
/// No parameters. With count_include_pad (the default, as PyTorch) the divisor is KH * KW, padded
/// zeros included; otherwise the number of real input elements in the window. Runs over the N*C
/// planes on sft's thread pool (results do not depend on the thread count) and reuses its output
/// and input-gradient tensors across steps when the caller dropped them.
template <class T>
class AvgPool2d : public Module<T> {
public:
    /// Throws sft::Error on a zero kernel size or stride, or padding above half the kernel.
    explicit AvgPool2d(const AvgPool2dOptions& options) : opt_(options) {
        detail::check_pool_options("AvgPool2d", opt_.kernel_size(), opt_.stride(), opt_.padding());
    }
    /// Plain form: AvgPool2d<T>(kernel, stride = kernel, padding = 0, count_include_pad = true).
    explicit AvgPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0, bool count_include_pad = true)
        : AvgPool2d(make_options(kernel_size, stride, padding, count_include_pad)) {}

    std::string type_name() const override { return "AvgPool2d"; }
    const AvgPool2dOptions& options() const noexcept { return opt_; }

    /// [N, C, H, W] -> [N, C, OH, OW]. Throws sft::Error (kind shape) when the input is not rank 4
    /// or is smaller than the window.
    Tensor<T> forward(const Tensor<T>& input) override {
        const kernels::ConvGeometry g =
            detail::pool_geometry(*this, input.shape(), opt_.kernel_size(), opt_.stride(), opt_.padding());
        const std::size_t n = input.shape()[0], oh = g.out_h(), ow = g.out_w(), plane = g.height * g.width;
        Tensor<T>& out = nn::detail::reuse_or_empty(output_, Shape{n, g.channels, oh, ow});
        const T* x = input.data();
        T* y = out.data();
        sft::detail::parallel_for(n * g.channels, std::max<std::size_t>(1, 4096 / plane), [&](std::size_t begin, std::size_t end) {
            for (std::size_t nc = begin; nc < end; ++nc) {
                const T* xp = x + nc * plane;
                T* yp = y + nc * oh * ow;
                for (std::size_t oy = 0; oy < oh; ++oy)
                    for (std::size_t ox = 0; ox < ow; ++ox) {
                        const Window w = window(g, oy, ox);
                        T acc = T(0);
                        for (std::size_t iy = w.ys; iy < w.ye; ++iy)
                            for (std::size_t ix = w.xs; ix < w.xe; ++ix) acc += xp[iy * g.width + ix];
                        yp[oy * ow + ox] = acc / w.divisor;
                    }
            }
        });
        geom_ = g;
        in_shape_ = input.shape();
        out_shape_ = out.shape();
        forwarded_ = true;
        return out;
    }

    /// grad_output [N, C, OH, OW] -> grad_input [N, C, H, W]: each output's gradient spread evenly
    /// (divided by the same divisor) over its window. Throws sft::Error before any forward() or on
    /// a shape mismatch.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        if (!forwarded_) this->throw_no_forward();
        this->check_grad_shape(grad_output, out_shape_);
        if (!need_input_grad) return Tensor<T>();
        const kernels::ConvGeometry& g = geom_;
        const std::size_t oh = g.out_h(), ow = g.out_w(), plane = g.height * g.width;
        Tensor<T> grad_input = nn::detail::reuse_or_empty(grad_input_, in_shape_);
        const T* gy = grad_output.data();
        T* dx = grad_input.data();
        sft::detail::parallel_for(in_shape_[0] * g.channels, std::max<std::size_t>(1, 4096 / plane), [&](std::size_t begin, std::size_t end) {
            for (std::size_t nc = begin; nc < end; ++nc) {  // one plane at a time: zeroed and scattered while in L1
                T* d = dx + nc * plane;
                std::fill(d, d + plane, T(0));
                const T* gp = gy + nc * oh * ow;
                for (std::size_t oy = 0; oy < oh; ++oy)
                    for (std::size_t ox = 0; ox < ow; ++ox) {
                        const Window w = window(g, oy, ox);
                        const T v = gp[oy * ow + ox] / w.divisor;
                        for (std::size_t iy = w.ys; iy < w.ye; ++iy)
                            for (std::size_t ix = w.xs; ix < w.xe; ++ix) d[iy * g.width + ix] += v;
                    }
            }
        });
        return grad_input;
    }

private:
    struct Window {
        std::size_t ys, ye, xs, xe;  // the window clipped to the image
        T divisor;
    };

    // As PyTorch's avg_pool2d: the window clipped to the padded image gives the count_include_pad
    // divisor (KH * KW without ceil_mode), the window clipped to the image the other one.
    Window window(const kernels::ConvGeometry& g, std::size_t oy, std::size_t ox) const noexcept {
        const long y0 = long(oy * g.stride_h) - long(g.pad_h), x0 = long(ox * g.stride_w) - long(g.pad_w);
        const long y1 = std::min(y0 + long(g.kernel_h), long(g.height + g.pad_h));
        const long x1 = std::min(x0 + long(g.kernel_w), long(g.width + g.pad_w));
        const long padded_count = (y1 - y0) * (x1 - x0);
        Window w;
        w.ys = std::size_t(std::max(0L, y0));
        w.xs = std::size_t(std::max(0L, x0));
        w.ye = std::min(g.height, std::size_t(y1));
        w.xe = std::min(g.width, std::size_t(x1));
        w.divisor = opt_.count_include_pad() ? T(padded_count) : T((w.ye - w.ys) * (w.xe - w.xs));
        return w;
    }

    static AvgPool2dOptions make_options(Size2 k, std::optional<Size2> s, Size2 p, bool cip) {
        AvgPool2dOptions o(k);
        if (s) o.stride(*s);
        o.padding(p).count_include_pad(cip);
        return o;
    }

    AvgPool2dOptions opt_;
    kernels::ConvGeometry geom_;
    Shape in_shape_, out_shape_;
    Tensor<T> output_, grad_input_;  // kept and reused across steps
    bool forwarded_ = false;
};

}  // namespace sft::nn
