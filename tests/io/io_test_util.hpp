// Helpers shared by the tests of tests/io: temporary paths unique to the process (the plain and
// sanitized binaries may run at once), whole-file reads and writes, and catching an sft::Error.
#pragma once

#include <sft/error.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include <unistd.h>

namespace sft::test {

/// The scratch folder: /dev/shm when it is a writable folder (tmpfs: the fuzz tests write
/// thousands of small files, about 5 ms each on the disk behind /tmp, 0.1 ms there), else /tmp.
inline const std::string& scratch_dir() {
    static const std::string dir = ::access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
    return dir;
}

/// A path in the scratch folder unique to this process: <dir>/sft_io_<pid>_<name>.
inline std::string tmp_path(const std::string& name) {
    return scratch_dir() + "/sft_io_" + std::to_string(static_cast<long>(::getpid())) + "_" + name;
}

/// Removes this process's scratch files at exit (the tests leave them for inspection until then).
struct ScratchCleaner {
    ~ScratchCleaner() {
        const std::string prefix = "sft_io_" + std::to_string(static_cast<long>(::getpid())) + "_";
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(scratch_dir(), ec))
            if (entry.path().filename().string().rfind(prefix, 0) == 0) std::filesystem::remove_all(entry.path(), ec);
    }
};
inline ScratchCleaner scratch_cleaner;

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
