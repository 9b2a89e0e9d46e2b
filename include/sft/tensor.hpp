/// @file tensor.hpp
/// sft::Shape, sft::Tensor<T> (rank 0 to 4, contiguous row-major, 64-byte aligned) and sft::Rng.
///
/// A Tensor is a handle, as in libtorch: copying a Tensor shares its storage, `clone()` copies the
/// values. This lets layers cache their inputs for backward and lets `reshape` and `narrow` return
/// views without copying. Code that must own its values (a saved best state) calls `clone()`.
#pragma once

#include <sft/config.hpp>
#include <sft/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

namespace sft {

/// The dimensions of a tensor: rank 0 (a scalar) to 4.
class Shape {
public:
    static constexpr std::size_t max_rank = 4;

    /// Rank 0: a scalar, one element.
    Shape() noexcept = default;
    /// From a list of dimensions, e.g. {batch, channels, height, width}. Throws sft::Error above rank 4.
    Shape(std::initializer_list<std::size_t> dims) { assign(dims.begin(), dims.end()); }
    /// From a vector of dimensions. Throws sft::Error above rank 4.
    explicit Shape(const std::vector<std::size_t>& dims) { assign(dims.begin(), dims.end()); }

    std::size_t rank() const noexcept { return rank_; }
    std::size_t operator[](std::size_t i) const noexcept { return dims_[i]; }
    std::size_t& operator[](std::size_t i) noexcept { return dims_[i]; }
    /// Dimension i counted from the end when negative (-1 is the last), as in PyTorch.
    std::size_t dim(int i) const {
        const int r = static_cast<int>(rank_);
        const int k = i < 0 ? i + r : i;
        if (k < 0 || k >= r) throw Error(ErrorKind::shape, fmt::format("dim {} out of range for shape {}", i, str()));
        return dims_[static_cast<std::size_t>(k)];
    }
    const std::size_t* begin() const noexcept { return dims_.data(); }
    const std::size_t* end() const noexcept { return dims_.data() + rank_; }

    /// Product of the dimensions (1 for rank 0).
    std::size_t numel() const noexcept {
        std::size_t n = 1;
        for (std::size_t i = 0; i < rank_; ++i) n *= dims_[i];
        return n;
    }
    std::vector<std::size_t> vec() const { return {begin(), end()}; }

    friend bool operator==(const Shape& a, const Shape& b) noexcept {
        if (a.rank_ != b.rank_) return false;
        for (std::size_t i = 0; i < a.rank_; ++i)
            if (a.dims_[i] != b.dims_[i]) return false;
        return true;
    }
    friend bool operator!=(const Shape& a, const Shape& b) noexcept { return !(a == b); }

    /// "[32, 784]", as error messages print shapes.
    std::string str() const {
        std::string s = "[";
        for (std::size_t i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
        return s + "]";
    }

private:
    template <class It>
    void assign(It first, It last) {
        const auto n = static_cast<std::size_t>(std::distance(first, last));
        if (n > max_rank) throw Error(ErrorKind::shape, fmt::format("Shape: rank {} requested, at most {} supported", n, max_rank));
        rank_ = 0;
        for (; first != last; ++first) dims_[rank_++] = static_cast<std::size_t>(*first);
    }

    std::array<std::size_t, max_rank> dims_{};
    std::size_t rank_ = 0;
};

namespace detail {
/// Alignment of every tensor's storage: a cache line, and an AVX-512 register.
inline constexpr std::size_t tensor_alignment = 64;

template <class T>
std::shared_ptr<T> allocate_aligned(std::size_t n) {
    const std::size_t bytes = std::max<std::size_t>(1, n) * sizeof(T);
    const std::size_t rounded = (bytes + tensor_alignment - 1) / tensor_alignment * tensor_alignment;
    void* p = ::operator new(rounded, std::align_val_t(tensor_alignment));
    return std::shared_ptr<T>(static_cast<T*>(p), [](T* q) { ::operator delete(q, std::align_val_t(tensor_alignment)); });
}

template <class T>
inline constexpr bool is_tensor_scalar_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int64_t>;

template <class T>
constexpr const char* dtype_name() noexcept {
    if constexpr (std::is_same_v<T, float>) return "float32";
    else if constexpr (std::is_same_v<T, double>) return "float64";
    else return "int64";
}
}  // namespace detail

/// A dense, contiguous, row-major tensor of float, double or std::int64_t, rank 0 to 4.
/// Copies share storage (see the file comment); `clone()` copies values.
template <class T>
class Tensor {
    static_assert(detail::is_tensor_scalar_v<T>, "sft::Tensor<T>: T must be float, double or std::int64_t");

public:
    using value_type = T;

