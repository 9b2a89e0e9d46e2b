// Tests of sft/detail/json.hpp, the strict JSON parser of safetensors headers: the grammar
// (RFC 8259), escapes and surrogates, exact integers, errors with their byte offsets, depth
// limits, duplicate keys, json_quote round trips, and a seeded mutation fuzz test.
#include <sft/detail/json.hpp>
#include <sft/tensor.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

using sft::detail::JsonValue;
using sft::detail::parse_json;

namespace {
std::string error_text(const std::string& text) {
    try {
        parse_json(text);
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::format);
        return e.what();
    }
    FAIL("no error for: " << text);
    return "";
}
}  // namespace

TEST_CASE("json: values of every type, members in document order", "[json]") {
    const JsonValue v = parse_json(
        " {\"b\": [1, -2, 3.5, 1e2, -0.25E-1], \"a\": {\"t\": true, \"f\": false, \"n\": null}, \"s\": \"x\"}\n\t\r");
    REQUIRE(v.is_object());
    REQUIRE(v.members().size() == 3);
    CHECK(v.members()[0].first == "b");  // kept in document order, not sorted
    CHECK(v.members()[1].first == "a");
    const JsonValue& b = *v.find("b");
    REQUIRE(b.is_array());
    REQUIRE(b.items().size() == 5);
    CHECK(b.items()[0].is_integer());
    CHECK(b.items()[0].as_int() == 1);
    CHECK(b.items()[1].as_int() == -2);
    CHECK_FALSE(b.items()[2].is_integer());
    CHECK(b.items()[2].as_double() == 3.5);
    CHECK_FALSE(b.items()[3].is_integer());  // an exponent makes it a non-integer, as in the grammar
    CHECK(b.items()[3].as_double() == 100.0);
    CHECK(b.items()[4].as_double() == -0.025);
    const JsonValue& a = *v.find("a");
    CHECK(a.find("t")->as_bool());
    CHECK(a.find("f")->is_bool());
    CHECK_FALSE(a.find("f")->as_bool());
    CHECK(a.find("n")->is_null());
    CHECK(a.find("missing") == nullptr);
    CHECK(v.find("s")->as_string() == "x");
    CHECK(parse_json("[]").items().empty());
    CHECK(parse_json("{}").members().empty());
    CHECK(parse_json("\"\"").as_string().empty());
    CHECK(std::string(parse_json("[]").type_name()) == "array");
}

TEST_CASE("json: integers are exact in 64 bits, larger ones become doubles", "[json]") {
    CHECK(parse_json("9223372036854775807").as_int() == std::numeric_limits<std::int64_t>::max());
    CHECK(parse_json("-9223372036854775808").as_int() == std::numeric_limits<std::int64_t>::min());
    const JsonValue big = parse_json("9223372036854775808");
    CHECK_FALSE(big.is_integer());
    CHECK(big.as_double() == 9223372036854775808.0);
    CHECK(parse_json("-0").is_integer());
    CHECK(parse_json("0").as_int() == 0);
    // Out of double's range: huge magnitudes are infinities, tiny ones zero, whatever the notation.
    CHECK(std::isinf(parse_json("1e400").as_double()));
    CHECK(parse_json("-1e400").as_double() < 0);
    CHECK(parse_json("1e-400").as_double() == 0.0);
    CHECK(std::signbit(parse_json("-1e-400").as_double()));
    CHECK(parse_json("0." + std::string(400, '0') + "1").as_double() == 0.0);
    CHECK(std::isinf(parse_json("1" + std::string(400, '0')).as_double()));
    CHECK(std::isinf(parse_json("0.001e400").as_double()));
    CHECK(parse_json("1000e-400").as_double() == 0.0);
    CHECK(parse_json("0e99999999999999999999").as_double() == 0.0);
    CHECK(std::isinf(parse_json("1e99999999999999999999").as_double()));
}

TEST_CASE("json: strings with every escape, surrogate pairs and raw UTF-8", "[json]") {
    CHECK(parse_json(R"("a\"b\\c\/d\be\ff\ng\rh\ti")").as_string() == "a\"b\\c/d\be\ff\ng\rh\ti");
    CHECK(parse_json(R"("\u0041\u00e9\u20AC")").as_string() == "A\xc3\xa9\xe2\x82\xac");
    CHECK(parse_json(R"("\ud83d\ude00")").as_string() == "\xf0\x9f\x98\x80");  // U+1F600
    CHECK(parse_json(R"("\u0000")").as_string() == std::string(1, '\0'));
    CHECK(parse_json("\"caf\xc3\xa9\"").as_string() == "caf\xc3\xa9");
}

