// Pretrains the convolutional network of the fine-tuning example on six Fashion-MNIST classes and
// saves it as a PyTorch user's pretrained model would arrive: a safetensors file whose names and
// layouts are PyTorch's ("backbone.conv1.weight" [32, 1, 3, 3], ..., "head.weight" [6, 256]).
//
// The six "source" classes are {0, 2, 4, 5, 7, 8} (T-shirt/top, pullover, coat, sandal, sneaker,
// bag): 36,000 training images. 2 epochs of AdamW (lr 1e-3, weight decay 0.01) in batches of 128.
// It prints the progress and the accuracy on the 6,000 source test images, then writes --out.
// examples/finetune_fashion_mnist.cpp then learns the four other classes from a few images.
//
// Usage: pretrain_fashion_mnist [--out pretrained.safetensors] [--data DIR] [--epochs 2] [--seed 0] [--threads N]
#include <sft/sft.hpp>  // the whole API: layers, losses, optimizers, schedulers, data, Trainer, I/O
#include <sft/parallel.hpp>  // sft::set_num_threads

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

const std::vector<std::int64_t> source_classes{0, 2, 4, 5, 7, 8};

constexpr const char* usage_text =
    "usage: pretrain_fashion_mnist [options]\n"
    "  --out FILE    where the pretrained weights go (default pretrained.safetensors)\n"
    "  --data DIR    folder of the Fashion-MNIST IDX .gz files (default /usr/share/datasets/fashion-mnist)\n"
    "  --epochs N    passes over the 36,000 source images (default 2)\n"
    "  --seed N      seed of the initialisation and of the batch order (default 0)\n"
    "  --threads N   threads of sft's kernels (default: all the hardware's)\n"
    "  -h, --help    this message\n";

/// A bad command line: main prints the message and the usage, and returns 2.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Args {
    std::string out = "pretrained.safetensors";
    std::string data = "/usr/share/datasets/fashion-mnist";
    std::size_t epochs = 2;
    std::uint64_t seed = 0;
    std::size_t threads = 0;  // 0: sft's default
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
            if (flag != "--out" && flag != "--data" && flag != "--epochs" && flag != "--seed" && flag != "--threads")
                throw UsageError(fmt::format("unknown argument '{}'", flag));
            if (i + 1 >= argc) throw UsageError(fmt::format("{} needs a value", flag));
            value = argv[++i];
        }
        if (value.empty()) throw UsageError(fmt::format("{} needs a value", flag));
        if (flag == "--out") a.out = value;
        else if (flag == "--data") a.data = value;
        else if (flag == "--epochs") a.epochs = parse_count(flag, value, 1);
        else if (flag == "--seed") a.seed = parse_count(flag, value, 0);
        else if (flag == "--threads") a.threads = parse_count(flag, value, 1);
        else throw UsageError(fmt::format("unknown argument '{}'", flag));
    }
    return a;
}

/// The network as a PyTorch user writes it (see examples/finetune_fashion_mnist.cpp, which builds
/// the same one to load this file): [N, 1, 28, 28] -> [N, classes].
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

int pretrain(const Args& args) {
    const auto t0 = std::chrono::steady_clock::now();
    if (args.threads) sft::set_num_threads(args.threads);  // as torch.set_num_threads; results do not depend on it
    // Pixels scaled to [0, 1], [N, 1, 28, 28]; labels remapped 0 2 4 5 7 8 -> 0..5.
    const auto train = sft::data::select_classes(sft::data::load_fashion_mnist<float>("train", args.data), source_classes);
    const auto test = sft::data::select_classes(sft::data::load_fashion_mnist<float>("test", args.data), source_classes);
    fmt::print("source classes 0 2 4 5 7 8: {} training images, {} test images; {} threads\n", train.size(), test.size(),
               sft::get_num_threads());

    sft::manual_seed(args.seed);
    sft::nn::Sequential<float> model = make_model(source_classes.size());
    sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-3).weight_decay(0.01));
    sft::loss::CrossEntropy<float> criterion;
    sft::train::Trainer<float> trainer(model, criterion, opt);
    // verbose 1: a progress bar on a terminal, periodic lines otherwise (on stderr).
    const sft::train::History history =
        trainer.fit(train, sft::train::FitOptions().epochs(args.epochs).batch_size(128).seed(args.seed).verbose(1));
    const auto losses = history.values("loss");
    const auto accuracies = history.values("accuracy");
    for (std::size_t e = 0; e < losses.size(); ++e)
        fmt::print("epoch {}: train loss {:.4f}, train accuracy {:.4f}\n", e + 1, losses[e], accuracies[e]);

    const std::map<std::string, double> metrics = trainer.evaluate(test, 1000);
    const double test_accuracy = metrics.at("accuracy");
    fmt::print("source test accuracy {:.4f}, test loss {:.4f}\n", test_accuracy, metrics.at("loss"));

    // "format": "pt" is what safetensors.torch.save_file writes; transformers checks it.
    sft::io::save_safetensors(model.state_dict(), args.out,
                              {{"format", "pt"},
                               {"classes", "0,2,4,5,7,8"},
                               {"epochs", std::to_string(args.epochs)},
                               {"test_accuracy", fmt::format("{:.4f}", test_accuracy)}});
    fmt::print("saved {} tensors to {} ({:.1f} s)\n", model.state_dict().size(), args.out,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    try {
        args = parse_args(argc, argv);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "pretrain_fashion_mnist: %s\n%s", e.what(), usage_text);
        return 2;
    }
    if (args.help) {
        std::fputs(usage_text, stdout);
        return 0;
    }
    try {
        return pretrain(args);
    } catch (const sft::Error& e) {
        std::fprintf(stderr, "pretrain_fashion_mnist: %s\n", e.what());
        return 1;
    }
}
