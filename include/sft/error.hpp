/// @file error.hpp
/// sft::Error, the one exception type of the library's API boundary, and its kinds.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace sft {

/// What went wrong, for code that wants to branch on it; the message says the rest.
enum class ErrorKind {
    invalid_argument,  ///< a value out of its range (a negative lr, an unknown option)
    shape,             ///< tensor shapes that do not fit together
    key,               ///< a missing, unexpected or unknown name (state_dict keys, freeze prefixes)
    io,                ///< a file that cannot be opened, read or written
    format,            ///< a file whose content is malformed (safetensors, IDX)
    numeric,           ///< a non-finite loss or value where a finite one is required
    state,             ///< a call out of order (backward before forward)
};

/// The exception thrown at the API boundary (forward, load, fit, I/O).
/// what() names the object and the values at fault, e.g.
/// "Linear 'fc1': input [32, 512], expected [*, 768]".
class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    explicit Error(const std::string& message) : Error(ErrorKind::invalid_argument, message) {}

    /// The category of the failure.
    ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

}  // namespace sft
