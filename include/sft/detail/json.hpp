/// @file json.hpp
/// A small strict JSON parser (RFC 8259) for the safetensors header: internal, namespace sft::detail.
///
/// Enough for headers written by any safetensors writer: objects (key order kept, duplicate keys
/// rejected), arrays, strings with every escape (\uXXXX and surrogate pairs to UTF-8), integers
/// kept exact in 64 bits, and, for robustness, other numbers, true, false and null. The parser
/// never reads past the buffer it is given, bounds its recursion depth, and its errors
/// (sft::Error, ErrorKind::format) carry the byte offset: "JSON: expected ':' at byte 17".
#pragma once

#include <sft/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace sft::detail {

/// One JSON value. Objects keep their members in document order.
class JsonValue {
public:
    /// The JSON type of a value.
    enum class Type { null, boolean, number, string, array, object };

    /// This value's type; the is_*() tests below check it.
    Type type() const noexcept { return type_; }
    /// True for `null`.
    bool is_null() const noexcept { return type_ == Type::null; }
    /// True for `true` and `false`.
    bool is_bool() const noexcept { return type_ == Type::boolean; }
    /// True for any number, integer or not.
    bool is_number() const noexcept { return type_ == Type::number; }
    /// True for a string.
    bool is_string() const noexcept { return type_ == Type::string; }
    /// True for an array (see items()).
    bool is_array() const noexcept { return type_ == Type::array; }
    /// True for an object (see members() and find()).
    bool is_object() const noexcept { return type_ == Type::object; }
    /// A number written without fraction or exponent that fits std::int64_t.
    bool is_integer() const noexcept { return type_ == Type::number && is_integer_; }

    /// The boolean (meaningful when is_bool()).
    bool as_bool() const noexcept { return bool_; }
    /// The number as a double (integers are converted).
    double as_double() const noexcept { return is_integer_ ? static_cast<double>(int_) : double_; }
    /// The exact integer (meaningful when is_integer()).
    std::int64_t as_int() const noexcept { return int_; }
    /// The string, unescaped, as UTF-8 (meaningful when is_string()).
    const std::string& as_string() const noexcept { return string_; }
    /// The elements of an array (empty otherwise).
    const std::vector<JsonValue>& items() const noexcept { return items_; }
    /// The members of an object in document order, keys unique (empty otherwise).
    const std::vector<std::pair<std::string, JsonValue>>& members() const noexcept { return members_; }

    /// The member named `key` of an object, or nullptr.
    const JsonValue* find(std::string_view key) const noexcept {
        for (const auto& m : members_)
            if (m.first == key) return &m.second;
        return nullptr;
    }

    /// "object", "array", ... for error messages.
    const char* type_name() const noexcept {
        switch (type_) {
            case Type::null: return "null";
            case Type::boolean: return "boolean";
            case Type::number: return "number";
            case Type::string: return "string";
            case Type::array: return "array";
            case Type::object: return "object";
        }
        return "?";
    }

private:
    friend class JsonParser;
    Type type_ = Type::null;
    bool bool_ = false;
    bool is_integer_ = false;
    std::int64_t int_ = 0;
    double double_ = 0.0;
    std::string string_;
    std::vector<JsonValue> items_;
    std::vector<std::pair<std::string, JsonValue>> members_;
};

/// Parses one JSON document from a buffer; see parse_json().
class JsonParser {
public:
    /// Deepest nesting of arrays and objects accepted (a safetensors header needs 3).
    static constexpr int default_max_depth = 64;

    /// A parser over `text` (not copied: it must outlive the parser), refusing nesting beyond max_depth.
    explicit JsonParser(std::string_view text, int max_depth = default_max_depth) noexcept
        : s_(text), max_depth_(max_depth) {}

    /// The whole buffer as one value, only whitespace around it. Throws sft::Error (format).
    JsonValue parse() {
        skip_ws();
        JsonValue v = value(0);
        skip_ws();
        if (pos_ != s_.size()) fail("unexpected data after the top-level value");
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& what) const { fail_at(what, pos_); }
    [[noreturn]] void fail_at(const std::string& what, std::size_t at) const {
        throw Error(ErrorKind::format, fmt::format("JSON: {} at byte {}", what, at));
    }

    bool at_end() const noexcept { return pos_ >= s_.size(); }
    char peek() const noexcept { return at_end() ? '\0' : s_[pos_]; }

    void skip_ws() noexcept {
        while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }

    void expect(char c) {
        if (at_end()) fail(fmt::format("expected '{}' but the text ended", c));
        if (s_[pos_] != c) fail(fmt::format("expected '{}', found {}", c, describe(s_[pos_])));
        ++pos_;
    }

