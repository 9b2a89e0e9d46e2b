/// @file im2col.hpp
/// im2col / col2im for 2-D convolution on one NCHW sample: they turn a convolution into a GEMM.
/// Internal: namespace sft::kernels. Each kernel has a plain scalar reference (`*_scalar`, also
/// reachable as reference::im2col and reference::col2im; one bounds check per element) and a fast version that works on contiguous runs of a row (memcpy
/// for im2col, an xsimd add for col2im); `SFT_NO_SIMD=1` makes col2im's run add a plain loop.
///
/// Layout, as Caffe and PyTorch's THNN slow_conv2d: the column matrix is
/// col[C * KH * KW, OH * OW], row r = (c * KH + ki) * KW + kj, column p = oy * OW + ox, and
/// col[r, p] = image[c, oy * SH - PH + ki, ox * SW - PW + kj] (0 outside the image).
#pragma once

#include <sft/config.hpp>
#include <sft/kernels/simd.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace sft::kernels {

/// The geometry of a 2-D convolution (or pooling) window over one [C, H, W] image.
struct ConvGeometry {
    std::size_t channels = 1, height = 1, width = 1;  ///< input C, H, W
    std::size_t kernel_h = 1, kernel_w = 1;           ///< KH, KW
    std::size_t stride_h = 1, stride_w = 1;           ///< SH, SW (> 0)
    std::size_t pad_h = 0, pad_w = 0;                 ///< PH, PW (zero padding on both sides)

    /// OH = floor((H + 2 PH - KH) / SH) + 1, or 0 when the window does not fit.
    std::size_t out_h() const noexcept {
        return height + 2 * pad_h < kernel_h ? 0 : (height + 2 * pad_h - kernel_h) / stride_h + 1;
    }
    /// OW = floor((W + 2 PW - KW) / SW) + 1, or 0 when the window does not fit.
    std::size_t out_w() const noexcept { return width + 2 * pad_w < kernel_w ? 0 : (width + 2 * pad_w - kernel_w) / stride_w + 1; }
    /// Rows of the column matrix: C * KH * KW.
    std::size_t col_rows() const noexcept { return channels * kernel_h * kernel_w; }
    /// Columns of the column matrix: OH * OW.
    std::size_t col_cols() const noexcept { return out_h() * out_w(); }
};

namespace detail {
/// The output positions o in [0, n_out) whose input index o * stride - pad + k lies in [0, n_in):
/// returns [lo, hi) (empty when lo >= hi).
inline void valid_range(std::size_t n_in, std::size_t n_out, std::size_t stride, std::size_t pad, std::size_t k, std::size_t& lo,
                        std::size_t& hi) noexcept {
    // o * stride + k >= pad  <=>  o >= ceil((pad - k) / stride)
    lo = k >= pad ? 0 : (pad - k + stride - 1) / stride;
    // o * stride + k - pad < n_in  <=>  o * stride < n_in + pad - k
    const std::size_t lim = n_in + pad;
    hi = lim <= k ? 0 : std::min(n_out, (lim - k + stride - 1) / stride);
    if (lo > hi) lo = hi;
}

/// y[i] += x[i] for i < n: the xsimd version unless SFT_NO_SIMD.
template <class T>
inline void add_run(T* y, const T* x, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    constexpr std::size_t w = Batch<T>::size;
    for (const std::size_t body = n / w * w; i < body; i += w)
        (Batch<T>::load_unaligned(y + i) + Batch<T>::load_unaligned(x + i)).store_unaligned(y + i);
#endif
    for (; i < n; ++i) y[i] += x[i];
}
}  // namespace detail

/// Scalar reference of im2col: image [C, H, W] -> col [C*KH*KW, OH*OW] (see the file comment).
template <class T>
void im2col_scalar(const ConvGeometry& g, const T* image, T* col) noexcept {
    const std::size_t oh = g.out_h(), ow = g.out_w();
    for (std::size_t c = 0; c < g.channels; ++c)
        for (std::size_t ki = 0; ki < g.kernel_h; ++ki)
            for (std::size_t kj = 0; kj < g.kernel_w; ++kj) {
                T* row = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * oh * ow;
                for (std::size_t oy = 0; oy < oh; ++oy)
                    for (std::size_t ox = 0; ox < ow; ++ox) {
                        // Signed arithmetic: the padded positions are negative.
                        const long iy = long(oy * g.stride_h + ki) - long(g.pad_h);
                        const long ix = long(ox * g.stride_w + kj) - long(g.pad_w);
                        const bool in = iy >= 0 && ix >= 0 && iy < long(g.height) && ix < long(g.width);
                        row[oy * ow + ox] = in ? image[(c * g.height + std::size_t(iy)) * g.width + std::size_t(ix)] : T(0);
                    }
            }
}

/// Scalar reference of col2im, the adjoint of im2col: image[C, H, W] += scatter of col
/// [C*KH*KW, OH*OW] (overlapping windows add up). The caller zeroes `image` for a plain result.
template <class T>
void col2im_scalar(const ConvGeometry& g, const T* col, T* image) noexcept {
    const std::size_t oh = g.out_h(), ow = g.out_w();
    for (std::size_t c = 0; c < g.channels; ++c)
        for (std::size_t ki = 0; ki < g.kernel_h; ++ki)
            for (std::size_t kj = 0; kj < g.kernel_w; ++kj) {
                const T* row = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * oh * ow;
                for (std::size_t oy = 0; oy < oh; ++oy)
                    for (std::size_t ox = 0; ox < ow; ++ox) {
                        const long iy = long(oy * g.stride_h + ki) - long(g.pad_h);
                        const long ix = long(ox * g.stride_w + kj) - long(g.pad_w);
                        if (iy >= 0 && ix >= 0 && iy < long(g.height) && ix < long(g.width))
                            image[(c * g.height + std::size_t(iy)) * g.width + std::size_t(ix)] += row[oy * ow + ox];
                    }
            }
}

