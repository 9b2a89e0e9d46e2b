#include <sft/io/safetensors.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

namespace {
std::string tmp_path(const std::string& name) { return std::string("/tmp/sft_io_test_") + name; }
}  // namespace

TEST_CASE("safetensors: float round trip keeps names, shapes, values and metadata", "[safetensors]") {
    std::map<std::string, sft::Tensor<float>> m;
    m["a.weight"] = sft::Tensor<float>({2, 3}, {1, -2, 3.5f, 4, 5, 6});
    m["b"] = sft::Tensor<float>(sft::Shape{}, 7.25f);
    const auto p = tmp_path("rt_float.safetensors");
    sft::io::save_safetensors(m, p, {{"format", "pt"}});
    auto f = sft::io::load_safetensors_with_metadata<float>(p);
    REQUIRE(f.tensors.size() == 2);
    CHECK(f.tensors["a.weight"].shape() == sft::Shape{2, 3});
    CHECK(f.tensors["a.weight"](1, 2) == 6.0f);
    CHECK(f.tensors["b"].rank() == 0);
    CHECK(f.tensors["b"][0] == 7.25f);
    CHECK(f.metadata.at("format") == "pt");
    std::remove(p.c_str());
}