    /// An undefined tensor: no storage, `defined()` is false, numel() is 0.
    Tensor() noexcept = default;

    /// Zero-filled tensor of the given shape.
    explicit Tensor(const Shape& shape) : Tensor(shape, T(0)) {}

    /// Tensor of the given shape with every element equal to `fill`.
    Tensor(const Shape& shape, T fill) : shape_(shape), storage_(detail::allocate_aligned<T>(shape.numel())) {
        data_ = storage_.get();
        std::fill(data_, data_ + numel_(), fill);
    }

    /// Tensor of the given shape holding `values` in row-major order.
    /// Throws sft::Error if values.size() differs from the shape's element count.
    Tensor(const Shape& shape, const std::vector<T>& values) : shape_(shape) {
        if (values.size() != shape.numel())
            throw Error(ErrorKind::shape, fmt::format("Tensor: shape {} holds {} elements, {} values given",
                                                      shape.str(), shape.numel(), values.size()));
        storage_ = detail::allocate_aligned<T>(shape.numel());
        data_ = storage_.get();
        std::copy(values.begin(), values.end(), data_);
    }

    /// Uninitialised tensor of the given shape (for outputs about to be overwritten).
    static Tensor empty(const Shape& shape) {
        Tensor t;
        t.shape_ = shape;
        t.storage_ = detail::allocate_aligned<T>(shape.numel());
        t.data_ = t.storage_.get();
        return t;
    }
    static Tensor zeros(const Shape& shape) { return Tensor(shape, T(0)); }
    static Tensor ones(const Shape& shape) { return Tensor(shape, T(1)); }
    static Tensor full(const Shape& shape, T value) { return Tensor(shape, value); }

    bool defined() const noexcept { return data_ != nullptr; }
    const Shape& shape() const noexcept { return shape_; }
    std::size_t rank() const noexcept { return shape_.rank(); }
    /// Size of dimension i; negative i counts from the end. Throws sft::Error if out of range.
    std::size_t size(int i) const { return shape_.dim(i); }
    std::size_t numel() const noexcept { return defined() ? shape_.numel() : 0; }
    T* data() noexcept { return data_; }
    const T* data() const noexcept { return data_; }
    T* begin() noexcept { return data_; }
    T* end() noexcept { return data_ + numel(); }
    const T* begin() const noexcept { return data_; }
    const T* end() const noexcept { return data_ + numel(); }

    /// Flat element i of the row-major order (unchecked).
    T& operator[](std::size_t i) noexcept { return data_[i]; }
    const T& operator[](std::size_t i) const noexcept { return data_[i]; }

    /// Element at the given indices, one per dimension (unchecked but in debug builds).
    template <class... I>
    T& operator()(I... idx) noexcept { return data_[offset(idx...)]; }
    template <class... I>
    const T& operator()(I... idx) const noexcept { return data_[offset(idx...)]; }

    /// Same storage seen with another shape of the same element count: no copy.
    /// Throws sft::Error when the element counts differ.
    Tensor reshape(const Shape& shape) const {
        if (shape.numel() != numel())
            throw Error(ErrorKind::shape, fmt::format("Tensor::reshape: cannot view {} ({} elements) as {} ({} elements)",
                                                      shape_.str(), numel(), shape.str(), shape.numel()));
        Tensor t = *this;
        t.shape_ = shape;
        return t;
    }

    /// Rows [start, start + length) of dimension 0, sharing storage: no copy.
    /// Throws sft::Error when the range is outside the tensor.
    Tensor narrow(std::size_t start, std::size_t length) const {
        if (rank() == 0 || start + length > shape_[0])
            throw Error(ErrorKind::shape, fmt::format("Tensor::narrow: rows [{}, {}) out of range for shape {}",
                                                      start, start + length, shape_.str()));
        Tensor t = *this;
        t.shape_[0] = length;
        t.data_ = data_ + start * (shape_.numel() / std::max<std::size_t>(1, shape_[0]));
        return t;
    }

    /// A tensor with its own copy of the values.
    Tensor clone() const {
        if (!defined()) return Tensor();
        Tensor t = empty(shape_);
        std::copy(begin(), end(), t.data());
        return t;
    }

    /// Copies values from `src` of the same element count into this tensor's storage.
    /// Throws sft::Error on a size mismatch.
    void copy_(const Tensor& src) {
        if (src.numel() != numel())
            throw Error(ErrorKind::shape, fmt::format("Tensor::copy_: source {} does not fit destination {}",
                                                      src.shape().str(), shape_.str()));
        std::copy(src.begin(), src.end(), data_);
    }

