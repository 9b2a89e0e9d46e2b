// Fine-tuning a pretrained convolutional network on a few labelled images, three ways, on
// Fashion-MNIST.
//
// The network was pretrained by examples/pretrain_fashion_mnist.cpp on six classes (T-shirt/top,
// pullover, coat, sandal, sneaker, bag: the "source" classes {0, 2, 4, 5, 7, 8}) and arrives as a
// PyTorch user's would: a safetensors file with names such as "backbone.conv1.weight". Here it
// learns the four other classes (trouser, dress, shirt, ankle boot: the "target" classes
// {1, 3, 6, 9}) from K labelled images per class (default 20, 20% of them held out for validation,
// stratified), in three ways:
//   scratch    the same architecture, randomly initialised, all of it trained;
//   head_only  the pretrained backbone frozen, a new head trained;
//   full       the pretrained backbone and a new head, the backbone at a tenth of the head's
//              learning rate (two parameter groups).
// Each: AdamW lr 1e-3 weight decay 0.01, warm-up + cosine schedule (5% warm-up, over 100 epochs'
// worth of steps), batch 32, early stopping on the validation loss with patience 10, the best
// weights restored. Seeds 0, 1 and 2 each draw the K images, the initialisation and the batch
// order. The program reports the accuracy on all 4,000 target test images (mean, std, min, max
// over the seeds) and, to show forgetting, the source-task accuracy (6,000 source test images,
// with the pretrained head) of the backbone before and after full fine-tuning. It saves the
// fully fine-tuned model of the first seed (--out), loadable in PyTorch.
//
// Its last line is machine readable:
//   RESULT scratch=0.xxxx head_only=0.xxxx full=0.xxxx source_before=0.xxxx source_after=0.xxxx
// examples/finetune_fashion_mnist.py runs the same protocol in PyTorch and prints the same line.
//
// Usage: finetune_fashion_mnist [--pretrained pretrained.safetensors] [--out finetuned.safetensors]
//        [--data DIR] [--k 20] [--seeds 0,1,2] [--max-epochs 100] [--patience 10] [--threads N]
//        [--export-draws DIR]
#include <sft/sft.hpp>  // the whole API: layers, losses, optimizers, schedulers, data, Trainer, I/O
#include <sft/parallel.hpp>  // sft::set_num_threads

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using StateDict = std::map<std::string, sft::Tensor<float>>;

const std::vector<std::int64_t> source_classes{0, 2, 4, 5, 7, 8};
const std::vector<std::int64_t> target_classes{1, 3, 6, 9};

constexpr const char* usage_text =
    "usage: finetune_fashion_mnist [options]\n"
    "  --pretrained FILE  weights from pretrain_fashion_mnist (default pretrained.safetensors)\n"
    "  --out FILE         where the fully fine-tuned model of the first seed goes (default finetuned.safetensors)\n"
    "  --data DIR         folder of the Fashion-MNIST IDX .gz files (default /usr/share/datasets/fashion-mnist)\n"
    "  --k N              labelled images per target class, N >= 3 (default 20; 20% go to validation)\n"
    "  --seeds LIST       comma-separated seeds (default 0,1,2)\n"
    "  --max-epochs N     epochs at most, also the length of the cosine schedule (default 100)\n"
    "  --patience N       early-stopping patience in epochs (default 10)\n"
    "  --threads N        threads of sft's kernels (default: all the hardware's)\n"
    "  --export-draws DIR also write each seed's random draws (images, initial weights, batch order) to\n"
    "                     DIR/draws_seed<S>_{f32,i64}.safetensors, for finetune_fashion_mnist.py --replay DIR\n"
    "  -h, --help         this message\n";

/// A bad command line: main prints the message and the usage, and returns 2.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Args {
    std::string pretrained = "pretrained.safetensors";
    std::string out = "finetuned.safetensors";
    std::string data = "/usr/share/datasets/fashion-mnist";
    std::size_t k = 20;
    std::vector<std::uint64_t> seeds{0, 1, 2};
    std::size_t max_epochs = 100;
    std::size_t patience = 10;
    std::size_t threads = 0;  // 0: sft's default
    std::string export_draws;  // empty: none
    bool help = false;
};

