// History (best, values, last, errors), the monitor rules (mode inference, Keras' improvement
// test) and JsonlLog (one parseable object per line, null for non-finite numbers).
#include <sft/train/history.hpp>
#include <sft/train/jsonl_log.hpp>
#include <sft/train/monitor.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

using sft::train::Mode;

namespace {
sft::train::History three_epochs() {
    sft::train::History h;
    const double val_loss[] = {0.9, 0.7, 0.8}, val_acc[] = {0.6, 0.75, 0.75};
    for (std::size_t e = 0; e < 3; ++e) {
        sft::train::Record r{e + 1, 10 * (e + 1), {{"loss", 1.0 - 0.1 * static_cast<double>(e)}, {"val_loss", val_loss[e]}, {"val_accuracy", val_acc[e]}}};
        h.add_eval(r);
        h.add_epoch(r);
    }
    return h;
}
}  // namespace

TEST_CASE("History::best picks min for losses, max for accuracies, the earliest among equals", "[train][history]") {
    auto h = three_epochs();
    CHECK(h.epochs() == 3);
    CHECK(h.best("val_loss") == 0.7);
    CHECK(h.best_record("val_loss").epoch == 2);
    CHECK(h.best("val_accuracy") == 0.75);
    CHECK(h.best_record("val_accuracy").epoch == 2);
    CHECK(h.best("val_loss", Mode::max) == 0.9);
    CHECK(h.values("loss") == std::vector<double>{1.0, 0.9, 0.8});
    CHECK(h.last("val_loss") == 0.8);
}

TEST_CASE("History: NaN values are skipped, unknown metrics and modes throw naming them", "[train][history]") {
    auto h = three_epochs();
    h.add_eval(sft::train::Record{4, 40, {{"val_loss", std::nan("")}, {"f1", 0.3}}});
    CHECK(h.best("val_loss") == 0.7);
    CHECK_THROWS_WITH(h.best("val_los"), Catch::Contains("'val_los'") && Catch::Contains("'val_loss'"));
    CHECK_THROWS_WITH(h.best("f1"), Catch::Contains("'f1'") && Catch::Contains("Mode::"));
    CHECK(h.best("f1", Mode::max) == 0.3);
    CHECK_THROWS_AS(h.values("f1"), sft::Error);  // only in an evaluation record, not per epoch
    sft::train::History only_nan;
    only_nan.add_epoch(sft::train::Record{1, 1, {{"loss", std::nan("")}}});
    CHECK_THROWS_WITH(only_nan.best("loss"), Catch::Contains("NaN"));
}

TEST_CASE("Mode inference and Keras' improvement rule", "[train][monitor]") {
    CHECK(sft::train::resolve_mode("val_loss", Mode::inferred, "x") == Mode::min);
    CHECK(sft::train::resolve_mode("val_accuracy", Mode::inferred, "x") == Mode::max);
    CHECK(sft::train::resolve_mode("acc_loss", Mode::inferred, "x") == Mode::max);  // "acc" is looked for first, as Keras
    CHECK(sft::train::resolve_mode("f1", Mode::min, "x") == Mode::min);
    CHECK_THROWS_WITH(sft::train::resolve_mode("f1", Mode::inferred, "Caller"), Catch::Contains("Caller") && Catch::Contains("'f1'"));
    using sft::train::is_improvement;
    CHECK(is_improvement(0.5, 0.6, Mode::min));
    CHECK_FALSE(is_improvement(0.6, 0.6, Mode::min));
    CHECK_FALSE(is_improvement(0.55, 0.6, Mode::min, 0.1));
    CHECK(is_improvement(0.45, 0.6, Mode::min, 0.1));
    CHECK(is_improvement(0.8, 0.6, Mode::max, 0.1));
    CHECK_FALSE(is_improvement(0.65, 0.6, Mode::max, 0.1));
    CHECK_FALSE(is_improvement(std::nan(""), 0.6, Mode::min));
    CHECK_FALSE(is_improvement(std::nan(""), 0.6, Mode::max));
}

TEST_CASE("JsonlLog writes one parseable object per line, null for non-finite numbers", "[train][jsonl]") {
    const std::string path = "/tmp/sft_train_test_jsonl_log.jsonl";
    {
        sft::train::JsonlLog log(path);
        REQUIRE(log.is_open());
        log.write("step", {{"step", 1}}, {{"loss", 0.1}, {"lr", 1e-5}, {"bad", std::nan("")}, {"big", HUGE_VAL}});
        log.write("note", {}, {}, {{"message", "a \"quoted\"\nline"}});
    }
    std::ifstream in(path);
    std::string line;
    std::vector<nlohmann::json> rows;
    while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].at("event") == "step");
    CHECK(rows[0].at("step") == 1);
    CHECK(rows[0].at("loss").get<double>() == 0.1);
    CHECK(rows[0].at("lr").get<double>() == 1e-5);
    CHECK(rows[0].at("bad").is_null());
    CHECK(rows[0].at("big").is_null());
    CHECK(rows[1].at("message") == "a \"quoted\"\nline");
    sft::train::JsonlLog closed;
    CHECK_FALSE(closed.is_open());
    closed.write("x", {}, {});  // no-op
    CHECK_THROWS_WITH(sft::train::JsonlLog("/nonexistent/dir/x.jsonl"), Catch::Contains("/nonexistent/dir/x.jsonl"));
}
