/// @file idx.hpp
/// Reading the IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/), gzipped
/// or raw.
///
/// An IDX file is: a 4-byte magic 0x00 0x00 <type> <rank>; `rank` big-endian u32 dimensions; the
/// elements, row-major and big-endian. Types: 0x08 unsigned byte, 0x09 signed byte, 0x0B int16,
/// 0x0C int32, 0x0D float32, 0x0E float64. Files are read through zlib's gzopen/gzread, which
/// reads gzip files (concatenated members included) and passes raw files through unchanged.
/// Bytes after the data are an error; but bytes after the last gzip member that do not start
/// another member are skipped by zlib itself (documented gzread behaviour) and cannot be seen.
#pragma once

#include <sft/error.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace sft::io {

/// Element type of an IDX file, the third byte of its magic number.
enum class IdxType : std::uint8_t { u8 = 0x08, i8 = 0x09, i16 = 0x0B, i32 = 0x0C, f32 = 0x0D, f64 = 0x0E };

/// "ubyte", "int32", ... for messages; "?" for a code that is not an IDX type.
constexpr const char* idx_type_name(IdxType t) noexcept {
    switch (t) {
        case IdxType::u8: return "ubyte";
        case IdxType::i8: return "byte";
        case IdxType::i16: return "int16";
        case IdxType::i32: return "int32";
        case IdxType::f32: return "float32";
        case IdxType::f64: return "float64";
    }
    return "?";
}

/// Bytes per element of an IDX type.
constexpr std::size_t idx_type_size(IdxType t) noexcept {
    switch (t) {
        case IdxType::u8: case IdxType::i8: return 1;
        case IdxType::i16: return 2;
        case IdxType::i32: case IdxType::f32: return 4;
        case IdxType::f64: return 8;
    }
    return 0;
}

namespace detail {

struct GzCloser {
    void operator()(gzFile_s* f) const noexcept { gzclose(f); }
};

/// A big-endian value of type U at p.
template <class U>
U load_be(const unsigned char* p) noexcept {
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) bits = (bits << 8) | p[i];
    if constexpr (sizeof(U) == 1) {
        return static_cast<U>(p[0]);
    } else {
        using Bits = std::conditional_t<sizeof(U) == 2, std::uint16_t, std::conditional_t<sizeof(U) == 4, std::uint32_t, std::uint64_t>>;
        const auto b = static_cast<Bits>(bits);
        U v;
        std::memcpy(&v, &b, sizeof(U));
        return v;
    }
}

}  // namespace detail