/// A non-negative decimal integer, all of `text`, at least `min`.
std::uint64_t parse_count(const std::string& flag, const std::string& text, std::uint64_t min) {
    const bool digits = !text.empty() && text.size() <= 18 && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) throw UsageError(fmt::format("{}: '{}' is not a non-negative integer", flag, text));
    const std::uint64_t v = std::stoull(text);
    if (v < min) throw UsageError(fmt::format("{}: {} is below the minimum {}", flag, v, min));
    return v;
}

Args parse_args(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        std::string flag = argv[i], value;
        if (flag == "-h" || flag == "--help") {
            a.help = true;
            continue;
        }
        if (const auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = flag.substr(eq + 1);
            flag = flag.substr(0, eq);
        } else {
            const bool known = flag == "--pretrained" || flag == "--out" || flag == "--data" || flag == "--k" || flag == "--seeds" ||
                               flag == "--max-epochs" || flag == "--patience" || flag == "--threads" ||
                               flag == "--export-draws";
            if (!known) throw UsageError(fmt::format("unknown argument '{}'", flag));
            if (i + 1 >= argc) throw UsageError(fmt::format("{} needs a value", flag));
            value = argv[++i];
        }
        if (flag == "--pretrained") a.pretrained = value;
        else if (flag == "--out") a.out = value;
        else if (flag == "--data") a.data = value;
        else if (flag == "--k") a.k = parse_count(flag, value, 3);
        else if (flag == "--max-epochs") a.max_epochs = parse_count(flag, value, 1);
        else if (flag == "--patience") a.patience = parse_count(flag, value, 1);
        else if (flag == "--threads") a.threads = parse_count(flag, value, 1);
        else if (flag == "--export-draws") a.export_draws = value;
        else if (flag == "--seeds") {
            a.seeds.clear();
            std::size_t start = 0;
            while (true) {
                const std::size_t comma = value.find(',', start);
                a.seeds.push_back(parse_count(flag, value.substr(start, comma - start), 0));
                if (comma == std::string::npos) break;
                start = comma + 1;
            }
        } else throw UsageError(fmt::format("unknown argument '{}'", flag));
        if (value.empty()) throw UsageError(fmt::format("{} needs a value", flag));
    }
    return a;
}

/// The network as a PyTorch user writes it, with the same names:
///   nn.Sequential(OrderedDict(
///       backbone=nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 32, 3), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
///                                          conv2=nn.Conv2d(32, 64, 3), act2=nn.ReLU(), pool2=nn.MaxPool2d(2),
///                                          flatten=nn.Flatten(), fc1=nn.Linear(1600, 256), act3=nn.ReLU())),
///       head=nn.Linear(256, classes)))
/// [N, 1, 28, 28] -> [N, classes]. Initialised from sft::default_rng() (seed it with sft::manual_seed).
sft::nn::Sequential<float> make_model(std::size_t classes) {
    using namespace sft::nn;
    Sequential<float> backbone;
    backbone.add("conv1", Conv2d<float>(1, 32, 3));   // [N, 32, 26, 26]
    backbone.add("act1", ReLU<float>());
    backbone.add("pool1", MaxPool2d<float>(2));       // [N, 32, 13, 13]
    backbone.add("conv2", Conv2d<float>(32, 64, 3));  // [N, 64, 11, 11]
    backbone.add("act2", ReLU<float>());
    backbone.add("pool2", MaxPool2d<float>(2));       // [N, 64, 5, 5]
    backbone.add("flatten", Flatten<float>());        // [N, 1600]
    backbone.add("fc1", Linear<float>(1600, 256));
    backbone.add("act3", ReLU<float>());
    Sequential<float> model;
    model.add("backbone", std::move(backbone));
    model.add("head", Linear<float>(256, classes));
    return model;
}

