// Tests of sft/io/idx.hpp: every IDX element type, raw and gzipped, from small files written
// here; every malformed case (each error names the file); a mutation fuzz test; and the real
// Fashion-MNIST test set when the Debian package dataset-fashion-mnist is installed.
#include <sft/io/idx.hpp>

#include "io_test_util.hpp"

#include <catch2/catch.hpp>

#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

using sft::ErrorKind;
using sft::Shape;
using sft::Tensor;
using sft::io::IdxType;
using sft::io::load_idx;
using sft::test::error_of;
using sft::test::read_bytes;
using sft::test::tmp_path;
using sft::test::write_bytes;

namespace {

void put_be(std::string& out, std::uint64_t v, std::size_t bytes) {
    for (std::size_t i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * (bytes - 1 - i))) & 0xffu);
}

/// An IDX file: magic 0x0000 <type> <rank>, big-endian u32 dims, then `payload` as given.
std::string idx_file(IdxType type, const std::vector<std::uint32_t>& dims, const std::string& payload) {
    std::string out;
    out += '\0';
    out += '\0';
    out += static_cast<char>(type);
    out += static_cast<char>(dims.size());
    for (std::uint32_t d : dims) put_be(out, d, 4);
    return out + payload;
}

/// Big-endian bytes of each value, as `type` stores it.
template <class V>
std::string be_payload(IdxType type, const std::vector<V>& values) {
    std::string out;
    for (V v : values) {
        std::uint64_t bits = 0;
        if (type == IdxType::f32) {
            const float f = static_cast<float>(v);
            std::uint32_t b;
            std::memcpy(&b, &f, 4);
            bits = b;
        } else if (type == IdxType::f64) {
            const double d = static_cast<double>(v);
            std::memcpy(&bits, &d, 8);
        } else {
            bits = static_cast<std::uint64_t>(static_cast<std::int64_t>(v));
        }
        put_be(out, bits, sft::io::idx_type_size(type));
    }
    return out;
}

