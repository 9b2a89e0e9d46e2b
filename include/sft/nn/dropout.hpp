/// @file dropout.hpp
/// sft::nn::Dropout: zeroes elements with probability p in training, as torch.nn.Dropout.
#pragma once

#include <sft/detail/thread_pool.hpp>
#include <sft/error.hpp>
#include <sft/kernels/elementwise.hpp>
#include <sft/nn/module.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace sft::nn {

/// Dropout with inverted scaling, as torch.nn.Dropout(p): any shape -> same shape.
///
/// In training each element is kept with probability 1 - p and scaled by 1 / (1 - p), so that
/// the expectation is unchanged: y = x * m, m_i = keep_i / (1 - p) (torch's
/// `input * bernoulli_(1 - p).div_(1 - p)`); p == 1 gives x * 0. In eval mode, and in training
/// with p == 0, it is the identity and returns its input itself (no copy), as PyTorch.
/// Backward multiplies by the same mask m.
///
/// Masks come from default_rng() (as torch's global generator, reseeded by sft::manual_seed) unless
/// the layer was given its own seed: Dropout<T>(p, seed) or manual_seed(seed), which make its masks
/// reproducible whatever else draws numbers. A forward draws one number from the generator, the
/// key of a counter-based stream (SplitMix64 at key + i * golden ratio for element i), so the mask
/// and the product are computed in one pass on sft's thread pool and the mask does not depend
/// on the number of threads.
template <class T>
class Dropout : public Module<T> {
public:
    /// Masks from default_rng(). Throws sft::Error unless 0 <= p <= 1.
    explicit Dropout(double p = 0.5) : p_(checked(p)) {}
    /// Masks from the layer's own generator, seeded with `seed`. Throws sft::Error unless 0 <= p <= 1.
    Dropout(double p, std::uint64_t seed) : p_(checked(p)), own_rng_(seed), use_own_rng_(true) {}

    /// "Dropout", as error messages name this layer.
    std::string type_name() const override { return "Dropout"; }
    /// The probability of zeroing an element.
    double p() const noexcept { return p_; }

    /// Switches to the layer's own generator and restarts it at `seed`.
    void manual_seed(std::uint64_t seed) noexcept {
        own_rng_.seed_(seed);
        use_own_rng_ = true;
    }
    /// The generator the next mask is drawn from (the layer's own, or default_rng()).
    Rng& generator() noexcept { return use_own_rng_ ? own_rng_ : default_rng(); }

    /// Training: y = x * m with a fresh mask m (see the class comment), into a kept buffer (see
    /// Module). Eval: returns x itself. Throws sft::Error when x is undefined.
    Tensor<T> forward(const Tensor<T>& input) override {
        if (!input.defined())
            throw Error(ErrorKind::invalid_argument, fmt::format("{}: forward() given an undefined tensor", this->label()));
        out_shape_ = input.shape();
        forwarded_ = true;
        if (!this->training_ || p_ == 0.0) {
            masked_ = false;  // identity (torch returns the input itself): backward passes dy through
            return input;
        }
        Tensor<T>& mask = nn::detail::reuse_or_empty(mask_, input.shape());  // only this layer sees the mask
        Tensor<T>& out = nn::detail::reuse_or_empty(output_, input.shape());
        if (p_ == 1.0) {
            mask.zero_();  // torch returns input * 0 (NaN * 0 stays NaN, as there)
            kernels::mul(input.data(), mask.data(), out.data(), input.numel());
        } else {
            // One key per forward from the generator; element i's draw is the SplitMix64 output
            // for key + (i + 1) * golden, so that any range of the mask can be drawn on its own:
            // mask and product in one pass on the pool, the same mask at any thread count.
            const std::uint64_t key = generator().next_u64();
            const double keep = 1.0 - p_;
            const T kept = static_cast<T>(1.0 / keep);
            // uniform < keep, with uniform = (z >> 11) 2^-53, is (z >> 11) < ceil(keep 2^53): in integers.
            const std::uint64_t threshold = static_cast<std::uint64_t>(std::ceil(std::ldexp(keep, 53)));
            const T* x = input.data();
            T* m = mask.data();
            T* y = out.data();
            ::sft::detail::parallel_for(input.numel(), 16384, [=](std::size_t lo, std::size_t hi) {
                for (std::size_t i = lo; i < hi; ++i) {
                    const T mi = (bits_at(key, i) >> 11) < threshold ? kept : T(0);
                    m[i] = mi;
                    y[i] = x[i] * mi;
                }
            });
        }
        masked_ = true;
        return out;
    }

    /// dx = dy * m with the mask of the last forward (dy itself after an identity forward). The
    /// mask is released: a second backward needs a new forward. Throws sft::Error without a
    /// forward since the last backward or when dy's shape is not the last output's.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        if (!forwarded_) this->throw_no_forward();
        if (!grad_output.defined())
            throw Error(ErrorKind::shape, fmt::format("{}: backward() given an undefined grad_output, expected {}", this->label(),
                                                      out_shape_.str()));
        this->check_grad_shape(grad_output, out_shape_);
        forwarded_ = false;  // the mask is used up, as PyTorch frees saved tensors
        if (!need_input_grad) return Tensor<T>();
        if (!masked_) return grad_output;
        Tensor<T>& grad_input = nn::detail::reuse_or_empty(grad_input_, out_shape_);
        kernels::mul(grad_output.data(), mask_.data(), grad_input.data(), grad_output.numel());
        return grad_input;
    }

    void release_saved() noexcept override { forwarded_ = false; }

private:
    /// The random bits of element i under `key`: SplitMix64's output for the state
    /// key + (i + 1) * 0x9E3779B97F4A7C15 (Steele, Lea & Flood 2014); its top 53 bits times 2^-53
    /// are the element's uniform draw in [0, 1).
    static std::uint64_t bits_at(std::uint64_t key, std::size_t i) noexcept {
        std::uint64_t z = key + (static_cast<std::uint64_t>(i) + 1) * 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

    static double checked(double p) {
        if (!(p >= 0.0 && p <= 1.0))
            throw Error(ErrorKind::invalid_argument, fmt::format("Dropout: p = {}, expected 0 <= p <= 1", p));
        return p;
    }

    double p_;
    Rng own_rng_;
    bool use_own_rng_ = false;
    bool forwarded_ = false;
    Shape out_shape_;
    bool masked_ = false;  // false after an identity forward
    Tensor<T> mask_;       // 0 or 1 / (1 - p) per element, kept and reused like the buffers below
    Tensor<T> output_, grad_input_;
};

}  // namespace sft::nn