/// Share of the samples of `data` whose argmax output is the label, in eval mode (the model's mode
/// is restored after), 1,000 at a time.
double accuracy(sft::nn::Module<float>& model, const sft::data::TensorDataset<float>& data) {
    const bool was_training = model.is_training();
    model.eval();
    std::size_t correct = 0;
    for (std::size_t start = 0; start < data.size(); start += 1000) {
        const std::size_t n = std::min<std::size_t>(1000, data.size() - start);
        const sft::Tensor<float> logits = model.forward(data.x().narrow(start, n));  // [n, classes]
        const std::size_t classes = logits.size(1);
        for (std::size_t i = 0; i < n; ++i) {
            const float* row = logits.data() + i * classes;
            const auto predicted = static_cast<std::int64_t>(std::max_element(row, row + classes) - row);
            correct += predicted == data.y()[start + i];
        }
    }
    model.train(was_training);
    return static_cast<double>(correct) / static_cast<double>(data.size());
}

/// Writes what `seed` draws, so that PyTorch can replay the same runs (finetune_fashion_mnist.py
/// --replay): the train and validation images and labels, the initial weights of the 4-class model
/// (what run() builds after manual_seed(seed)), and the batch order of every epoch (the Trainer
/// shuffles with a DataLoader seeded by FitOptions::seed, drawn here the same way).
void export_draws(const std::string& dir, std::uint64_t seed, const sft::data::Split<float>& split, std::size_t epochs) {
    std::map<std::string, sft::Tensor<float>> floats{{"train_x", split.train.x()}, {"val_x", split.val.x()}};
    sft::manual_seed(seed);
    sft::nn::Sequential<float> model = make_model(target_classes.size());
    for (const auto& [name, tensor] : model.state_dict()) floats.emplace("init." + name, tensor);
    sft::data::DataLoader<float> loader(split.train, sft::data::DataLoaderOptions().batch_size(32).shuffle(true).seed(seed));
    sft::Tensor<std::int64_t> order({epochs, split.train.size()});
    for (std::size_t e = 0; e < epochs; ++e) {
        loader.start_epoch();
        for (std::size_t i = 0; i < split.train.size(); ++i) order(e, i) = static_cast<std::int64_t>(loader.order()[i]);
    }
    const std::map<std::string, sft::Tensor<std::int64_t>> ints{{"train_y", split.train.y()}, {"val_y", split.val.y()}, {"order", order}};
    const std::string stem = fmt::format("{}/draws_seed{}", dir, seed);
    sft::io::save_safetensors(floats, stem + "_f32.safetensors", {{"seed", std::to_string(seed)}});
    sft::io::save_safetensors(ints, stem + "_i64.safetensors", {{"seed", std::to_string(seed)}});
}

enum class Way { scratch, head_only, full };
const char* way_name(Way w) { return w == Way::scratch ? "scratch" : w == Way::head_only ? "head_only" : "full"; }

struct RunResult {
    double test_accuracy = 0.0;
    std::size_t epochs = 0;
    std::size_t best_epoch = 0;
    double seconds = 0.0;
};

