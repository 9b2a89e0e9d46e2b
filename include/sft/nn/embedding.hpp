/// @file embedding.hpp
/// sft::nn::Embedding, a lookup table of num_embeddings vectors of size embedding_dim, as
/// torch.nn.Embedding (weight [num_embeddings, embedding_dim], init N(0, 1), optional padding_idx),
/// and its options EmbeddingOptions.
///
/// Indices arrive either as a Tensor<std::int64_t> (token ids, as PyTorch's LongTensor: the
/// natural input of a language model, [batch, time] -> [batch, time, embedding_dim]), or, through
/// the Module interface (inside a Sequential), as a Tensor<T> whose values are whole numbers.
#pragma once

#include <sft/nn/module.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

namespace sft::nn {

/// Options of Embedding in libtorch's builder style: EmbeddingOptions(50257, 768).padding_idx(0).
struct EmbeddingOptions {
    EmbeddingOptions(std::size_t num_embeddings, std::size_t embedding_dim) : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}

    /// The row whose vector is initialised to zeros and never receives a gradient; negative values
    /// count from the end, as PyTorch (-1 is num_embeddings - 1).
    EmbeddingOptions& padding_idx(std::optional<std::int64_t> idx) noexcept {
        padding_idx_ = idx;
        return *this;
    }

    std::size_t num_embeddings() const noexcept { return num_embeddings_; }
    std::size_t embedding_dim() const noexcept { return embedding_dim_; }
    std::optional<std::int64_t> padding_idx() const noexcept { return padding_idx_; }

private:
    std::size_t num_embeddings_, embedding_dim_;
    std::optional<std::int64_t> padding_idx_;
};

/// Lookup table: indices [*] -> vectors [*, embedding_dim] (indices of rank 0 to 3), as
/// torch.nn.Embedding. Parameter "weight" [num_embeddings, embedding_dim], initialised N(0, 1) as
/// PyTorch, with the padding_idx row (if any) zeroed. backward() scatter-adds grad_output rows into
/// the weight gradient (repeated indices add up), skipping padding_idx.
template <class T>
class Embedding : public Module<T> {
    static_assert(std::is_floating_point_v<T>, "sft::nn::Embedding: T must be float or double");

public:
    /// Throws sft::Error when a size is 0 or padding_idx is outside [-num_embeddings, num_embeddings).
    explicit Embedding(const EmbeddingOptions& options, Rng& rng = default_rng()) : opt_(options) {
        const std::size_t num = options.num_embeddings(), dim = options.embedding_dim();
        if (num == 0 || dim == 0)
            throw Error(ErrorKind::invalid_argument, fmt::format("Embedding({}, {}): sizes must be positive", num, dim));
        if (auto p = options.padding_idx()) {
            const auto n = static_cast<std::int64_t>(num);
            if (*p < -n || *p >= n)
                throw Error(ErrorKind::invalid_argument,
                            fmt::format("Embedding({}, {}): padding_idx {} must be within [-{}, {})", num, dim, *p, num, num));
            padding_idx_ = static_cast<std::size_t>(*p < 0 ? *p + n : *p);
        }
        Tensor<T> w = Tensor<T>::empty({num, dim});
        for (auto& v : w) v = static_cast<T>(rng.normal());
        if (padding_idx_) std::fill(w.data() + *padding_idx_ * dim, w.data() + (*padding_idx_ + 1) * dim, T(0));
        weight_ = this->register_parameter("weight", std::move(w));
    }
    /// Plain form: Embedding<T>(num_embeddings, embedding_dim, padding_idx). Throws as the options form.
    Embedding(std::size_t num_embeddings, std::size_t embedding_dim, std::optional<std::int64_t> padding_idx = std::nullopt,
              Rng& rng = default_rng())
        : Embedding(EmbeddingOptions(num_embeddings, embedding_dim).padding_idx(padding_idx), rng) {}

    std::string type_name() const override { return "Embedding"; }
    const EmbeddingOptions& options() const noexcept { return opt_; }
    std::size_t num_embeddings() const noexcept { return opt_.num_embeddings(); }
    std::size_t embedding_dim() const noexcept { return opt_.embedding_dim(); }
    /// The padding row, negative values resolved; nullopt when there is none.
    std::optional<std::size_t> padding_idx() const noexcept { return padding_idx_; }
    /// The table [num_embeddings, embedding_dim].
    Parameter<T>& weight() noexcept { return *weight_; }

    /// Token ids [*] -> [*, embedding_dim], e.g. [batch, time] -> [batch, time, embedding_dim].
    /// Throws sft::Error (kind shape) when the indices have rank 4 (the output would be rank 5),
    /// (kind invalid_argument) naming the index value and its position when one is outside
    /// [0, num_embeddings).
    Tensor<T> forward(const Tensor<std::int64_t>& indices) {
        check_rank(indices.shape());
        const std::int64_t num = static_cast<std::int64_t>(opt_.num_embeddings());
        std::vector<std::size_t>& idx = pending_;  // kept: no allocation once its capacity suffices
        idx.resize(indices.numel());
        for (std::size_t i = 0; i < idx.size(); ++i) {
            const std::int64_t v = indices[i];
            if (v < 0 || v >= num) throw_index(indices.shape(), i, fmt::format("{}", v));
            idx[i] = static_cast<std::size_t>(v);
        }
        return lookup(indices.shape());
    }