    static std::string describe(char c) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f) return fmt::format("'{}'", c);
        return fmt::format("byte 0x{:02x}", u);
    }

    JsonValue value(int depth) {
        if (at_end()) fail("expected a value but the text ended");
        const char c = s_[pos_];
        switch (c) {
            case '{': return object(depth + 1);
            case '[': return array(depth + 1);
            case '"': {
                JsonValue v;
                v.type_ = JsonValue::Type::string;
                v.string_ = string();
                return v;
            }
            case 't': return literal("true", JsonValue::Type::boolean, true);
            case 'f': return literal("false", JsonValue::Type::boolean, false);
            case 'n': return literal("null", JsonValue::Type::null, false);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return number();
                fail(fmt::format("expected a value, found {}", describe(c)));
        }
    }

    JsonValue literal(std::string_view word, JsonValue::Type type, bool b) {
        if (s_.substr(pos_, word.size()) != word) fail(fmt::format("invalid literal (expected '{}')", word));
        pos_ += word.size();
        JsonValue v;
        v.type_ = type;
        v.bool_ = b;
        return v;
    }

    void check_depth(int depth) const {
        if (depth > max_depth_) fail(fmt::format("nesting deeper than {}", max_depth_));
    }

    JsonValue object(int depth) {
        check_depth(depth);
        JsonValue v;
        v.type_ = JsonValue::Type::object;
        ++pos_;  // '{'
        skip_ws();
        if (peek() == '}') {
            ++pos_;
            return v;
        }
        std::vector<std::size_t> key_at;  // byte offset of each member's key, for the duplicate check
        for (;;) {
            skip_ws();
            if (peek() != '"') {
                if (at_end()) fail("expected a string key but the text ended");
                fail(fmt::format("expected a string key, found {}", describe(s_[pos_])));
            }
            key_at.push_back(pos_);
            std::string key = string();
            skip_ws();
            expect(':');
            skip_ws();
            JsonValue member = value(depth);
            v.members_.emplace_back(std::move(key), std::move(member));
            skip_ws();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() == '}') {
                ++pos_;
                reject_duplicates(v, key_at);
                return v;
            }
            if (at_end()) fail("expected ',' or '}' but the text ended");
            fail(fmt::format("expected ',' or '}}', found {}", describe(s_[pos_])));
        }
    }

    /// Duplicate keys are an error (RFC 8259 leaves them undefined; a safetensors header with two
    /// entries of one name is ambiguous). Sorting makes the check O(n log n): a 100 MB header
    /// of distinct keys must not take quadratic time. The later of two duplicates is reported.
    void reject_duplicates(const JsonValue& v, const std::vector<std::size_t>& key_at) const {
        const auto& m = v.members_;
        if (m.size() < 2) return;
        std::vector<std::size_t> order(m.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            return m[a].first != m[b].first ? m[a].first < m[b].first : a < b;
        });
        std::size_t worst = m.size();  // the first duplicate in document order
        for (std::size_t i = 1; i < order.size(); ++i)
            if (m[order[i]].first == m[order[i - 1]].first) worst = std::min(worst, order[i]);
        if (worst != m.size()) fail_at(fmt::format("duplicate key '{}'", m[worst].first), key_at[worst]);
    }

    JsonValue array(int depth) {
        check_depth(depth);
        JsonValue v;
        v.type_ = JsonValue::Type::array;
        ++pos_;  // '['
        skip_ws();
        if (peek() == ']') {
            ++pos_;
            return v;
        }
        for (;;) {
            skip_ws();
            v.items_.push_back(value(depth));
            skip_ws();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() == ']') {
                ++pos_;
                return v;
            }
            if (at_end()) fail("expected ',' or ']' but the text ended");
            fail(fmt::format("expected ',' or ']', found {}", describe(s_[pos_])));
        }
    }

    unsigned hex4() {
        if (s_.size() - pos_ < 4) fail("truncated \\u escape");
        unsigned u = 0;
        for (int i = 0; i < 4; ++i) {
            const char c = s_[pos_++];
            u <<= 4;
            if (c >= '0' && c <= '9') u |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') u |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') u |= static_cast<unsigned>(c - 'A' + 10);
            else fail_at("invalid hex digit in \\u escape", pos_ - 1);
        }
        return u;
    }

    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xc0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xe0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        } else {
            out += static_cast<char>(0xf0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        }
    }

    /// A string starting at '"'; raw bytes >= 0x80 are passed through (UTF-8 is not validated).
    std::string string() {
        const std::size_t start = pos_;
        ++pos_;  // '"'
        std::string out;
        for (;;) {
            if (at_end()) fail_at("unterminated string", start);
            const char c = s_[pos_];
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (static_cast<unsigned char>(c) < 0x20) fail(fmt::format("control character {} in a string", describe(c)));
            if (c != '\\') {
                out += c;
                ++pos_;
                continue;
            }
            ++pos_;
            if (at_end()) fail_at("unterminated string", start);
            const char e = s_[pos_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    const std::size_t esc_at = pos_ - 2;
                    std::uint32_t cp = hex4();
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        if (s_.size() - pos_ < 2 || s_[pos_] != '\\' || s_[pos_ + 1] != 'u')
                            fail_at("unpaired high surrogate in \\u escape", esc_at);
                        pos_ += 2;
                        const std::uint32_t lo = hex4();
                        if (lo < 0xdc00 || lo > 0xdfff) fail_at("invalid low surrogate in \\u escape", esc_at);
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                        fail_at("unpaired low surrogate in \\u escape", esc_at);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: fail_at(fmt::format("invalid escape '\\{}'", describe(e)), pos_ - 2);
            }
        }
    }

    /// RFC 8259 number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    JsonValue number() {
        const std::size_t start = pos_;
        auto digit = [&] { return !at_end() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
        if (peek() == '-') ++pos_;
        if (!digit()) fail("expected a digit");
        if (s_[pos_] == '0') {
            ++pos_;
            if (digit()) fail("leading zero in a number");
        } else {
            while (digit()) ++pos_;
        }
        bool integer = true;
        if (peek() == '.') {
            integer = false;
            ++pos_;
            if (!digit()) fail("expected a digit after '.'");
            while (digit()) ++pos_;
        }
        if (peek() == 'e' || peek() == 'E') {
            integer = false;
            ++pos_;
            if (peek() == '+' || peek() == '-') ++pos_;
            if (!digit()) fail("expected a digit in the exponent");
            while (digit()) ++pos_;
        }
        const char* first = s_.data() + start;
        const char* last = s_.data() + pos_;
        JsonValue v;
        v.type_ = JsonValue::Type::number;
        if (integer) {
            std::int64_t i = 0;
            const auto r = std::from_chars(first, last, i);
            if (r.ec == std::errc() && r.ptr == last) {
                v.is_integer_ = true;
                v.int_ = i;
                return v;
            }
            // Out of the int64 range: kept as a double, is_integer() false.
        }
        double d = 0.0;
        const auto r = std::from_chars(first, last, d);
        if (r.ec == std::errc::result_out_of_range) {
            // Beyond double: tiny magnitudes underflow to (signed) zero, huge ones become infinities.
            const bool negative = *first == '-';
            if (decimal_order(first, last) > 0)
                d = negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
            else
                d = negative ? -0.0 : 0.0;
        } else if (r.ec != std::errc() || r.ptr != last) {
            fail_at("invalid number", start);
        }
        v.double_ = d;
        return v;
    }

    /// For a valid JSON number, k such that its magnitude is in [10^(k-1), 10^k) (saturated):
    /// positive for overflow, non-positive for underflow. "0.001e400" is 398, "1000e-400" -396.
    static long long decimal_order(const char* p, const char* last) noexcept {
        if (*p == '-') ++p;
        long long order = 0;
        bool seen_nonzero = false;
        for (; p != last && *p >= '0' && *p <= '9'; ++p) {  // integer part
            if (*p != '0') seen_nonzero = true;
            if (seen_nonzero) ++order;
        }
        if (p != last && *p == '.') {
            for (++p; p != last && *p >= '0' && *p <= '9'; ++p) {  // fraction: leading zeros lower the order
                if (seen_nonzero) continue;
                if (*p == '0') --order;
                else seen_nonzero = true;
            }
        }
        if (!seen_nonzero) return std::numeric_limits<long long>::min() / 2;  // zero: never out of range
        long long e = 0;
        if (p != last && (*p == 'e' || *p == 'E')) {
            ++p;
            const bool neg = *p == '-';
            if (*p == '+' || *p == '-') ++p;
            for (; p != last; ++p) e = std::min<long long>(e * 10 + (*p - '0'), 1'000'000'000'000LL);
            if (neg) e = -e;
        }
        return order + e;
    }

    std::string_view s_;
    std::size_t pos_ = 0;
    int max_depth_;
};

/// Parses `text` as one JSON document (only whitespace may surround it). Throws sft::Error
/// (ErrorKind::format) whose message gives the reason and the byte offset.
inline JsonValue parse_json(std::string_view text, int max_depth = JsonParser::default_max_depth) {
    return JsonParser(text, max_depth).parse();
}

/// `s` as a JSON string literal with quotes: '"' and '\\' escaped, control characters as \n, \t,
/// ... or \u00XX; every other byte (UTF-8 included) passed through unchanged.
inline std::string json_quote(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (const char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
                else out += c;
        }
    }
    out += '"';
    return out;
}

}  // namespace sft::detail
