// Tests of sft/io/dtype.hpp: names and sizes, the exact F16/BF16 decoders over every code, and
// the rounding encoders against torch's .half() / .bfloat16() (io_rounding.safetensors, ref_io.py).
#include <sft/io/dtype.hpp>
#include <sft/io/safetensors.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

using sft::io::Dtype;

namespace {
std::uint32_t bits_of(float f) {
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}
}  // namespace

TEST_CASE("dtype: names round trip, sizes, floating flags, T's own dtype", "[dtype]") {
    for (Dtype d : sft::io::all_dtypes) {
        const auto back = sft::io::dtype_from_name(sft::io::dtype_name(d));
        REQUIRE(back.has_value());
        CHECK(*back == d);
        CHECK(sft::io::dtype_size(d) >= 1);
    }
    CHECK_FALSE(sft::io::dtype_from_name("f32").has_value());  // names are case-sensitive, as in the format
    CHECK_FALSE(sft::io::dtype_from_name("").has_value());
    CHECK(sft::io::dtype_size(Dtype::BF16) == 2);
    CHECK(sft::io::dtype_size(Dtype::U64) == 8);
    CHECK(sft::io::dtype_size(Dtype::F8_E4M3) == 1);
    CHECK(sft::io::dtype_is_floating(Dtype::F8_E5M2));
    CHECK_FALSE(sft::io::dtype_is_floating(Dtype::BOOL));
    STATIC_REQUIRE(sft::io::dtype_of<float>() == Dtype::F32);
    STATIC_REQUIRE(sft::io::dtype_of<double>() == Dtype::F64);
    STATIC_REQUIRE(sft::io::dtype_of<std::int64_t>() == Dtype::I64);
}

TEST_CASE("dtype: every F16 code decodes exactly and encodes back to itself", "[dtype]") {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const auto code = static_cast<std::uint16_t>(h);
        const float f = sft::io::f16_to_float(code);
        const std::uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
        const double sign = (h & 0x8000) ? -1.0 : 1.0;
        if (e == 0x1f) {
            CHECK((m == 0 ? std::isinf(f) : std::isnan(f)));
            if (m == 0) CHECK(std::signbit(f) == ((h & 0x8000) != 0));
            else CHECK((sft::io::float_to_f16(f) & 0x7e00u) == 0x7e00u);  // NaN stays a quiet NaN
            continue;
        }
        // IEEE binary16: (-1)^s 2^(e-15) (1 + m/1024), subnormals 2^-14 (m/1024).
        const double want = sign * (e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1.0 + m / 1024.0, static_cast<int>(e) - 15));
        if (static_cast<double>(f) != want || std::signbit(f) != (sign < 0)) FAIL("f16 code " << h << " decoded as " << f);
        if (sft::io::float_to_f16(f) != code) FAIL("f16 code " << h << " does not encode back");
    }
}

TEST_CASE("dtype: every BF16 code decodes exactly and encodes back to itself", "[dtype]") {
    for (std::uint32_t b = 0; b < 65536; ++b) {
        const auto code = static_cast<std::uint16_t>(b);
        const float f = sft::io::bf16_to_float(code);
        CHECK(bits_of(f) == b << 16);
        if (std::isnan(f)) CHECK(std::isnan(sft::io::bf16_to_float(sft::io::float_to_bf16(f))));
        else if (sft::io::float_to_bf16(f) != code) FAIL("bf16 code " << b << " does not encode back");
    }
}

TEST_CASE("dtype: float -> F16 / BF16 rounding matches torch bit for bit (io_rounding.safetensors)", "[dtype][reference]") {
    sft::io::SafetensorsReader r(SFT_REFERENCE_DIR "/io_rounding.safetensors");
    const auto x = r.load<float>("x");
    const auto h = r.load<float>("x.f16");  // torch's x.half(), decoded exactly
    const auto b = r.load<float>("x.bf16");
    REQUIRE(x.numel() > 1000);
    std::size_t mismatches = 0, subnormal = 0, overflow = 0;
    for (std::size_t i = 0; i < x.numel(); ++i) {
        const float mine_h = sft::io::f16_to_float(sft::io::float_to_f16(x[i]));
        const float mine_b = sft::io::bf16_to_float(sft::io::float_to_bf16(x[i]));
        auto same = [](float a, float c) { return std::isnan(a) ? std::isnan(c) : bits_of(a) == bits_of(c); };
        if (!same(mine_h, h[i]) || !same(mine_b, b[i])) {
            ++mismatches;
            UNSCOPED_INFO("x[" << i << "] = " << x[i] << ": f16 " << mine_h << " vs torch " << h[i] << ", bf16 " << mine_b
                               << " vs torch " << b[i]);
        }
        subnormal += h[i] != 0.0f && std::fabs(h[i]) < 6.103515625e-05f;
        overflow += std::isinf(h[i]) && std::isfinite(x[i]);
    }
    CHECK(mismatches == 0);
    CHECK(subnormal > 10);  // the set reaches the F16 subnormals ...
    CHECK(overflow > 10);   // ... and its overflow to infinity
}

TEST_CASE("dtype: F16 rounding edges", "[dtype]") {
    CHECK(sft::io::float_to_f16(65504.0f) == 0x7bff);
    CHECK(sft::io::float_to_f16(65519.996f) == 0x7bff);
    CHECK(sft::io::float_to_f16(65520.0f) == 0x7c00);  // the tie above the largest finite rounds to infinity
    CHECK(sft::io::float_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
    CHECK(sft::io::float_to_f16(std::ldexp(1.0f, -25)) == 0x0000);       // tie to even (zero)
    CHECK(sft::io::float_to_f16(std::ldexp(3.0f, -26)) == 0x0001);       // above the tie
    CHECK(sft::io::float_to_f16(-std::ldexp(1.0f, -30)) == 0x8000);      // signed zero
    CHECK(sft::io::float_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie to even
    CHECK(sft::io::float_to_f16(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);  // tie to even (up)
    CHECK(sft::io::float_to_f16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)) == 0x0400);  // rounds up into the normals
    CHECK(sft::io::float_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // BF16 overflows to infinity as torch
}
