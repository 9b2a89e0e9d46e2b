// Optimizer state to and from safetensors: keys, exact scalars, a resumed run bit-identical to an
// uninterrupted one for every optimizer configuration, and strict errors on bad state dicts.
#include <sft/io/safetensors.hpp>
#include <sft/optim/optimizer.hpp>

#include "optim/support.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

using sft::Tensor;
using sft::nn::Parameter;

namespace {

// The quadratic-plus-noise problem of the reference fixture, seeded here (no file needed).
struct Problem {
    Tensor<double> init = Tensor<double>::empty({23}), a = Tensor<double>::empty({23}), noise = Tensor<double>::empty({40, 23});
    Problem() {
        sft::Rng rng(17);
        for (auto& v : init) v = rng.normal();
        for (auto& v : a) v = rng.uniform(0.5, 2.0);
        for (auto& v : noise) v = rng.normal(0.0, 0.5);
    }
    template <class T>
    void step(optim_test::RawParams<T>& raw, sft::optim::Optimizer<T>& opt, std::size_t t) const {
        opt.zero_grad();
        raw.set_grads(a, noise.narrow(t, 1).reshape({23}));
        opt.step();
    }
};

std::string temp_file(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("sft_optim_test_" + name + ".safetensors")).string();
}

}  // namespace