namespace reference {
/// The scalar reference of im2col, under the name every kernel's reference has.
template <class T>
void im2col(const ConvGeometry& g, const T* image, T* col) noexcept {
    im2col_scalar(g, image, col);
}
/// The scalar reference of col2im, under the name every kernel's reference has.
template <class T>
void col2im(const ConvGeometry& g, const T* col, T* image) noexcept {
    col2im_scalar(g, col, image);
}
}  // namespace reference

/// im2col into a wider matrix: row r of the column matrix starts at col + r * ldc (ldc >= OH*OW),
/// so that the columns of several samples sit side by side ([C*KH*KW, S * OH*OW], sample i at
/// column offset i * OH*OW) for one GEMM over all of them. Columns past OH*OW of each row are not
/// touched. Same values as im2col_scalar; the bounds are computed once per kernel row and the
/// valid part of each output row is copied as one run (memcpy when SW == 1).
template <class T>
void im2col(const ConvGeometry& g, const T* image, T* col, std::size_t ldc) noexcept {
    const std::size_t oh = g.out_h(), ow = g.out_w();
    for (std::size_t c = 0; c < g.channels; ++c) {
        const T* plane = image + c * g.height * g.width;
        for (std::size_t ki = 0; ki < g.kernel_h; ++ki) {
            std::size_t y_lo, y_hi;
            detail::valid_range(g.height, oh, g.stride_h, g.pad_h, ki, y_lo, y_hi);
            for (std::size_t kj = 0; kj < g.kernel_w; ++kj) {
                T* row = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ldc;
                std::size_t x_lo, x_hi;
                detail::valid_range(g.width, ow, g.stride_w, g.pad_w, kj, x_lo, x_hi);
                std::fill(row, row + y_lo * ow, T(0));
                for (std::size_t oy = y_lo; oy < y_hi; ++oy) {
                    T* out = row + oy * ow;
                    std::fill(out, out + x_lo, T(0));
                    // Inside [x_lo, x_hi) the index ox * SW + kj - PW is in [0, W); the source
                    // pointer is formed only for a non-empty run (else it could point before the image).
                    if (x_hi > x_lo) {
                        const T* src = plane + (oy * g.stride_h + ki - g.pad_h) * g.width + (x_lo * g.stride_w + kj - g.pad_w);
                        if (g.stride_w == 1) std::memcpy(out + x_lo, src, (x_hi - x_lo) * sizeof(T));
                        else
                            for (std::size_t ox = x_lo; ox < x_hi; ++ox, src += g.stride_w) out[ox] = *src;
                    }
                    std::fill(out + x_hi, out + ow, T(0));
                }
                std::fill(row + y_hi * ow, row + oh * ow, T(0));
            }
        }
    }
}

/// im2col: image [C, H, W] -> col [C*KH*KW, OH*OW], rows contiguous. Same result as im2col_scalar.
template <class T>
void im2col(const ConvGeometry& g, const T* image, T* col) noexcept {
    im2col(g, image, col, g.col_cols());
}

/// col2im from a wider matrix: image [C, H, W] += scatter of the column matrix whose row r starts
/// at col + r * ldc (ldc >= OH*OW; see the im2col of the same form), the adjoint of that im2col.
/// Same result as col2im_scalar up to rounding order; runs of SW == 1 are added with xsimd.
template <class T>
void col2im(const ConvGeometry& g, const T* col, T* image, std::size_t ldc) noexcept {
    const std::size_t oh = g.out_h(), ow = g.out_w();
    for (std::size_t c = 0; c < g.channels; ++c) {
        T* plane = image + c * g.height * g.width;
        for (std::size_t ki = 0; ki < g.kernel_h; ++ki) {
            std::size_t y_lo, y_hi;
            detail::valid_range(g.height, oh, g.stride_h, g.pad_h, ki, y_lo, y_hi);
            for (std::size_t kj = 0; kj < g.kernel_w; ++kj) {
                const T* row = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ldc;
                std::size_t x_lo, x_hi;
                detail::valid_range(g.width, ow, g.stride_w, g.pad_w, kj, x_lo, x_hi);
                if (x_hi <= x_lo) continue;
                for (std::size_t oy = y_lo; oy < y_hi; ++oy) {
                    const T* in = row + oy * ow;
                    T* dst = plane + (oy * g.stride_h + ki - g.pad_h) * g.width + (x_lo * g.stride_w + kj - g.pad_w);
                    if (g.stride_w == 1) detail::add_run(dst, in + x_lo, x_hi - x_lo);
                    else
                        for (std::size_t ox = x_lo; ox < x_hi; ++ox, dst += g.stride_w) *dst += in[ox];
                }
            }
        }
    }
}

/// col2im: image [C, H, W] += scatter of col [C*KH*KW, OH*OW] (rows contiguous), the adjoint of
/// im2col. Same result as col2im_scalar up to rounding order.
template <class T>
void col2im(const ConvGeometry& g, const T* col, T* image) noexcept {
    col2im(g, col, image, g.col_cols());
}

}  // namespace sft::kernels
