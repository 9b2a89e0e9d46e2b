/// @file safetensors.hpp
/// Reading and writing the safetensors format (https://github.com/huggingface/safetensors), the
/// format of Hugging Face checkpoints and of `safetensors.torch.save_file`.
///
/// A file is: 8 bytes, the little-endian u64 length N of the header; N bytes of UTF-8 JSON
/// `{name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
/// "__metadata__": {string: string}}`; then the data buffer, each tensor's row-major little-endian
/// bytes at [begin, end) relative to the buffer's start.
///
/// Validation follows the reference implementation (the Rust crate's `Metadata::validate`): the
/// header is at most 100,000,000 bytes and fits in the file, is valid UTF-8 JSON starting with '{',
/// every entry has a known dtype, a shape of non-negative integers whose byte size does not
/// overflow and equals end - begin, and the tensors, sorted by offset, cover the data buffer
/// exactly: no gap, no overlap, nothing after the last one. Every failure throws sft::Error
/// naming the file and, where one is at fault, the tensor: ErrorKind::io when the file cannot be
/// opened, read or written, ErrorKind::format when its content is malformed.
///
/// Conversions on load, to the requested T (float, double or std::int64_t):
///  - floating dtypes (F64, F32, F16, BF16, F8_E4M3, F8_E5M2) to float or double: F16, BF16, F8
///    and F32 are exact; F64 to float rounds to nearest, and a finite value beyond float's range is
///    refused (it would become infinity);
///  - integer dtypes (I64, I32, I16, I8, U64, U32, U16, U8, BOOL) to std::int64_t: exact (a U64
///    value above INT64_MAX is refused);
///  - integer dtypes to float or double only when every value converts exactly (|v| <= 2^24 for
///    float, 2^53 for double, or any other exactly representable value), so that a state dict
///    holding an integer buffer still loads as float; otherwise refused, naming the value;
///  - floating dtypes to std::int64_t: always refused (ErrorKind::invalid_argument): truncating
///    weights to integers is never what a caller wants.
/// Writing uses the tensor's own dtype (float F32, double F64, std::int64_t I64) unless another
/// is asked: float and double tensors may be saved as F64, F32, F16 or BF16 (rounded to nearest
/// even as torch does; a finite value that would overflow to infinity is refused), int64 tensors
/// as I64, I32, I16, I8 or U8 (each value range-checked).
#pragma once

#include <sft/detail/json.hpp>
#include <sft/error.hpp>
#include <sft/io/dtype.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define SFT_DETAIL_HAVE_UNISTD 1
#else
#define SFT_DETAIL_HAVE_UNISTD 0
#endif

namespace sft::io {

/// Largest header accepted, as the reference implementation (100 MB).
inline constexpr std::uint64_t safetensors_max_header_size = 100'000'000;

/// One tensor's entry in a safetensors header. The shape is kept as written (any rank), so that
/// headers can be inspected even when a tensor is beyond sft::Tensor's rank 4.
struct TensorInfo {
    std::string name;                ///< the key in the header
    Dtype dtype = Dtype::F32;        ///< element type stored in the file
    std::vector<std::size_t> shape;  ///< dimensions as written
    std::uint64_t begin = 0;         ///< first byte, relative to the start of the data buffer
    std::uint64_t end = 0;           ///< one past the last byte

    /// Number of elements (1 for a scalar, validated not to overflow).
    std::size_t numel() const noexcept {
        std::size_t n = 1;
        for (std::size_t d : shape) n *= d;
        return n;
    }
    /// Bytes in the file: end - begin.
    std::uint64_t nbytes() const noexcept { return end - begin; }
    /// "[2, 3]" for error messages.
    std::string shape_str() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }
};

/// Tensors and the `__metadata__` map of a file, as load_safetensors_with_metadata() returns them.
template <class T>
struct SafetensorsFile {
    std::map<std::string, Tensor<T>> tensors;      ///< every tensor, by name
    std::map<std::string, std::string> metadata;   ///< the `__metadata__` object (empty when absent)
};

