// Helpers shared by the tests of tests/io: temporary paths unique to the process (the plain and
// sanitized binaries may run at once), whole-file reads and writes, and catching an sft::Error.
#pragma once

#include <sft/error.hpp>

#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <string>

#include <unistd.h>

namespace sft::test {

/// A path in /tmp unique to this process: /tmp/sft_io_<pid>_<name>.
inline std::string tmp_path(const std::string& name) {
    return "/tmp/sft_io_" + std::to_string(static_cast<long>(::getpid())) + "_" + name;
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(f.good());
}

inline std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE(f.good());
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

/// The sft::Error thrown by `fn`; fails the test when it throws nothing or another type.
template <class Fn>
sft::Error error_of(Fn&& fn) {
    try {
        fn();
    } catch (const sft::Error& e) {
        return e;
    } catch (const std::exception& e) {
        FAIL("expected sft::Error, got std::exception: " << e.what());
    }
    FAIL("expected sft::Error, nothing was thrown");
    return sft::Error(ErrorKind::state, "unreachable");
}

}  // namespace sft::test