TEST_CASE("json: errors give the reason and the byte offset", "[json]") {
    CHECK_THAT(error_text("{\"a\" 1}"), Catch::Contains("expected ':'") && Catch::Contains("at byte 5"));
    CHECK_THAT(error_text("{\"a\":1,}"), Catch::Contains("expected a string key"));
    CHECK_THAT(error_text("[1,]"), Catch::Contains("expected a value"));
    CHECK_THAT(error_text("[1 2]"), Catch::Contains("expected ',' or ']'"));
    CHECK_THAT(error_text("{\"a\":1"), Catch::Contains("text ended"));
    CHECK_THAT(error_text(""), Catch::Contains("text ended"));
    CHECK_THAT(error_text("{} {}"), Catch::Contains("after the top-level value") && Catch::Contains("at byte 3"));
    CHECK_THAT(error_text("\"abc"), Catch::Contains("unterminated string") && Catch::Contains("at byte 0"));
    CHECK_THAT(error_text("\"a\nb\""), Catch::Contains("control character"));
    CHECK_THAT(error_text(R"("\x")"), Catch::Contains("invalid escape"));
    CHECK_THAT(error_text(R"("\u12")"), Catch::Contains("\\u escape"));
    CHECK_THAT(error_text(R"("\u12g4")"), Catch::Contains("invalid hex digit"));
    CHECK_THAT(error_text(R"("\ud83d")"), Catch::Contains("unpaired high surrogate"));
    CHECK_THAT(error_text(R"("\ud83d\u0041")"), Catch::Contains("invalid low surrogate"));
    CHECK_THAT(error_text(R"("\ude00")"), Catch::Contains("unpaired low surrogate"));
    CHECK_THAT(error_text("01"), Catch::Contains("leading zero"));
    CHECK_THAT(error_text("-"), Catch::Contains("expected a digit"));
    CHECK_THAT(error_text("1."), Catch::Contains("after '.'"));
    CHECK_THAT(error_text("1e"), Catch::Contains("exponent"));
    CHECK_THAT(error_text("+1"), Catch::Contains("expected a value"));
    CHECK_THAT(error_text(".5"), Catch::Contains("expected a value"));
    CHECK_THAT(error_text("NaN"), Catch::Contains("expected a value"));
    CHECK_THAT(error_text("tru"), Catch::Contains("invalid literal"));
    CHECK_THAT(error_text("nulL"), Catch::Contains("invalid literal"));
    CHECK_THAT(error_text("[1]\x01"), Catch::Contains("after the top-level value at byte 3"));
    CHECK_THAT(error_text("[\x01]"), Catch::Contains("byte 0x01") && Catch::Contains("at byte 1"));
    CHECK_THAT(error_text("{'a':1}"), Catch::Contains("expected a string key, found '''"));
}

TEST_CASE("json: duplicate keys are rejected at the later one, in any object of any size", "[json]") {
    CHECK_THAT(error_text("{\"a\":1,\"b\":2,\"a\":3}"), Catch::Contains("duplicate key 'a'") && Catch::Contains("at byte 13"));
    CHECK_THAT(error_text("{\"x\":{\"k\":1,\"k\":1}}"), Catch::Contains("duplicate key 'k'"));
    // Many distinct keys parse (and quickly: the check is O(n log n)); one repeat among them is found.
    std::string text = "{";
    for (int i = 0; i < 50000; ++i) text += (i ? ",\"" : "\"") + std::to_string(i) + "\":0";
    CHECK(parse_json(text + "}").members().size() == 50000);
    CHECK_THAT(error_text(text + ",\"123\":1}"), Catch::Contains("duplicate key '123'"));
    // Keys equal after unescaping are duplicates.
    CHECK_THAT(error_text(R"({"A":1,"\u0041":2})"), Catch::Contains("duplicate key 'A'"));
}

TEST_CASE("json: nesting deeper than the limit is an error, not a stack overflow", "[json]") {
    CHECK(parse_json(std::string(64, '[') + std::string(64, ']')).is_array());
    CHECK_THAT(error_text(std::string(65, '[') + std::string(65, ']')), Catch::Contains("nesting deeper than 64"));
    CHECK_THAT(error_text(std::string(100000, '[')), Catch::Contains("nesting deeper"));
    CHECK_THROWS(parse_json("[[[1]]]", 2));
    CHECK(parse_json("[[1]]", 2).is_array());
}

TEST_CASE("json: json_quote round trips through the parser", "[json]") {
    std::string all;
    for (int c = 1; c < 256; ++c) all += static_cast<char>(c);
    all += std::string(1, '\0');
    for (const std::string& s : {std::string("plain"), std::string("q\"b\\s/"), std::string("\n\r\t\b\f\x01\x1f\x7f"),
                                 std::string("caf\xc3\xa9 \xf0\x9f\x98\x80"), all}) {
        const std::string q = sft::detail::json_quote(s);
        CHECK(q.front() == '"');
        CHECK(parse_json(q).as_string() == s);
    }
    CHECK(sft::detail::json_quote("a\x01") == "\"a\\u0001\"");
}

TEST_CASE("json: seeded mutation fuzzing parses or throws sft::Error", "[json][fuzz]") {
    const std::string seed_text =
        "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"\\u00e9\\ud83d\\ude00\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],"
        "\"data_offsets\":[0,24]},\"x\":[true,false,null,-1.5e-3,0,12345678901234567890]}";
    REQUIRE(parse_json(seed_text).is_object());
    sft::Rng rng(7);
    const char interesting[] = "{}[]\":,0123456789-+.eE \\/bfnrtu\"ad\xc3\xff";
    std::size_t ok = 0, bad = 0;
    for (int it = 0; it < 30000; ++it) {
        std::string m = seed_text;
        const int edits = 1 + static_cast<int>(rng.randint(4));
        for (int k = 0; k < edits && !m.empty(); ++k) {
            const auto pos = static_cast<std::size_t>(rng.randint(m.size()));
            switch (rng.randint(5)) {
                case 0: m[pos] = interesting[rng.randint(sizeof interesting - 1)]; break;
                case 1: m[pos] = static_cast<char>(rng.randint(256)); break;
                case 2: m.erase(pos, 1 + static_cast<std::size_t>(rng.randint(8))); break;
                case 3: m.insert(pos, 1, interesting[rng.randint(sizeof interesting - 1)]); break;
                case 4: m.resize(pos); break;
            }
        }
        try {
            parse_json(m);
            ++ok;
        } catch (const sft::Error& e) {
            REQUIRE(e.kind() == sft::ErrorKind::format);
            REQUIRE(std::string(e.what()).find("at byte") != std::string::npos);
            ++bad;
        }
    }
    CHECK(ok > 500);
    CHECK(bad > 10000);
}