    void fill_(T value) noexcept { std::fill(begin(), end(), value); }
    void zero_() noexcept { fill_(T(0)); }

    /// Values converted to another element type (always a copy).
    template <class U>
    Tensor<U> to() const {
        Tensor<U> t = Tensor<U>::empty(shape_);
        for (std::size_t i = 0; i < numel(); ++i) t[i] = static_cast<U>(data_[i]);
        return t;
    }

    /// True when both tensors view the same memory.
    bool is_same(const Tensor& o) const noexcept { return data_ == o.data_ && shape_ == o.shape_; }
    /// How many handles share this tensor's storage (1: no one else sees it).
    long use_count() const noexcept { return storage_.use_count(); }

private:
    std::size_t numel_() const noexcept { return shape_.numel(); }

    template <class... I>
    std::size_t offset(I... idx) const noexcept {
        static_assert(sizeof...(I) <= Shape::max_rank, "sft::Tensor: at most 4 indices");
        SFT_ASSERT(sizeof...(I) == shape_.rank());
        const std::size_t ix[] = {static_cast<std::size_t>(idx)..., 0};
        std::size_t off = 0;
        for (std::size_t d = 0; d < sizeof...(I); ++d) {
            SFT_ASSERT(ix[d] < shape_[d]);
            off = off * shape_[d] + ix[d];
        }
        return off;
    }

    Shape shape_;
    std::shared_ptr<T> storage_;
    T* data_ = nullptr;
};

/// A seedable random number generator giving the same sequence for a seed on every machine:
/// xoshiro256** seeded through splitmix64, uniforms from the top 53 bits, normals by the
/// Marsaglia polar method (std::log and std::sqrt, the only libm calls).
class Rng {
public:
    explicit Rng(std::uint64_t seed = 0) noexcept { seed_(seed); }

    /// Restart the sequence of `seed`.
    void seed_(std::uint64_t seed) noexcept {
        std::uint64_t z = seed;
        for (auto& s : s_) s = splitmix64(z);
        has_spare_ = false;
    }

    /// 64 random bits.
    std::uint64_t next_u64() noexcept {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    /// Uniform in [0, 1).
    double uniform() noexcept { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    /// Uniform in [lo, hi).
    double uniform(double lo, double hi) noexcept { return lo + (hi - lo) * uniform(); }
    /// Standard normal N(0, 1).
    double normal() noexcept {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        double u, v, s;
        do {
            u = 2.0 * uniform() - 1.0;
            v = 2.0 * uniform() - 1.0;
            s = u * u + v * v;
        } while (s >= 1.0 || s == 0.0);
        const double m = std::sqrt(-2.0 * std::log(s) / s);
        spare_ = v * m;
        has_spare_ = true;
        return u * m;
    }
    /// Normal N(mean, stddev^2).
    double normal(double mean, double stddev) noexcept { return mean + stddev * normal(); }
    /// Uniform integer in [0, n) without modulo bias (n > 0).
    std::uint64_t randint(std::uint64_t n) noexcept {
        const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % n);
        std::uint64_t r;
        do r = next_u64();
        while (r >= limit);
        return r % n;
    }

    /// The full generator state (for bit-exact resume): 4 words, the spare flag and value.
    std::array<std::uint64_t, 6> state() const noexcept {
        std::uint64_t spare_bits;
        std::memcpy(&spare_bits, &spare_, sizeof spare_bits);
        return {s_[0], s_[1], s_[2], s_[3], has_spare_ ? 1u : 0u, spare_bits};
    }
    void set_state(const std::array<std::uint64_t, 6>& st) noexcept {
        for (int i = 0; i < 4; ++i) s_[i] = st[i];
        has_spare_ = st[4] != 0;
        std::memcpy(&spare_, &st[5], sizeof spare_);
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
    static std::uint64_t splitmix64(std::uint64_t& z) noexcept {
        std::uint64_t r = (z += 0x9E3779B97F4A7C15ULL);
        r = (r ^ (r >> 30)) * 0xBF58476D1CE4E5B9ULL;
        r = (r ^ (r >> 27)) * 0x94D049BB133111EBULL;
        return r ^ (r >> 31);
    }

    std::array<std::uint64_t, 4> s_{};
    bool has_spare_ = false;
    double spare_ = 0.0;
};

/// The generator that layers use for their default initialisation and dropout masks when none is
/// given, as torch's global generator. Not thread-safe: seed it with manual_seed() before building.
inline Rng& default_rng() noexcept {
    static Rng rng(0);
    return rng;
}
/// Reseeds default_rng(), as torch.manual_seed.
inline void manual_seed(std::uint64_t seed) noexcept { default_rng().seed_(seed); }

}  // namespace sft
