/// @file dtype.hpp
/// sft::io::Dtype, the element types of the safetensors format, and the portable bit-level
/// conversions between float and IEEE half (F16) or bfloat16 (BF16).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <type_traits>

namespace sft::io {

/// Element type of a tensor stored in a file, named as in the safetensors header. F8_E4M3 is
/// torch.float8_e4m3fn (no infinities), F8_E5M2 is torch.float8_e5m2.
enum class Dtype { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

/// Every Dtype, in declaration order.
inline constexpr Dtype all_dtypes[] = {Dtype::F64, Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::F8_E4M3,
                                       Dtype::F8_E5M2, Dtype::I64, Dtype::I32, Dtype::I16, Dtype::I8,
                                       Dtype::U64, Dtype::U32, Dtype::U16, Dtype::U8, Dtype::BOOL};

/// The header name of a dtype: "F32", "BF16", ...
constexpr const char* dtype_name(Dtype d) noexcept {
    switch (d) {
        case Dtype::F64: return "F64";
        case Dtype::F32: return "F32";
        case Dtype::F16: return "F16";
        case Dtype::BF16: return "BF16";
        case Dtype::F8_E4M3: return "F8_E4M3";
        case Dtype::F8_E5M2: return "F8_E5M2";
        case Dtype::I64: return "I64";
        case Dtype::I32: return "I32";
        case Dtype::I16: return "I16";
        case Dtype::I8: return "I8";
        case Dtype::U64: return "U64";
        case Dtype::U32: return "U32";
        case Dtype::U16: return "U16";
        case Dtype::U8: return "U8";
        case Dtype::BOOL: return "BOOL";
    }
    return "?";
}

/// Bytes per element of a dtype.
constexpr std::size_t dtype_size(Dtype d) noexcept {
    switch (d) {
        case Dtype::F64: case Dtype::I64: case Dtype::U64: return 8;
        case Dtype::F32: case Dtype::I32: case Dtype::U32: return 4;
        case Dtype::F16: case Dtype::BF16: case Dtype::I16: case Dtype::U16: return 2;
        case Dtype::F8_E4M3: case Dtype::F8_E5M2: case Dtype::I8: case Dtype::U8: case Dtype::BOOL: return 1;
    }
    return 0;
}

/// True for F64, F32, F16, BF16 and the two F8 types.
constexpr bool dtype_is_floating(Dtype d) noexcept {
    return d == Dtype::F64 || d == Dtype::F32 || d == Dtype::F16 || d == Dtype::BF16 || d == Dtype::F8_E4M3 ||
           d == Dtype::F8_E5M2;
}

/// The dtype named `name` in a safetensors header, or nothing for an unknown name.
inline std::optional<Dtype> dtype_from_name(std::string_view name) noexcept {
    for (Dtype d : all_dtypes)
        if (name == dtype_name(d)) return d;
    return std::nullopt;
}

/// The dtype of a tensor element type: float -> F32, double -> F64, std::int64_t -> I64.
template <class T>
constexpr Dtype dtype_of() noexcept {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int64_t>,
                  "sft::io::dtype_of<T>: T must be float, double or std::int64_t");
    if constexpr (std::is_same_v<T, float>) return Dtype::F32;
    else if constexpr (std::is_same_v<T, double>) return Dtype::F64;
    else return Dtype::I64;
}

/// IEEE 754 binary16 bits to float, exactly: subnormals are normalised, infinities kept, NaN
/// payloads kept (shifted into the float's mantissa).
inline float f16_to_float(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t mant = h & 0x3ffu;
    std::uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);  // inf, or NaN with its payload
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
    } else if (mant == 0) {
        bits = sign;  // +-0
    } else {
        // Subnormal: mant * 2^-24. Shift until the implicit bit (0x400) appears; each shift
        // lowers the exponent by one from the smallest normal's 2^-14 (float biased 113).
        std::uint32_t e = 113;
        do {
            mant <<= 1;
            --e;
        } while ((mant & 0x400u) == 0);
        bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

/// float to IEEE binary16 bits, rounding to nearest even as torch's .half() does: values of
/// magnitude >= 65520 become infinity, tiny values become subnormals or signed zero, NaN stays
/// a (quiet) NaN.
inline std::uint16_t float_to_f16(float f) noexcept {
    std::uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    const std::uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) {  // inf or NaN
        if (absx == 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
        return static_cast<std::uint16_t>(sign | 0x7e00u | ((absx >> 13) & 0x3ffu));
    }
    const int exp = static_cast<int>(absx >> 23) - 127;
    if (exp > 15) return static_cast<std::uint16_t>(sign | 0x7c00u);
    std::uint32_t h;
    std::uint32_t round, sticky;
    if (exp >= -14) {  // normal half
        const std::uint32_t mant = absx & 0x7fffffu;
        h = (static_cast<std::uint32_t>(exp + 15) << 10) | (mant >> 13);
        round = (mant >> 12) & 1u;
        sticky = mant & 0xfffu;
    } else {  // subnormal half (or zero): value * 2^24, with the implicit bit made explicit
        const int shift = -exp - 1;  // >= 14
        if (shift >= 25) return sign;
        const std::uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        h = m >> shift;
        round = (m >> (shift - 1)) & 1u;
        sticky = m & ((1u << (shift - 1)) - 1u);
    }
    if (round && (sticky || (h & 1u))) ++h;  // a carry into the exponent is the right encoding, up to inf
    return static_cast<std::uint16_t>(sign | h);
}

/// bfloat16 bits to float, exactly: the 16 bits are the float's upper half.
inline float bf16_to_float(std::uint16_t b) noexcept {
    const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

/// float to bfloat16 bits, rounding to nearest even as torch does; NaN stays a quiet NaN.
inline std::uint16_t float_to_bf16(float f) noexcept {
    std::uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return static_cast<std::uint16_t>(x >> 16);
}

/// float8_e5m2 bits to float, exactly: E5M2 is the upper byte of an IEEE binary16.
inline float f8e5m2_to_float(std::uint8_t b) noexcept { return f16_to_float(static_cast<std::uint16_t>(b << 8)); }

/// float8_e4m3fn bits to float, exactly (1 sign, 4 exponent bits of bias 7, 3 mantissa bits; no
/// infinities, S.1111.111 is NaN; largest finite 448), as torch.float8_e4m3fn.
inline float f8e4m3_to_float(std::uint8_t b) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(b & 0x80u) << 24;
    const std::uint32_t exp = (b >> 3) & 0xfu;
    const std::uint32_t mant = b & 0x7u;
    std::uint32_t bits;
    if (exp == 0xf && mant == 0x7) {
        bits = sign | 0x7fc00000u;  // NaN
    } else if (exp != 0) {
        bits = sign | ((exp + 120) << 23) | (mant << 20);  // rebias 7 -> 127
    } else if (mant == 0) {
        bits = sign;
    } else {
        // Subnormal: mant * 2^-9, exact in float as an integer times a power of two.
        float f = static_cast<float>(mant) * 0x1.0p-9f;
        return sign ? -f : f;
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

}  // namespace sft::io