namespace detail {

inline bool host_is_little_endian() noexcept {
    const std::uint16_t one = 1;
    unsigned char b;
    std::memcpy(&b, &one, 1);
    return b == 1;
}

/// Reverses the bytes of each `size`-byte element of `p` (the file is little-endian).
inline void byteswap_elements(unsigned char* p, std::size_t count, std::size_t size) noexcept {
    if (size == 1) return;
    for (std::size_t i = 0; i < count; ++i) std::reverse(p + i * size, p + (i + 1) * size);
}

/// A little-endian value of type U at p.
template <class U>
U load_le(const unsigned char* p) noexcept {
    unsigned char b[sizeof(U)];
    std::memcpy(b, p, sizeof(U));
    if (!host_is_little_endian()) std::reverse(b, b + sizeof(U));
    U v;
    std::memcpy(&v, b, sizeof(U));
    return v;
}

/// Writes v at p as little-endian.
template <class U>
void store_le(unsigned char* p, U v) noexcept {
    unsigned char b[sizeof(U)];
    std::memcpy(b, &v, sizeof(U));
    if (!host_is_little_endian()) std::reverse(b, b + sizeof(U));
    std::memcpy(p, b, sizeof(U));
}

/// Owns a std::FILE*.
struct FileCloser {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

/// True when [p, p + n) is valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
inline bool is_valid_utf8(const unsigned char* p, std::size_t n) noexcept {
    std::size_t i = 0;
    while (i < n) {
        const unsigned c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len;
        std::uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
        else return false;
        if (n - i < len) return false;
        for (std::size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/// The message prefix of every error about `path`.
inline std::string st_where(const std::string& path) { return fmt::format("safetensors file '{}'", path); }
inline std::string st_where(const std::string& path, const std::string& key) {
    return fmt::format("safetensors file '{}', tensor '{}'", path, key);
}

/// Bytes per conversion chunk: converted tensors are read through a buffer of this size, so
/// that a 500 MB BF16 file never needs a second full-size copy.
inline constexpr std::size_t st_chunk_bytes = std::size_t(1) << 20;

/// `v` (an integer) as T exactly, or false.
template <class T>
bool int_to_float_exact(std::int64_t v, T& out) noexcept {
    out = static_cast<T>(v);
    // 2^63 as T: a conversion that rounded up to it is not exact (and casting it back is UB).
    constexpr T two63 = static_cast<T>(9223372036854775808.0);
    if (out >= two63 || out < -two63) return false;
    return static_cast<std::int64_t>(out) == v;
}

}  // namespace detail

/// An open safetensors file whose header has been read and validated; tensors are read on
/// demand, each straight from its bytes in the file (one read into the tensor's storage when
/// the dtype is T's own, through a 1 MiB buffer otherwise). Use it to inspect names, dtypes and
/// shapes without loading the data, or to load a subset. One reader serves one thread at a
/// time (its loads share one file position); open one reader per thread to load in parallel.
/// Throws sft::Error (io: open/read failure; format: malformed header) from the constructor.
class SafetensorsReader {
public:
    /// Opens `path` and validates its header (see the file comment).
    explicit SafetensorsReader(const std::string& path) : path_(path) {
        errno = 0;
        file_.reset(std::fopen(path.c_str(), "rb"));
        if (!file_)
            throw Error(ErrorKind::io, fmt::format("{}: cannot open for reading: {}", where(), std::strerror(errno)));
        file_size_ = query_size();
        if (file_size_ < 8)
            throw Error(ErrorKind::format,
                        fmt::format("{}: {} bytes, too short for the 8-byte header length", where(), file_size_));
        unsigned char len_bytes[8];
        read_at(0, len_bytes, 8, "the header length");
        const auto n = detail::load_le<std::uint64_t>(len_bytes);
        if (n > safetensors_max_header_size)
            throw Error(ErrorKind::format, fmt::format("{}: header length {} exceeds the limit of {} bytes", where(), n,
                                                       safetensors_max_header_size));
        if (n > file_size_ - 8)
            throw Error(ErrorKind::format, fmt::format("{}: header length {} runs past the end of the file ({} bytes)",
                                                       where(), n, file_size_));
        header_size_ = n;
        std::string text(static_cast<std::size_t>(n), '\0');
        read_at(8, text.data(), text.size(), "the header");
        parse_header(text);
    }

    /// The path given to the constructor.
    const std::string& path() const noexcept { return path_; }
    /// Size of the JSON header in bytes (N); the data buffer starts at byte 8 + N.
    std::uint64_t header_size() const noexcept { return header_size_; }
    /// Size of the whole file in bytes.
    std::uint64_t file_size() const noexcept { return file_size_; }
    /// Every tensor's entry, in the order of their data in the file.
    const std::vector<TensorInfo>& tensors() const noexcept { return infos_; }
    /// The `__metadata__` object (empty when the file has none).
    const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
    /// True when the file holds a tensor named `name`.
    bool contains(const std::string& name) const { return index_.count(name) != 0; }
    /// The entry of tensor `name`. Throws sft::Error (key) when there is none.
    const TensorInfo& info(const std::string& name) const {
        auto it = index_.find(name);
        if (it == index_.end())
            throw Error(ErrorKind::key, fmt::format("{}: no tensor named '{}' ({} tensors in the file)", where(),
                                                    name, infos_.size()));
        return infos_[it->second];
    }

    /// Reads tensor `name` converted to T (see the file comment for the conversions allowed).
    /// Throws sft::Error: key (no such tensor), shape (rank above 4), invalid_argument or format
    /// (a refused conversion), io (read failure).
    template <class T>
    Tensor<T> load(const std::string& name) {
        return load_entry<T>(info(name));
    }

    /// Reads every tensor converted to T, by name. Throws as load().
    template <class T>
    std::map<std::string, Tensor<T>> load_all() {
        std::map<std::string, Tensor<T>> out;
        for (const TensorInfo& ti : infos_) out.emplace(ti.name, load_entry<T>(ti));
        return out;
    }

private:
    std::string where() const { return detail::st_where(path_); }
    std::string where(const std::string& key) const { return detail::st_where(path_, key); }

    std::uint64_t query_size() {
        // fseeko/ftello would be POSIX; std::fseek's long is 64-bit on the LP64 systems we build on.
        if (std::fseek(file_.get(), 0, SEEK_END) != 0)
            throw Error(ErrorKind::io, fmt::format("{}: cannot seek: {}", where(), std::strerror(errno)));
        const long size = std::ftell(file_.get());
        if (size < 0) throw Error(ErrorKind::io, fmt::format("{}: cannot tell the size: {}", where(), std::strerror(errno)));
        return static_cast<std::uint64_t>(size);
    }

    /// Reads exactly n bytes at `offset` (the caller has checked the range against the size).
    void read_at(std::uint64_t offset, void* dst, std::size_t n, const std::string& what) {
        if (n == 0) return;
        if (offset > static_cast<std::uint64_t>(std::numeric_limits<long>::max()) ||
            std::fseek(file_.get(), static_cast<long>(offset), SEEK_SET) != 0)
            throw Error(ErrorKind::io, fmt::format("{}: cannot seek to byte {} to read {}", where(), offset, what));
        const std::size_t got = std::fread(dst, 1, n, file_.get());
        if (got != n)
            throw Error(ErrorKind::io, fmt::format("{}: reading {}: got {} of {} bytes at byte {}{}", where(), what, got, n,
                                                   offset, std::ferror(file_.get()) ? " (read error)" : " (file shrank?)"));
    }

    [[noreturn]] void bad(const std::string& key, const std::string& what) const {
        throw Error(ErrorKind::format, fmt::format("{}: {}", where(key), what));
    }

    void parse_header(const std::string& text) {
        const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
        if (!detail::is_valid_utf8(bytes, text.size()))
            throw Error(ErrorKind::format, fmt::format("{}: header is not valid UTF-8", where()));
        if (text.empty() || text[0] != '{')
            throw Error(ErrorKind::format, fmt::format("{}: header does not start with '{{'", where()));
        sft::detail::JsonValue root;
        try {
            root = sft::detail::parse_json(text);
        } catch (const Error& e) {
            throw Error(ErrorKind::format, fmt::format("{}: header is not valid JSON: {}", where(), e.what()));
        } catch (const std::bad_alloc&) {
            // A parsed value takes ~100 bytes: a 100 MB header of tiny values can exceed memory.
            throw Error(ErrorKind::format,
                        fmt::format("{}: header of {} bytes holds too many values to parse in memory", where(), text.size()));
        }
        if (!root.is_object()) throw Error(ErrorKind::format, fmt::format("{}: header is not a JSON object", where()));

        const std::uint64_t data_size = file_size_ - 8 - header_size_;
        for (const auto& [key, entry] : root.members()) {
            if (key == "__metadata__") {
                if (!entry.is_object()) bad(key, fmt::format("is a {}, expected an object of strings", entry.type_name()));
                for (const auto& [mk, mv] : entry.members()) {
                    if (!mv.is_string())
                        bad(key, fmt::format("value of '{}' is a {}, expected a string", mk, mv.type_name()));
                    metadata_.emplace(mk, mv.as_string());
                }
                continue;
            }
            infos_.push_back(parse_entry(key, entry, data_size));
        }

        // Sorted by offsets, the tensors must tile [0, data_size) exactly, as the reference's
        // validate(): each begins where the previous ended, and the last ends at the buffer's end.
        std::sort(infos_.begin(), infos_.end(), [](const TensorInfo& a, const TensorInfo& b) {
            if (a.begin != b.begin) return a.begin < b.begin;
            return a.end != b.end ? a.end < b.end : a.name < b.name;
        });
        std::uint64_t expect = 0;
        const TensorInfo* prev = nullptr;
        for (const TensorInfo& ti : infos_) {
            if (ti.begin != expect) {
                if (ti.begin < expect)
                    bad(ti.name, fmt::format("data_offsets [{}, {}] overlap tensor '{}' at [{}, {}]", ti.begin, ti.end,
                                             prev->name, prev->begin, prev->end));
                bad(ti.name, fmt::format("data_offsets [{}, {}] leave a gap: the data before it ends at byte {}", ti.begin,
                                         ti.end, expect));
            }
            expect = ti.end;
            prev = &ti;
        }
        if (expect != data_size) {
            if (prev)
                bad(prev->name, fmt::format("the data buffer holds {} bytes but the last tensor ends at byte {}: {} bytes "
                                            "are not covered by any tensor",
                                            data_size, expect, data_size - expect));
            throw Error(ErrorKind::format, fmt::format("{}: the header lists no tensor but the data buffer holds {} bytes",
                                                       where(), data_size));
        }
        for (std::size_t i = 0; i < infos_.size(); ++i) index_.emplace(infos_[i].name, i);
    }

    TensorInfo parse_entry(const std::string& key, const sft::detail::JsonValue& entry, std::uint64_t data_size) const {
        if (!entry.is_object()) bad(key, fmt::format("entry is a {}, expected an object", entry.type_name()));
        TensorInfo ti;
        ti.name = key;
        const auto* dtype = entry.find("dtype");
        const auto* shape = entry.find("shape");
        const auto* offsets = entry.find("data_offsets");
        if (!dtype) bad(key, "missing field 'dtype'");
        if (!shape) bad(key, "missing field 'shape'");
        if (!offsets) bad(key, "missing field 'data_offsets'");
        if (!dtype->is_string()) bad(key, fmt::format("'dtype' is a {}, expected a string", dtype->type_name()));
        const auto d = dtype_from_name(dtype->as_string());
        if (!d) bad(key, fmt::format("unknown dtype '{}'", dtype->as_string()));
        ti.dtype = *d;

        if (!shape->is_array()) bad(key, fmt::format("'shape' is a {}, expected an array", shape->type_name()));
        std::uint64_t numel = 1;
        bool overflow = false;
        for (const auto& dim : shape->items()) {
            if (!dim.is_integer() || dim.as_int() < 0)
                bad(key, "'shape' holds something other than a non-negative integer");
            const auto v = static_cast<std::uint64_t>(dim.as_int());
            if (v != 0 && numel > std::numeric_limits<std::uint64_t>::max() / v) overflow = true;
            else numel *= v;
            ti.shape.push_back(static_cast<std::size_t>(v));
        }
        // A zero dimension makes the product 0 whatever came before; an overflow elsewhere is still an error.
        if (overflow || numel > std::numeric_limits<std::uint64_t>::max() / dtype_size(ti.dtype) ||
            numel > std::numeric_limits<std::size_t>::max())
            bad(key, fmt::format("shape {} overflows 64 bits of {} bytes", ti.shape_str(), dtype_name(ti.dtype)));

        if (!offsets->is_array() || offsets->items().size() != 2 || !offsets->items()[0].is_integer() ||
            !offsets->items()[1].is_integer() || offsets->items()[0].as_int() < 0 || offsets->items()[1].as_int() < 0)
            bad(key, "'data_offsets' is not an array of two non-negative integers");
        ti.begin = static_cast<std::uint64_t>(offsets->items()[0].as_int());
        ti.end = static_cast<std::uint64_t>(offsets->items()[1].as_int());
        if (ti.end < ti.begin) bad(key, fmt::format("data_offsets [{}, {}] end before they begin", ti.begin, ti.end));
        if (ti.end > data_size)
            bad(key, fmt::format("data_offsets [{}, {}] run past the data buffer of {} bytes", ti.begin, ti.end, data_size));
        const std::uint64_t nbytes = numel * dtype_size(ti.dtype);
        if (ti.end - ti.begin != nbytes)
            bad(key, fmt::format("data_offsets [{}, {}] span {} bytes, but {} x {} needs {}", ti.begin, ti.end,
                                 ti.end - ti.begin, dtype_name(ti.dtype), ti.shape_str(), nbytes));
        return ti;
    }

    template <class T>
    Tensor<T> load_entry(const TensorInfo& ti) {
        if (ti.shape.size() > Shape::max_rank)
            throw Error(ErrorKind::shape, fmt::format("{}: rank {} (shape {}), sft::Tensor supports rank 0 to {}",
                                                      where(ti.name), ti.shape.size(), ti.shape_str(), Shape::max_rank));
        if constexpr (std::is_same_v<T, std::int64_t>) {
            if (dtype_is_floating(ti.dtype))
                throw Error(ErrorKind::invalid_argument,
                            fmt::format("{}: stored as {}, cannot be loaded as int64 (sft does not truncate floating "
                                        "values); load it as float or double",
                                        where(ti.name), dtype_name(ti.dtype)));
        }
        Tensor<T> t = Tensor<T>::empty(Shape(ti.shape));
        const std::size_t n = ti.numel();
        const std::uint64_t offset = 8 + header_size_ + ti.begin;
        if (ti.dtype == dtype_of<T>()) {
            // The common case: one read straight into the tensor's storage.
            read_at(offset, t.data(), n * sizeof(T), fmt::format("tensor '{}'", ti.name));
            if (!detail::host_is_little_endian())
                detail::byteswap_elements(reinterpret_cast<unsigned char*>(t.data()), n, sizeof(T));
            return t;
        }
        const std::size_t esize = dtype_size(ti.dtype);
        const std::size_t per_chunk = detail::st_chunk_bytes / esize;
        std::vector<unsigned char> buf(std::min(n, per_chunk) * esize);
        for (std::size_t first = 0; first < n; first += per_chunk) {
            const std::size_t count = std::min(per_chunk, n - first);
            read_at(offset + first * esize, buf.data(), count * esize, fmt::format("tensor '{}'", ti.name));
            convert_chunk(ti, buf.data(), count, t.data() + first, first);
        }
        return t;
    }

    /// Converts `count` elements of ti.dtype at `src` into T at `dst`; `first` is the flat index
    /// of src[0], for error messages.
    template <class T>
    void convert_chunk(const TensorInfo& ti, const unsigned char* src, std::size_t count, T* dst, std::size_t first) const {
        using detail::load_le;
        auto from_float = [&](auto get) {
            for (std::size_t i = 0; i < count; ++i) dst[i] = static_cast<T>(get(src + i * dtype_size(ti.dtype)));
        };
        auto from_int = [&](auto get) {
            for (std::size_t i = 0; i < count; ++i) {
                const std::int64_t v = get(src + i * dtype_size(ti.dtype), first + i);
                if constexpr (std::is_same_v<T, std::int64_t>) {
                    dst[i] = v;
                } else if (!detail::int_to_float_exact<T>(v, dst[i])) {
                    throw Error(ErrorKind::invalid_argument,
                                fmt::format("{}: {} value {} at flat index {} is not exactly representable as {}; load "
                                            "it as int64",
                                            where(ti.name), dtype_name(ti.dtype), v, first + i, sft::detail::dtype_name<T>()));
                }
            }
        };
        switch (ti.dtype) {
            case Dtype::F64:
                for (std::size_t i = 0; i < count; ++i) {
                    const double v = load_le<double>(src + i * 8);
                    if constexpr (std::is_same_v<T, float>) {
                        if (std::isfinite(v) && std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max()))
                            throw Error(ErrorKind::invalid_argument,
                                        fmt::format("{}: F64 value {} at flat index {} overflows float; load it as double",
                                                    where(ti.name), v, first + i));
                    }
                    dst[i] = static_cast<T>(v);
                }
                return;
            case Dtype::F32: return from_float([](const unsigned char* p) { return load_le<float>(p); });
            case Dtype::F16: return from_float([](const unsigned char* p) { return f16_to_float(load_le<std::uint16_t>(p)); });
            case Dtype::BF16: return from_float([](const unsigned char* p) { return bf16_to_float(load_le<std::uint16_t>(p)); });
            case Dtype::F8_E4M3: return from_float([](const unsigned char* p) { return f8e4m3_to_float(*p); });
            case Dtype::F8_E5M2: return from_float([](const unsigned char* p) { return f8e5m2_to_float(*p); });
            case Dtype::I64: return from_int([](const unsigned char* p, std::size_t) { return load_le<std::int64_t>(p); });
            case Dtype::I32: return from_int([](const unsigned char* p, std::size_t) { return std::int64_t(load_le<std::int32_t>(p)); });
            case Dtype::I16: return from_int([](const unsigned char* p, std::size_t) { return std::int64_t(load_le<std::int16_t>(p)); });
            case Dtype::I8: return from_int([](const unsigned char* p, std::size_t) { return std::int64_t(static_cast<std::int8_t>(*p)); });
            case Dtype::U32: return from_int([](const unsigned char* p, std::size_t) { return std::int64_t(load_le<std::uint32_t>(p)); });
            case Dtype::U16: return from_int([](const unsigned char* p, std::size_t) { return std::int64_t(load_le<std::uint16_t>(p)); });
            case Dtype::U8: return from_int([](const unsigned char* p, std::size_t) { return std::int64_t(*p); });
            case Dtype::U64:
                return from_int([&](const unsigned char* p, std::size_t at) {
                    const auto v = load_le<std::uint64_t>(p);
                    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                        throw Error(ErrorKind::invalid_argument,
                                    fmt::format("{}: U64 value {} at flat index {} exceeds int64", where(ti.name), v, at));
                    return static_cast<std::int64_t>(v);
                });
            case Dtype::BOOL:
                return from_int([&](const unsigned char* p, std::size_t at) {
                    if (*p > 1) bad(ti.name, fmt::format("BOOL byte 0x{:02x} at flat index {} is neither 0 nor 1", *p, at));
                    return std::int64_t(*p);
                });
        }
    }

    std::string path_;
    detail::FilePtr file_;
    std::uint64_t file_size_ = 0;
    std::uint64_t header_size_ = 0;
    std::vector<TensorInfo> infos_;
    std::map<std::string, std::size_t> index_;
    std::map<std::string, std::string> metadata_;
};

/// The header of `path` (names, dtypes, shapes, offsets, metadata) without reading any tensor
/// data. Throws sft::Error (io, format) as SafetensorsReader.
inline SafetensorsReader read_safetensors_header(const std::string& path) { return SafetensorsReader(path); }

/// Every tensor of the safetensors file `path`, converted to T, and its `__metadata__`.
/// Throws sft::Error naming the file and the tensor: io (open/read), format (malformed file),
/// shape (a tensor of rank above 4), invalid_argument (a refused conversion).
template <class T>
SafetensorsFile<T> load_safetensors_with_metadata(const std::string& path) {
    SafetensorsReader reader(path);
    SafetensorsFile<T> out;
    out.tensors = reader.load_all<T>();
    out.metadata = reader.metadata();
    return out;
}

/// Every tensor of the safetensors file `path`, converted to T (float, double or std::int64_t),
/// by name, as safetensors.torch.load_file. Throws as load_safetensors_with_metadata().
template <class T>
std::map<std::string, Tensor<T>> load_safetensors(const std::string& path) {
    return SafetensorsReader(path).load_all<T>();
}

namespace detail {

/// Encodes `count` values of T into `dtype` at `dst`; throws (naming file and key) on a value
/// the dtype cannot hold.
template <class T>
void encode_chunk(const T* src, std::size_t count, Dtype dtype, unsigned char* dst, const std::string& path,
                  const std::string& key, std::size_t first) {
    auto refuse = [&](const auto& v, std::size_t i) {
        throw Error(ErrorKind::invalid_argument, fmt::format("{}: value {} at flat index {} does not fit {}",
                                                             st_where(path, key), v, first + i, dtype_name(dtype)));
    };
    const std::size_t es = dtype_size(dtype);
    for (std::size_t i = 0; i < count; ++i) {
        const T v = src[i];
        unsigned char* p = dst + i * es;
        if constexpr (std::is_floating_point_v<T>) {
            const bool finite = std::isfinite(v);
            switch (dtype) {
                case Dtype::F64: store_le<double>(p, static_cast<double>(v)); break;
                case Dtype::F32:
                    if (finite && std::fabs(static_cast<double>(v)) > static_cast<double>(std::numeric_limits<float>::max()))
                        refuse(v, i);
                    store_le<float>(p, static_cast<float>(v));
                    break;
                case Dtype::F16: {
                    if (finite && std::fabs(static_cast<double>(v)) > static_cast<double>(std::numeric_limits<float>::max()))
                        refuse(v, i);
                    const std::uint16_t h = float_to_f16(static_cast<float>(v));
                    if (finite && (h & 0x7fffu) == 0x7c00u) refuse(v, i);
                    store_le<std::uint16_t>(p, h);
                    break;
                }
                case Dtype::BF16: {
                    if (finite && std::fabs(static_cast<double>(v)) > static_cast<double>(std::numeric_limits<float>::max()))
                        refuse(v, i);
                    const std::uint16_t h = float_to_bf16(static_cast<float>(v));
                    if (finite && (h & 0x7fffu) == 0x7f80u) refuse(v, i);
                    store_le<std::uint16_t>(p, h);
                    break;
                }
                default: break;  // excluded by save_safetensors
            }
        } else {
            auto in = [&](std::int64_t lo, std::int64_t hi) {
                if (v < lo || v > hi) refuse(v, i);
            };
            switch (dtype) {
                case Dtype::I64: store_le<std::int64_t>(p, v); break;
                case Dtype::I32:
                    in(std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max());
                    store_le<std::int32_t>(p, static_cast<std::int32_t>(v));
                    break;
                case Dtype::I16:
                    in(std::numeric_limits<std::int16_t>::min(), std::numeric_limits<std::int16_t>::max());
                    store_le<std::int16_t>(p, static_cast<std::int16_t>(v));
                    break;
                case Dtype::I8:
                    in(-128, 127);
                    *p = static_cast<unsigned char>(static_cast<std::int8_t>(v));
                    break;
                case Dtype::U8:
                    in(0, 255);
                    *p = static_cast<unsigned char>(v);
                    break;
                default: break;  // excluded by save_safetensors
            }
        }
    }
}

/// A number never returned twice in this process (one counter for every save_safetensors<T>).
inline unsigned long next_temp_id() noexcept {
    static std::atomic<unsigned long> counter{0};
    return counter++;
}

inline long process_id() noexcept {
#if SFT_DETAIL_HAVE_UNISTD
    return static_cast<long>(::getpid());
#else
    return 0;
#endif
}

/// Removes a file on scope exit unless released (the temporary of an atomic write).
struct TempFileGuard {
    std::string path;
    bool armed = true;
    ~TempFileGuard() {
        if (armed) std::remove(path.c_str());
    }
};

}  // namespace detail

/// Writes `tensors` to `path` in the safetensors format, sorted by name, with `metadata` as the
/// `__metadata__` object, each tensor stored as `dtype` (default: T's own, F32 / F64 / I64; see the
/// file comment for the other choices). The file is written to a temporary in the same folder
/// and renamed over `path` at the end, so a failure never leaves a truncated file at `path`.
/// Throws sft::Error naming the file (and the tensor): io (cannot write), invalid_argument (an
/// undefined tensor, the reserved name "__metadata__", a name or metadata string that is not
/// UTF-8, a dtype T cannot be saved as, a value the dtype cannot hold).
template <class T>
void save_safetensors(const std::map<std::string, Tensor<T>>& tensors, const std::string& path,
                      const std::map<std::string, std::string>& metadata = {}, Dtype dtype = dtype_of<T>()) {
    using detail::st_where;
    const bool allowed = std::is_floating_point_v<T>
                             ? (dtype == Dtype::F64 || dtype == Dtype::F32 || dtype == Dtype::F16 || dtype == Dtype::BF16)
                             : (dtype == Dtype::I64 || dtype == Dtype::I32 || dtype == Dtype::I16 || dtype == Dtype::I8 ||
                                dtype == Dtype::U8);
    if (!allowed)
        throw Error(ErrorKind::invalid_argument, fmt::format("{}: {} tensors cannot be saved as {}", st_where(path),
                                                             sft::detail::dtype_name<T>(), dtype_name(dtype)));
    const std::size_t es = dtype_size(dtype);

    // The reference reader rejects a header that is not UTF-8: refuse to write one.
    auto check_utf8 = [&](const std::string& s, const char* what) {
        if (!detail::is_valid_utf8(reinterpret_cast<const unsigned char*>(s.data()), s.size()))
            throw Error(ErrorKind::invalid_argument, fmt::format("{}: {} '{}' is not valid UTF-8", st_where(path), what, s));
    };
    for (const auto& [k, v] : metadata) {
        check_utf8(k, "metadata key");
        check_utf8(v, "metadata value");
    }
    for (const auto& entry : tensors) check_utf8(entry.first, "tensor name");

    // Header: __metadata__ first, as the reference writer, then the tensors in name order.
    std::string header = "{";
    if (!metadata.empty()) {
        header += "\"__metadata__\":{";
        bool first = true;
        for (const auto& [k, v] : metadata) {
            header += (first ? "" : ",") + sft::detail::json_quote(k) + ":" + sft::detail::json_quote(v);
            first = false;
        }
        header += "}";
    }
    std::uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        if (name == "__metadata__")
            throw Error(ErrorKind::invalid_argument,
                        fmt::format("{}: '__metadata__' is reserved and cannot name a tensor", st_where(path)));
        if (!t.defined())
            throw Error(ErrorKind::invalid_argument, fmt::format("{}: the tensor is undefined", st_where(path, name)));
        const std::uint64_t nbytes = static_cast<std::uint64_t>(t.numel()) * es;
        header += fmt::format("{}{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}", header.size() > 1 ? "," : "",
                              sft::detail::json_quote(name), dtype_name(dtype), fmt::join(t.shape().vec(), ","), offset,
                              offset + nbytes);
        offset += nbytes;
    }
    header += "}";
    // The reference writer pads the header with spaces to a multiple of 8, so that the data is
    // aligned for memory-mapping.
    header.append((8 - header.size() % 8) % 8, ' ');

    // A temporary name unique to this process and call, in the destination's folder so that the
    // final rename stays on one file system (and so is atomic on POSIX).
    detail::TempFileGuard tmp{fmt::format("{}.tmp-{}-{}", path, detail::process_id(), detail::next_temp_id())};
    auto fail = [&](const std::string& what) {
        throw Error(ErrorKind::io, fmt::format("{}: {}: {}", st_where(path), what, std::strerror(errno)));
    };
    errno = 0;
    detail::FilePtr f(std::fopen(tmp.path.c_str(), "wb"));
    if (!f) {
        tmp.armed = false;  // nothing was created
        fail(fmt::format("cannot create the temporary file '{}'", tmp.path));
    }
    auto write = [&](const void* p, std::size_t n) {
        if (n != 0 && std::fwrite(p, 1, n, f.get()) != n) fail(fmt::format("cannot write to '{}'", tmp.path));
    };
    unsigned char len[8];
    detail::store_le<std::uint64_t>(len, header.size());
    write(len, 8);
    write(header.data(), header.size());
    std::vector<unsigned char> buf;
    for (const auto& [name, t] : tensors) {
        const std::size_t n = t.numel();
        if (dtype == dtype_of<T>() && detail::host_is_little_endian()) {
            write(t.data(), n * sizeof(T));
            continue;
        }
        const std::size_t per_chunk = detail::st_chunk_bytes / es;
        buf.resize(std::min(n, per_chunk) * es);
        for (std::size_t first = 0; first < n; first += per_chunk) {
            const std::size_t count = std::min(per_chunk, n - first);
            detail::encode_chunk(t.data() + first, count, dtype, buf.data(), path, name, first);
            write(buf.data(), count * es);
        }
    }
    if (std::fflush(f.get()) != 0) fail(fmt::format("cannot flush '{}'", tmp.path));
#if SFT_DETAIL_HAVE_UNISTD
    // Data on disk before the rename makes it visible: a crash leaves the old file or the new one.
    if (::fsync(::fileno(f.get())) != 0) fail(fmt::format("cannot sync '{}'", tmp.path));
#endif
    if (std::fclose(f.release()) != 0) fail(fmt::format("cannot close '{}'", tmp.path));
    if (std::rename(tmp.path.c_str(), path.c_str()) != 0) fail(fmt::format("cannot rename '{}' to it", tmp.path));
    tmp.armed = false;
}

}  // namespace sft::io