TEST_CASE("Optimizer state_dict: keys by parameter name, frozen parameters absent", "[optim][state_dict]") {
    const Problem pb;
    optim_test::RawParams<float> raw(pb.init);
    auto opt = optim_test::make_optimizer<float>("adamw_amsgrad", raw);
    auto before = opt->state_dict();  // no step yet: groups and the step count only
    CHECK(before.size() == 1 + 2 * 3);
    CHECK(before.count("steps_taken") == 1);
    CHECK(before.count("param_groups.1.lr") == 1);
    pb.step(raw, *opt, 0);
    pb.step(raw, *opt, 1);
    auto s = opt->state_dict();
    for (const char* p : {"w", "b", "c"})
        for (const char* k : {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"}) CHECK(s.count(std::string(p) + "." + k) == 1);
    CHECK(s.count("frozen.exp_avg") == 0);
    CHECK(s.at("w.exp_avg").shape() == sft::Shape{3, 4});
    CHECK(sft::optim::detail::decode_scalar(s.at("w.step")) == 2.0);
    CHECK(sft::optim::detail::decode_scalar(s.at("steps_taken")) == 2.0);
    CHECK(sft::optim::detail::decode_scalar(s.at("param_groups.1.lr")) == 5e-3);
    CHECK(sft::optim::detail::decode_scalar(s.at("param_groups.0.weight_decay")) == 0.1);
    // Copies: changing them does not change the optimizer.
    s.at("w.exp_avg").fill_(123.0f);
    CHECK(opt->state_dict().at("w.exp_avg")[0] != 123.0f);

    optim_test::RawParams<float> raw_sgd(pb.init);
    auto sgd = optim_test::make_optimizer<float>("sgd", raw_sgd);
    pb.step(raw_sgd, *sgd, 0);
    CHECK(sgd->state_dict().size() == 1 + 2 * 3);  // plain SGD has no per-parameter state
}

TEST_CASE("Optimizer state_dict: doubles survive float storage exactly", "[optim][state_dict]") {
    for (double x : {0.0, 1e-3, 0.1, 3e-5, 2.0 / 3.0, 123456789.0, 1e-300 * 1e280, 16777217.0}) {
        CHECK(sft::optim::detail::decode_scalar(sft::optim::detail::encode_scalar<float>(x)) == x);
        CHECK(sft::optim::detail::decode_scalar(sft::optim::detail::encode_scalar<double>(x)) == x);
    }
}

TEST_CASE("Optimizer resume through safetensors is bit-identical to an uninterrupted run", "[optim][state_dict][io]") {
    const Problem pb;
    const std::size_t total = 30, cut = 11;
    for (const char* name : optim_test::config_names) {
        INFO(name);
        // Uninterrupted, with a scheduler-like lr change before the cut.
        optim_test::RawParams<float> ref(pb.init);
        auto ref_opt = optim_test::make_optimizer<float>(name, ref);
        for (std::size_t t = 0; t < total; ++t) {
            if (t == 5) ref_opt->set_group_lr(1, ref_opt->group_lr(1) * 0.37);
            pb.step(ref, *ref_opt, t);
        }

        // Interrupted at `cut`: parameters and optimizer state to files, then a fresh optimizer.
        optim_test::RawParams<float> first(pb.init);
        auto opt1 = optim_test::make_optimizer<float>(name, first);
        for (std::size_t t = 0; t < cut; ++t) {
            if (t == 5) opt1->set_group_lr(1, opt1->group_lr(1) * 0.37);
            pb.step(first, *opt1, t);
        }
        std::map<std::string, Tensor<float>> params;
        for (const auto& p : first.params) params.emplace(p->name(), p->value());
        const std::string pfile = temp_file(std::string(name) + "_params"), ofile = temp_file(std::string(name) + "_optim");
        sft::io::save_safetensors(params, pfile);
        sft::io::save_safetensors(opt1->state_dict(), ofile);

        optim_test::RawParams<float> second(pb.init);  // built from the initial values, then loaded
        auto opt2 = optim_test::make_optimizer<float>(name, second);
        const auto loaded = sft::io::load_safetensors<float>(pfile);
        for (auto& p : second.params) p->value().copy_(loaded.at(p->name()));
        opt2->load_state_dict(sft::io::load_safetensors<float>(ofile));
        CHECK(opt2->steps_taken() == cut);
        CHECK(opt2->group_lr(1) == opt1->group_lr(1));
        for (std::size_t t = cut; t < total; ++t) pb.step(second, *opt2, t);

        const auto a = ref.flat(), b = second.flat();
        std::size_t differing = 0;
        for (std::size_t i = 0; i < a.size(); ++i) differing += a[i] != b[i];
        CHECK(differing == 0);
        CHECK(opt2->steps_taken() == total);
        std::remove(pfile.c_str());
        std::remove(ofile.c_str());
    }
}

TEST_CASE("Optimizer load_state_dict: missing, unexpected and mismatched keys throw naming them", "[optim][state_dict]") {
    const Problem pb;
    optim_test::RawParams<float> raw(pb.init);
    auto opt = optim_test::make_optimizer<float>("adamw", raw);
    for (std::size_t t = 0; t < 3; ++t) pb.step(raw, *opt, t);
    const auto good = opt->state_dict();

    optim_test::RawParams<float> raw2(pb.init);
    auto fresh = optim_test::make_optimizer<float>("adamw", raw2);
    auto expect_key_error = [&](const std::map<std::string, Tensor<float>>& s, const std::string& needle, sft::ErrorKind kind) {
        try {
            fresh->load_state_dict(s);
            FAIL("no throw, expected " << needle);
        } catch (const sft::Error& e) {
            INFO(e.what());
            CHECK(e.kind() == kind);
            CHECK_THAT(e.what(), Catch::Contains(needle) && Catch::Contains("AdamW load_state_dict"));
        }
        CHECK(fresh->steps_taken() == 0);  // nothing modified
        CHECK(fresh->state_dict().size() == 7);
    };
    auto s = good;
    s.erase("w.exp_avg");
    expect_key_error(s, "missing keys 'w.exp_avg'", sft::ErrorKind::key);
    s = good;
    for (const char* k : {"b.exp_avg", "b.exp_avg_sq", "b.step"}) s.erase(k);  // all the state of a trainable parameter
    expect_key_error(s, "'b.exp_avg', 'b.exp_avg_sq', 'b.step'", sft::ErrorKind::key);
    s = good;
    s.emplace("frozen.exp_avg_sqq", Tensor<float>({2}));
    expect_key_error(s, "unexpected keys 'frozen.exp_avg_sqq'", sft::ErrorKind::key);
    s = good;
    s.erase("param_groups.1.lr");
    expect_key_error(s, "'param_groups.1.lr'", sft::ErrorKind::key);
    s = good;
    s["c.exp_avg_sq"] = Tensor<float>({6});
    expect_key_error(s, "key 'c.exp_avg_sq' has shape [6], parameter 'c' has shape [5]", sft::ErrorKind::shape);
    s = good;
    s["steps_taken"] = sft::optim::detail::encode_scalar<float>(2.5);
    expect_key_error(s, "'steps_taken' holds 2.5", sft::ErrorKind::format);
    s = good;
    s["param_groups.0.lr"] = Tensor<float>({4});
    expect_key_error(s, "'param_groups.0.lr' has shape [4], expected [3]", sft::ErrorKind::shape);

    // The state of another optimizer kind does not fit either.
    optim_test::RawParams<float> raw3(pb.init);
    auto sgd = optim_test::make_optimizer<float>("sgd_momentum", raw3);
    pb.step(raw3, *sgd, 0);
    expect_key_error(sgd->state_dict(), "unexpected keys 'b.momentum_buffer'", sft::ErrorKind::key);

    // Two parameters with one name cannot be told apart in a state dict.
    Parameter<float> p1("weight", Tensor<float>({2})), p2("weight", Tensor<float>({2}));
    sft::optim::AdamW<float> dup({&p1, &p2});
    CHECK_THROWS_WITH(dup.state_dict(), Catch::Contains("two parameters are named 'weight'"));

    fresh->load_state_dict(good);  // and the good one loads
    CHECK(fresh->steps_taken() == 3);
}

TEST_CASE("Optimizer state_dict: a float optimizer's state loads into a double one", "[optim][state_dict]") {
    const Problem pb;
    optim_test::RawParams<float> rf(pb.init);
    auto f = optim_test::make_optimizer<float>("adam_wd_amsgrad", rf);
    for (std::size_t t = 0; t < 4; ++t) pb.step(rf, *f, t);
    f->set_group_lr(0, 1e-3 / 3.0);
    std::map<std::string, Tensor<double>> as_double;
    for (const auto& kv : f->state_dict()) as_double.emplace(kv.first, kv.second.to<double>());
    optim_test::RawParams<double> rd(pb.init);
    auto d = optim_test::make_optimizer<double>("adam_wd_amsgrad", rd);
    d->load_state_dict(as_double);
    CHECK(d->steps_taken() == 4);
    CHECK(d->group_lr(0) == 1e-3 / 3.0);  // exact, through the float parts
    CHECK(d->state_dict().at("w.exp_avg")[5] == static_cast<double>(f->state_dict().at("w.exp_avg")[5]));
}