    /// The same with the ids held as T values (the Module interface, inside a Sequential).
    /// Throws as the int64 form, and (kind invalid_argument) when a value is not a whole number.
    Tensor<T> forward(const Tensor<T>& indices) override {
        check_rank(indices.shape());
        const T num = static_cast<T>(opt_.num_embeddings());
        std::vector<std::size_t>& idx = pending_;
        idx.resize(indices.numel());
        for (std::size_t i = 0; i < idx.size(); ++i) {
            const T v = indices[i];
            // NaN fails every comparison, so it is caught here too.
            if (!(v >= T(0) && v < num && std::floor(v) == v)) throw_index(indices.shape(), i, fmt::format("{}", v));
            idx[i] = static_cast<std::size_t>(v);
        }
        return lookup(indices.shape());
    }

    /// grad_output [*, embedding_dim] -> the gradient with respect to the indices: zeros of their
    /// shape (the output is piecewise constant in them; undefined when need_input_grad is false).
    /// Adds grad_output's rows into weight.grad() at their indices (repeated indices add up; the
    /// padding_idx row gets nothing), as PyTorch's embedding_backward.
    /// Throws sft::Error before any forward() or on a shape mismatch.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        if (!forwarded_) this->throw_no_forward();
        this->check_grad_shape(grad_output, out_shape_);
        if (weight_->requires_grad()) {
            const std::size_t dim = opt_.embedding_dim();
            T* dw = weight_->grad().data();
            for (std::size_t i = 0; i < indices_.size(); ++i) {
                if (padding_idx_ && indices_[i] == *padding_idx_) continue;
                const T* g = grad_output.data() + i * dim;
                T* row = dw + indices_[i] * dim;
                for (std::size_t j = 0; j < dim; ++j) row[j] += g[j];
            }
        }
        forwarded_ = false;  // one backward per forward, as the other layers
        if (!need_input_grad) return Tensor<T>();
        Tensor<T>& zeros = nn::detail::reuse_or_empty(grad_input_, in_shape_);
        zeros.zero_();
        return zeros;
    }

    void release_saved() noexcept override { forwarded_ = false; }

private:
    void check_rank(const Shape& s) const {
        if (s.rank() >= Shape::max_rank)
            throw Error(ErrorKind::shape, fmt::format("{}: indices {}, expected rank 0 to {} (the output adds a dimension of {})",
                                                      this->label(), s.str(), Shape::max_rank - 1, opt_.embedding_dim()));
    }

    // "Embedding 'wte': index 50300 at position [1, 7] of indices [4, 16] is out of range [0, 50257)".
    [[noreturn]] void throw_index(const Shape& s, std::size_t flat, const std::string& value) const {
        std::vector<std::size_t> pos(s.rank());
        for (std::size_t d = s.rank(); d-- > 0;) {
            pos[d] = flat % s[d];
            flat /= s[d];
        }
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("{}: index {} at position {} of indices {} is not a whole number in [0, {})", this->label(), value,
                                Shape(pos).str(), s.str(), opt_.num_embeddings()));
    }

    // Gathers the rows of the validated ids in pending_ into the kept output buffer.
    Tensor<T> lookup(const Shape& in_shape) {
        const std::size_t dim = opt_.embedding_dim();
        const Shape& s = in_shape;  // rank <= 3 (check_rank): the output shape s + [dim], built without a vector
        Shape out_shape;
        switch (s.rank()) {
            case 0: out_shape = Shape{dim}; break;
            case 1: out_shape = Shape{s[0], dim}; break;
            case 2: out_shape = Shape{s[0], s[1], dim}; break;
            default: out_shape = Shape{s[0], s[1], s[2], dim}; break;
        }
        Tensor<T>& out = nn::detail::reuse_or_empty(output_, out_shape);
        const T* w = weight_->value().data();
        const std::vector<std::size_t>& idx = pending_;
        for (std::size_t i = 0; i < idx.size(); ++i) std::copy(w + idx[i] * dim, w + (idx[i] + 1) * dim, out.data() + i * dim);
        indices_.swap(pending_);
        in_shape_ = in_shape;
        out_shape_ = out.shape();
        forwarded_ = true;
        return out;
    }

    EmbeddingOptions opt_;
    std::optional<std::size_t> padding_idx_;
    Parameter<T>* weight_ = nullptr;
    // Cached by forward() for backward(): the validated indices and the shapes.
    std::vector<std::size_t> indices_;
    Shape in_shape_, out_shape_;
    bool forwarded_ = false;
    std::vector<std::size_t> pending_;  // the ids being validated by forward()
    Tensor<T> output_, grad_input_;     // kept buffers, reused across steps (see Module)
};

}  // namespace sft::nn