/// Writes `bytes` gzip-compressed through zlib.
void write_gz(const std::string& path, const std::string& bytes) {
    gzFile g = gzopen(path.c_str(), "wb");
    REQUIRE(g != nullptr);
    REQUIRE(gzwrite(g, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
    REQUIRE(gzclose(g) == Z_OK);
}

/// Writes `bytes` raw and gzipped, returns both paths.
std::vector<std::string> write_both(const std::string& name, const std::string& bytes) {
    const std::string raw = tmp_path(name), gz = tmp_path(name + ".gz");
    write_bytes(raw, bytes);
    write_gz(gz, bytes);
    return {raw, gz};
}

void check_idx_error(const std::string& bytes, ErrorKind kind, const std::string& reason) {
    for (const std::string& p : write_both("bad.idx", bytes)) {
        const sft::Error e = error_of([&] { load_idx<float>(p); });
        INFO(e.what());
        CHECK(e.kind() == kind);
        CHECK_THAT(e.what(), Catch::Contains(p) && Catch::Contains(reason));
    }
}

}  // namespace

TEST_CASE("idx: images and labels of ubyte, raw and gzipped, keep raw values 0..255", "[idx]") {
    std::string pixels;
    for (int i = 0; i < 2 * 3 * 4; ++i) pixels += static_cast<char>((i * 11) % 256);
    pixels[5] = static_cast<char>(255);
    const std::string images = idx_file(IdxType::u8, {2, 3, 4}, pixels);
    const std::string labels = idx_file(IdxType::u8, {5}, std::string("\x09\x00\x03\x07\x01", 5));
    for (const std::string& p : write_both("images.idx", images)) {
        INFO(p);
        const Tensor<float> t = load_idx<float>(p);
        REQUIRE(t.shape() == Shape({2, 3, 4}));
        for (std::size_t i = 0; i < t.numel(); ++i) CHECK(t[i] == static_cast<float>(static_cast<unsigned char>(pixels[i])));
        CHECK(t(0, 1, 1) == 255.0f);
        const Tensor<double> d = load_idx<double>(p);
        CHECK(d(1, 2, 3) == static_cast<double>(static_cast<unsigned char>(pixels[23])));
    }
    for (const std::string& p : write_both("labels.idx", labels)) {
        const Tensor<std::int64_t> l = load_idx<std::int64_t>(p);
        REQUIRE(l.shape() == Shape{5});
        CHECK(l[0] == 9);
        CHECK(l[1] == 0);
        CHECK(l[4] == 1);
    }
    // The gzip file really is compressed (the raw one passes through gzread unchanged).
    CHECK(read_bytes(tmp_path("images.idx.gz")).substr(0, 2) == "\x1f\x8b");
}

TEST_CASE("idx: every element type, big-endian, converted as documented", "[idx]") {
    const std::vector<std::int64_t> ints = {0, -1, 127, -128, 5};
    SECTION("signed byte") {
        for (const auto& p : write_both("i8.idx", idx_file(IdxType::i8, {5}, be_payload(IdxType::i8, ints)))) {
            const auto t = load_idx<std::int64_t>(p);
            for (std::size_t i = 0; i < 5; ++i) CHECK(t[i] == ints[i]);
            CHECK(load_idx<float>(p)[3] == -128.0f);
        }
    }
    SECTION("int16") {
        const std::vector<std::int64_t> v = {-32768, 32767, -2, 258};
        for (const auto& p : write_both("i16.idx", idx_file(IdxType::i16, {2, 2}, be_payload(IdxType::i16, v)))) {
            const auto t = load_idx<std::int64_t>(p);
            REQUIRE(t.shape() == Shape({2, 2}));
            for (std::size_t i = 0; i < 4; ++i) CHECK(t[i] == v[i]);
        }
    }
    SECTION("int32, exact as float only up to 2^24") {
        const std::vector<std::int64_t> v = {std::numeric_limits<std::int32_t>::min(), 16777216, -7, 16777217};
        for (const auto& p : write_both("i32.idx", idx_file(IdxType::i32, {1, 1, 4}, be_payload(IdxType::i32, v)))) {
            const auto t = load_idx<std::int64_t>(p);
            for (std::size_t i = 0; i < 4; ++i) CHECK(t[i] == v[i]);
            CHECK(load_idx<double>(p)[3] == 16777217.0);
            const sft::Error e = error_of([&] { load_idx<float>(p); });
            CHECK(e.kind() == ErrorKind::invalid_argument);
            CHECK_THAT(e.what(), Catch::Contains(p) && Catch::Contains("16777217") && Catch::Contains("index 3"));
        }
    }
    SECTION("float32 and float64") {
        const std::vector<double> v = {0.1, -2.5, 1e-40, -0.0, std::numeric_limits<double>::infinity()};
        for (const auto& p : write_both("f32.idx", idx_file(IdxType::f32, {5}, be_payload(IdxType::f32, v)))) {
            const auto t = load_idx<float>(p);
            for (std::size_t i = 0; i < 5; ++i) CHECK(t[i] == static_cast<float>(v[i]));
            CHECK(std::signbit(t[3]));
            CHECK(load_idx<double>(p)[0] == static_cast<double>(0.1f));
            CHECK_THROWS_WITH(load_idx<std::int64_t>(p), Catch::Contains(p) && Catch::Contains("float32") && Catch::Contains("int64"));
        }
        for (const auto& p : write_both("f64.idx", idx_file(IdxType::f64, {5}, be_payload(IdxType::f64, v)))) {
            const auto d = load_idx<double>(p);
            for (std::size_t i = 0; i < 5; ++i) CHECK(d[i] == v[i]);
            CHECK(load_idx<float>(p)[0] == 0.1f);
        }
        const std::vector<double> big = {1.0, 1e300};
        for (const auto& p : write_both("f64big.idx", idx_file(IdxType::f64, {2}, be_payload(IdxType::f64, big))))
            CHECK_THROWS_WITH(load_idx<float>(p), Catch::Contains("1e+300") && Catch::Contains("overflows float"));
    }
    SECTION("rank 0 to 4, and empty dimensions") {
        for (const auto& p : write_both("r0.idx", idx_file(IdxType::u8, {}, "\x2a"))) {
            const auto t = load_idx<float>(p);
            CHECK(t.rank() == 0);
            CHECK(t[0] == 42.0f);
        }
        for (const auto& p : write_both("r4.idx", idx_file(IdxType::u8, {1, 2, 1, 3}, "abcdef")))
            CHECK(load_idx<std::int64_t>(p)(0, 1, 0, 2) == 'f');
        for (const auto& p : write_both("empty.idx", idx_file(IdxType::i32, {0, 28}, "")))
            CHECK(load_idx<float>(p).shape() == Shape({0, 28}));
    }
}

TEST_CASE("idx: malformed files throw errors naming the file", "[idx][malformed]") {
    SECTION("missing file") {
        const std::string p = tmp_path("no_such.idx.gz");
        std::filesystem::remove(p);
        const sft::Error e = error_of([&] { load_idx<float>(p); });
        CHECK(e.kind() == ErrorKind::io);
        CHECK_THAT(e.what(), Catch::Contains(p) && Catch::Contains("cannot open"));
        const sft::Error d = error_of([&] { load_idx<float>(sft::test::scratch_dir()); });
        CHECK(d.kind() == ErrorKind::io);
        CHECK_THAT(d.what(), Catch::Contains("'" + sft::test::scratch_dir() + "'"));
    }
    SECTION("empty or too short for the magic") {
        check_idx_error("", ErrorKind::format, "too short for the 4-byte magic");
        check_idx_error(std::string("\0\0\x08", 3), ErrorKind::format, "too short");
    }
    SECTION("bad magic") {
        check_idx_error(std::string("\x01\0\x08\x01\0\0\0\x01x", 9), ErrorKind::format, "bad magic number 0x01000801");
        check_idx_error(std::string("\0\0\x0a\x01\0\0\0\x01x", 9), ErrorKind::format, "bad magic number 0x00000a01");
        check_idx_error("PK\x03\x04 a zip file", ErrorKind::format, "bad magic");
    }
    SECTION("rank above 4") {
        check_idx_error(idx_file(IdxType::u8, {1, 1, 1, 1, 2}, "ab"), ErrorKind::shape, "rank 5");
    }
    SECTION("truncated dimensions") {
        check_idx_error(idx_file(IdxType::u8, {10, 28, 28}, "").substr(0, 10), ErrorKind::format, "ends inside the 3 dimensions");
    }
    SECTION("truncated data") {
        check_idx_error(idx_file(IdxType::u8, {3, 2, 2}, "0123456789"), ErrorKind::format, "needs 12 data bytes");
        check_idx_error(idx_file(IdxType::f64, {2}, "12345678"), ErrorKind::format, "the file holds 8");
        // A header announcing 4 GB over a few bytes: a truncation error, not a 4 GB allocation.
        check_idx_error(idx_file(IdxType::f64, {65536, 65536}, "12345678"), ErrorKind::format, "truncated");
    }
    SECTION("trailing garbage") {
        check_idx_error(idx_file(IdxType::u8, {2}, "abc"), ErrorKind::format, "unexpected data after the 2 bytes");
        check_idx_error(idx_file(IdxType::i16, {1}, std::string(100, 'z')), ErrorKind::format, "at least 64 more bytes");
    }
    SECTION("overflowing dimensions") {
        check_idx_error(idx_file(IdxType::f64, {0xffffffffu, 0xffffffffu, 0xffffffffu}, ""), ErrorKind::format, "overflow");
    }
    SECTION("a gzip stream cut short, or corrupt") {
        const std::string full = tmp_path("cut.idx.gz");
        std::string bytes = idx_file(IdxType::u8, {4000}, std::string());
        for (int i = 0; i < 4000; ++i) bytes += static_cast<char>((i * 7919) % 251);
        write_gz(full, bytes);
        const std::string gz = read_bytes(full);
        CHECK(load_idx<float>(full).numel() == 4000);
        const std::string cut = tmp_path("cut2.idx.gz");
        write_bytes(cut, gz.substr(0, gz.size() / 2));
        sft::Error e = error_of([&] { load_idx<float>(cut); });
        CHECK(e.kind() == ErrorKind::format);
        CHECK_THAT(e.what(), Catch::Contains(cut) && Catch::Contains("truncated") && Catch::Contains("cut short"));
        std::string corrupt = gz;
        for (std::size_t i = 20; i < 60; ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
        write_bytes(cut, corrupt);
        e = error_of([&] { load_idx<float>(cut); });
        CHECK(e.kind() == ErrorKind::format);
        CHECK_THAT(e.what(), Catch::Contains(cut));
    }
}

TEST_CASE("idx: seeded mutation fuzzing never crashes", "[idx][fuzz]") {
    std::string payload;
    for (int i = 0; i < 60; ++i) payload += static_cast<char>(i * 3);
    const std::string valid = idx_file(IdxType::i16, {3, 2, 5}, payload);
    const std::string raw = tmp_path("fuzz.idx"), gz = tmp_path("fuzz.idx.gz");
    write_gz(gz, valid);
    const std::string valid_gz = read_bytes(gz);
    sft::Rng rng(99);
    std::size_t ok = 0, bad = 0;
    for (int it = 0; it < 3000; ++it) {
        const bool use_gz = it % 3 == 0;
        std::string m = use_gz ? valid_gz : valid;
        const int edits = 1 + static_cast<int>(rng.randint(3));
        for (int k = 0; k < edits && !m.empty(); ++k) {
            // Mostly the 16-byte header of the raw file, anywhere in the gzip file.
            const std::size_t span = use_gz ? m.size() : std::min<std::size_t>(m.size(), rng.uniform() < 0.8 ? 16 : m.size());
            const auto pos = static_cast<std::size_t>(rng.randint(span));
            switch (rng.randint(4)) {
                case 0: m[pos] = static_cast<char>(m[pos] ^ (1 << rng.randint(8))); break;
                case 1: m[pos] = static_cast<char>(rng.randint(256)); break;
                case 2: m.resize(pos); break;
                case 3: m.insert(pos, 1 + static_cast<std::size_t>(rng.randint(4)), static_cast<char>(rng.randint(256))); break;
            }
        }
        const std::string& p = use_gz ? gz : raw;
        write_bytes(p, m);
        try {
            load_idx<double>(p);
            ++ok;
        } catch (const sft::Error& e) {
            REQUIRE(std::string(e.what()).find(p) != std::string::npos);
            ++bad;
        }
    }
    CHECK(ok > 50);
    CHECK(bad > 1000);
}

TEST_CASE("idx: the real Fashion-MNIST test set (dataset-fashion-mnist)", "[idx][fashion-mnist]") {
    const std::string dir = "/usr/share/datasets/fashion-mnist/";
    const std::string images_path = dir + "t10k-images-idx3-ubyte.gz", labels_path = dir + "t10k-labels-idx1-ubyte.gz";
    if (!std::filesystem::exists(images_path) || !std::filesystem::exists(labels_path)) {
        WARN("skipped: " << images_path << " or " << labels_path << " is absent (install the Debian package dataset-fashion-mnist)");
        return;
    }
    const Tensor<float> images = load_idx<float>(images_path);
    const Tensor<std::int64_t> labels = load_idx<std::int64_t>(labels_path);
    REQUIRE(images.shape() == Shape({10000, 28, 28}));
    REQUIRE(labels.shape() == Shape{10000});
    // Golden values read independently with Python's gzip and struct modules:
    // sum(pixels) = 573469082, image 0 pixel (14, 14) = 110, max 255, first labels 9 2 1 1 6 1 4 6 5 7,
    // 1000 images of each of the 10 classes.
    double sum = 0;
    float lo = 255, hi = 0;
    std::size_t fractional = 0;
    for (float v : images) {
        sum += v;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        fractional += v != std::floor(v);
    }
    CHECK(fractional == 0);
    CHECK(sum == 573469082.0);
    CHECK(lo == 0.0f);
    CHECK(hi == 255.0f);
    CHECK(images(0, 14, 14) == 110.0f);
    const std::int64_t first[] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    for (std::size_t i = 0; i < 10; ++i) CHECK(labels[i] == first[i]);
    std::int64_t count[10] = {};
    std::size_t out_of_range = 0;
    for (std::int64_t l : labels) {
        if (l < 0 || l >= 10) ++out_of_range;
        else ++count[l];
    }
    CHECK(out_of_range == 0);
    for (std::int64_t c : count) CHECK(c == 1000);
}