/// Reads the IDX file `path` (gzipped or raw) into a tensor of the stored shape, e.g. MNIST
/// images [N, 28, 28] and labels [N]. Values are converted to T as stored, unscaled: ubyte
/// pixels as float are 0..255. Integer types convert to float or double when exact (always,
/// except int32 values beyond 2^24 as float); float32/float64 do not convert to std::int64_t, and
/// a finite float64 beyond float's range is refused rather than made infinite.
/// The data is read through a buffer that grows as bytes arrive, so a header announcing more
/// data than the file holds fails on truncation without allocating the announced size.
/// Throws sft::Error naming the file: io (cannot open or read), format (bad magic, unknown type,
/// truncated header or data, bytes after the data, corrupt gzip), shape (rank above 4),
/// invalid_argument (a refused conversion).
template <class T>
Tensor<T> load_idx(const std::string& path) {
    static_assert(sft::detail::is_tensor_scalar_v<T>, "sft::io::load_idx<T>: T must be float, double or std::int64_t");
    const std::string where = fmt::format("IDX file '{}'", path);
    errno = 0;
    std::unique_ptr<gzFile_s, detail::GzCloser> f(gzopen(path.c_str(), "rb"));
    if (!f)
        throw Error(ErrorKind::io, fmt::format("{}: cannot open for reading: {}", where,
                                               errno ? std::strerror(errno) : "out of memory"));
    gzbuffer(f.get(), 1u << 17);

    std::uint64_t pos = 0;  // bytes of uncompressed content consumed, for messages
    // Reads up to n bytes; returns how many (fewer only at the end); a zlib error throws.
    auto read = [&](unsigned char* dst, std::size_t n) -> std::size_t {
        std::size_t got = 0;
        while (got < n) {
            const auto want = static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 20));
            const int r = gzread(f.get(), dst + got, want);
            if (r < 0) {
                int errnum = 0;
                const char* msg = gzerror(f.get(), &errnum);
                throw Error(errnum == Z_ERRNO ? ErrorKind::io : ErrorKind::format,
                            fmt::format("{}: read failed after {} bytes: {}", where, pos + got,
                                        errnum == Z_ERRNO ? std::strerror(errno) : msg));
            }
            if (r == 0) break;
            got += static_cast<std::size_t>(r);
        }
        pos += got;
        return got;
    };

    unsigned char magic[4];
    const std::size_t got_magic = read(magic, 4);
    if (got_magic < 4)
        throw Error(ErrorKind::format, fmt::format("{}: {} bytes, too short for the 4-byte magic number", where, got_magic));
    const auto type = static_cast<IdxType>(magic[2]);
    const std::uint32_t magic_value = detail::load_be<std::uint32_t>(magic);
    if (magic[0] != 0 || magic[1] != 0 || idx_type_size(type) == 0)
        throw Error(ErrorKind::format,
                    fmt::format("{}: bad magic number 0x{:08x}, expected 0x0000TTRR with type TT one of 08 09 0b 0c 0d 0e",
                                where, magic_value));
    const std::size_t rank = magic[3];
    if (rank > Shape::max_rank)
        throw Error(ErrorKind::shape, fmt::format("{}: rank {} (magic 0x{:08x}), sft::Tensor supports rank 0 to {}", where,
                                                  rank, magic_value, Shape::max_rank));
    unsigned char dim_bytes[4 * Shape::max_rank];
    if (read(dim_bytes, 4 * rank) < 4 * rank)
        throw Error(ErrorKind::format, fmt::format("{}: the file ends inside the {} dimensions of the header", where, rank));
    std::vector<std::size_t> dims(rank);
    std::size_t numel = 1;
    for (std::size_t i = 0; i < rank; ++i) {
        dims[i] = detail::load_be<std::uint32_t>(dim_bytes + 4 * i);
        if (dims[i] != 0 && numel > std::numeric_limits<std::size_t>::max() / dims[i] / 8)
            throw Error(ErrorKind::format, fmt::format("{}: dimensions [{}] overflow", where, fmt::join(dims, ", ")));
        numel *= dims[i];
    }
    const Shape shape(dims);
    const std::size_t esize = idx_type_size(type);
    const std::size_t nbytes = numel * esize;
    const std::uint64_t data_start = pos;

    // Grow the buffer as data arrives, doubling from 64 KiB up to 16 MiB chunks: never trust the
    // header with an allocation (a corrupt one may announce gigabytes over a few bytes).
    std::vector<unsigned char> raw;
    while (raw.size() < nbytes) {
        const std::size_t step = std::min<std::size_t>(std::max<std::size_t>(raw.size(), std::size_t(64) << 10),
                                                       std::size_t(16) << 20);
        const std::size_t chunk = std::min<std::size_t>(nbytes - raw.size(), step);
        const std::size_t old = raw.size();
        raw.resize(old + chunk);
        const std::size_t got = read(raw.data() + old, chunk);
        if (got < chunk) {
            // zlib reports a gzip stream cut short as Z_BUF_ERROR while gzread returns a short count.
            int errnum = 0;
            gzerror(f.get(), &errnum);
            throw Error(ErrorKind::format,
                        fmt::format("{}: truncated: shape {} of {} needs {} data bytes after the {}-byte header, the file "
                                    "holds {}{}",
                                    where, shape.str(), idx_type_name(type), nbytes, data_start, old + got,
                                    errnum == Z_BUF_ERROR ? " (the gzip stream is cut short)" : ""));
        }
    }
    unsigned char extra[64];
    const std::size_t trailing = read(extra, sizeof extra);
    if (trailing != 0)
        throw Error(ErrorKind::format,
                    fmt::format("{}: unexpected data after the {} bytes of shape {} of {} (at least {} more bytes)", where,
                                nbytes, shape.str(), idx_type_name(type), trailing));

    Tensor<T> t = Tensor<T>::empty(shape);
    T* out = t.data();
    const unsigned char* p = raw.data();
    auto refuse = [&](const auto& v, std::size_t i, const char* why) {
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("{}: {} value {} at flat index {} {}", where, idx_type_name(type), v, i, why));
    };
    switch (type) {
        case IdxType::u8:
            for (std::size_t i = 0; i < numel; ++i) out[i] = static_cast<T>(p[i]);
            break;
        case IdxType::i8:
            for (std::size_t i = 0; i < numel; ++i) out[i] = static_cast<T>(static_cast<std::int8_t>(p[i]));
            break;
        case IdxType::i16:
            for (std::size_t i = 0; i < numel; ++i) out[i] = static_cast<T>(detail::load_be<std::int16_t>(p + 2 * i));
            break;
        case IdxType::i32:
            for (std::size_t i = 0; i < numel; ++i) {
                const std::int32_t v = detail::load_be<std::int32_t>(p + 4 * i);
                out[i] = static_cast<T>(v);
                if constexpr (std::is_same_v<T, float>)
                    if (static_cast<std::int64_t>(out[i]) != v) refuse(v, i, "is not exactly representable as float");
            }
            break;
        case IdxType::f32:
        case IdxType::f64:
            if constexpr (std::is_same_v<T, std::int64_t>) {
                throw Error(ErrorKind::invalid_argument,
                            fmt::format("{}: stores {}, cannot be loaded as int64 (sft does not truncate floating values); "
                                        "load it as float or double",
                                        where, idx_type_name(type)));
            } else {
                for (std::size_t i = 0; i < numel; ++i) {
                    if (type == IdxType::f32) {
                        out[i] = static_cast<T>(detail::load_be<float>(p + 4 * i));
                        continue;
                    }
                    const double v = detail::load_be<double>(p + 8 * i);
                    if constexpr (std::is_same_v<T, float>)
                        if (std::isfinite(v) && std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max()))
                            refuse(v, i, "overflows float; load it as double");
                    out[i] = static_cast<T>(v);
                }
            }
            break;
    }
    return t;
}

}  // namespace sft::io