/// Trains a new 4-class model one way on `split` and measures it on `test`. The model is left in
/// `model` (its best weights, restored by early stopping).
RunResult run(Way way, std::uint64_t seed, const Args& args, const StateDict& pretrained, const sft::data::Split<float>& split,
              const sft::data::TensorDataset<float>& test, sft::nn::Sequential<float>& model) {
    const auto t0 = std::chrono::steady_clock::now();
    sft::manual_seed(seed);  // the new head's (or, from scratch, the whole model's) initialisation
    model = make_model(target_classes.size());

    std::vector<sft::optim::ParamGroup<float>> groups;
    if (way == Way::scratch) {
        groups.emplace_back(model.parameters());
    } else {
        // The pretrained backbone: every "backbone.*" tensor of the file (strict: a missing or
        // misshapen one throws, naming it). The pretrained 6-class head is not used: the new
        // head keeps its random initialisation.
        StateDict backbone_weights;
        for (const auto& [name, tensor] : pretrained)
            if (name.rfind("backbone.", 0) == 0) backbone_weights.emplace(name, tensor);
        model.at("backbone").load_state_dict(backbone_weights);
        if (way == Way::head_only) {
            model.freeze("backbone");  // no gradient, no update: backward stops at the head
            groups.emplace_back(model.parameters());  // AdamW skips the frozen ones
        } else {
            groups.push_back(sft::optim::ParamGroup<float>(model.at("backbone").parameters()).lr(1e-4));
            groups.push_back(sft::optim::ParamGroup<float>(model.at("head").parameters()));  // the default lr, 1e-3
        }
    }
    sft::optim::AdamW<float> opt(groups, sft::optim::AdamWOptions(1e-3).weight_decay(0.01));

    const std::size_t batch_size = 32;
    const std::size_t steps_per_epoch = (split.train.size() + batch_size - 1) / batch_size;
    const std::size_t total_steps = args.max_epochs * steps_per_epoch;
    sft::sched::WarmupCosine sched(opt, /*warmup_steps=*/total_steps / 20, total_steps);

    sft::loss::CrossEntropy<float> criterion;
    sft::train::Trainer<float> trainer(model, criterion, opt);
    trainer.set_scheduler(sched);
    sft::train::EarlyStopping stopping(sft::train::EarlyStoppingOptions("val_loss").patience(args.patience).restore_best(true));
    trainer.add_callback(stopping);
    const sft::train::History history =
        trainer.fit(split.train, split.val, sft::train::FitOptions().epochs(args.max_epochs).batch_size(batch_size).seed(seed).verbose(0));

    RunResult r;
    r.epochs = history.epochs();
    r.best_epoch = stopping.best_epoch();
    r.test_accuracy = accuracy(model, test);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

struct Summary {
    double mean = 0.0, std = 0.0, min = 0.0, max = 0.0;
};

/// Mean, sample standard deviation (n - 1, as torch.std), min and max.
Summary summarize(const std::vector<double>& v) {
    Summary s;
    if (v.empty()) return s;
    for (double x : v) s.mean += x;
    s.mean /= static_cast<double>(v.size());
    if (v.size() > 1) {
        for (double x : v) s.std += (x - s.mean) * (x - s.mean);
        s.std = std::sqrt(s.std / static_cast<double>(v.size() - 1));
    }
    s.min = *std::min_element(v.begin(), v.end());
    s.max = *std::max_element(v.begin(), v.end());
    return s;
}

int finetune(const Args& args) {
    const auto t_start = std::chrono::steady_clock::now();
    if (args.threads) sft::set_num_threads(args.threads);  // as torch.set_num_threads; results do not depend on it
    if (!std::filesystem::exists(args.pretrained)) {
        std::fprintf(stderr,
                     "finetune_fashion_mnist: pretrained weights '%s' not found.\n"
                     "Run the pretraining example first:\n"
                     "  ./examples/pretrain_fashion_mnist --out %s\n"
                     "(or bash examples/run.sh, which does both), then pass --pretrained %s.\n",
                     args.pretrained.c_str(), args.pretrained.c_str(), args.pretrained.c_str());
        return 1;
    }
    // The file as PyTorch's safetensors.torch.save_file writes it; F16/BF16/F64 convert on load.
    const StateDict pretrained = sft::io::load_safetensors<float>(args.pretrained);

    // The data: pixels scaled to [0, 1], [N, 1, 28, 28]; labels remapped to 0..k-1 in the order
    // of the class lists.
    const auto train = sft::data::load_fashion_mnist<float>("train", args.data);  // 60,000 images
    const auto test = sft::data::load_fashion_mnist<float>("test", args.data);    // 10,000
    const auto target_train = sft::data::select_classes(train, target_classes);   // 24,000
    const auto target_test = sft::data::select_classes(test, target_classes);     // 4,000
    const auto source_test = sft::data::select_classes(test, source_classes);     // 6,000

    // The pretrained model, whole (backbone and its 6-class head), for the source-task accuracy.
    sft::nn::Sequential<float> source_model = make_model(source_classes.size());
    source_model.load_state_dict(pretrained);
    const double source_before = accuracy(source_model, source_test);
    fmt::print("pretrained model '{}': source-task test accuracy {:.4f} ({} images, classes 0 2 4 5 7 8); {} threads\n",
               args.pretrained, source_before, source_test.size(), sft::get_num_threads());

    const Way ways[] = {Way::scratch, Way::head_only, Way::full};
    std::map<Way, std::vector<double>> results;
    std::vector<double> source_after;
    std::size_t n_train = 0, n_val = 0;
    for (std::uint64_t seed : args.seeds) {
        // K images per class drawn with the seed, then 20% of each class held out for validation.
        const auto few = sft::data::take_per_class(target_train, args.k, seed);
        const sft::data::Split<float> split = sft::data::train_val_split(few, 0.2, seed, /*stratified=*/true);
        n_train = split.train.size();
        n_val = split.val.size();
        if (!args.export_draws.empty()) export_draws(args.export_draws, seed, split, args.max_epochs);
        for (Way way : ways) {
            sft::nn::Sequential<float> model;
            const RunResult r = run(way, seed, args, pretrained, split, target_test, model);
            results[way].push_back(r.test_accuracy);
            std::string line = fmt::format("seed {} {:<9}: {:3} epochs (best {:3}), target test accuracy {:.4f}", seed, way_name(way),
                                           r.epochs, r.best_epoch, r.test_accuracy);
            if (way == Way::full) {
                // Forgetting: the fine-tuned backbone under the pretrained 6-class head.
                source_model.load_state_dict(pretrained);
                source_model.at("backbone").load_state_dict(model.at("backbone").state_dict());
                source_after.push_back(accuracy(source_model, source_test));
                line += fmt::format(", source accuracy with the old head {:.4f}", source_after.back());
                if (seed == args.seeds.front()) {
                    sft::io::save_safetensors(model.state_dict(), args.out,
                                              {{"format", "pt"},
                                               {"method", "full fine-tuning"},
                                               {"seed", std::to_string(seed)},
                                               {"k", std::to_string(args.k)},
                                               {"classes", "1,3,6,9"},
                                               {"test_accuracy", fmt::format("{:.4f}", r.test_accuracy)}});
                }
            }
            fmt::print("{} ({:.1f} s)\n", line, r.seconds);
            std::fflush(stdout);
        }
    }

    fmt::print("\nK = {} images per target class ({} train + {} validation), seeds {}, test on {} target images\n", args.k, n_train,
               n_val, fmt::join(args.seeds, ","), target_test.size());
    fmt::print("{:<10} {:>7} {:>7} {:>7} {:>7}\n", "method", "mean", "std", "min", "max");
    std::map<Way, Summary> s;
    for (Way way : ways) {
        s[way] = summarize(results[way]);
        fmt::print("{:<10} {:7.4f} {:7.4f} {:7.4f} {:7.4f}\n", way_name(way), s[way].mean, s[way].std, s[way].min, s[way].max);
    }
    const Summary after = summarize(source_after);
    fmt::print("source accuracy ({} images, old head): before {:.4f}, after full fine-tuning {:.4f} (min {:.4f}, max {:.4f})\n",
               source_test.size(), source_before, after.mean, after.min, after.max);
    fmt::print("saved the fully fine-tuned model of seed {} to {}\n", args.seeds.front(), args.out);
    fmt::print("total time {:.1f} s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
    fmt::print("RESULT scratch={:.4f} head_only={:.4f} full={:.4f} source_before={:.4f} source_after={:.4f}\n", s[Way::scratch].mean,
               s[Way::head_only].mean, s[Way::full].mean, source_before, after.mean);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    try {
        args = parse_args(argc, argv);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "finetune_fashion_mnist: %s\n%s", e.what(), usage_text);
        return 2;
    }
    if (args.help) {
        std::fputs(usage_text, stdout);
        return 0;
    }
    try {
        return finetune(args);
    } catch (const sft::Error& e) {
        std::fprintf(stderr, "finetune_fashion_mnist: %s\n", e.what());
        return 1;
    }
}
