/// @file fashion_mnist.hpp
/// load_fashion_mnist(): Zalando's Fashion-MNIST (28x28 grey images of 10 clothing classes,
/// 60,000 training and 10,000 test samples) from the IDX files that the Debian package
/// `dataset-fashion-mnist` installs in /usr/share/datasets/fashion-mnist/:
/// train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
/// t10k-labels-idx1-ubyte.gz (unzipped copies without ".gz" are read too).
#pragma once

#include <sft/data/dataset.hpp>
#include <sft/error.hpp>
#include <sft/io/idx.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>

namespace sft::data {

/// Where the Debian package dataset-fashion-mnist puts the files.
inline constexpr const char* fashion_mnist_default_dir = "/usr/share/datasets/fashion-mnist";

/// The class names, by label (0 "T-shirt/top" ... 9 "Ankle boot"), as the dataset's README lists them.
inline constexpr std::array<const char*, 10> fashion_mnist_classes = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

namespace detail {
inline bool file_exists(const std::string& path) noexcept {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f) std::fclose(f);
    return f != nullptr;
}

/// `dir/name.gz`, or `dir/name` when only the unzipped file is there. Throws sft::Error (kind io)
/// naming the file and the Debian package when neither exists.
inline std::string fashion_mnist_file(const std::string& dir, const std::string& name) {
    const std::string gz = dir + "/" + name + ".gz", raw = dir + "/" + name;
    if (file_exists(gz)) return gz;
    if (file_exists(raw)) return raw;
    throw Error(ErrorKind::io, fmt::format("load_fashion_mnist: '{}' not found; install the Debian package dataset-fashion-mnist "
                                           "(apt-get install dataset-fashion-mnist) or pass the folder that holds the files",
                                           gz));
}
}  // namespace detail

/// The "train" (60,000) or "test" (10,000) split of Fashion-MNIST from `dir`: images x
/// [N, 1, 28, 28] as T scaled to [0, 1] (pixel / 255, as torchvision's ToTensor) and labels y [N]
/// in 0..9. Throws sft::Error: kind invalid_argument for another split name; kind io when a file
/// is missing (naming it and the package dataset-fashion-mnist); kind format when the files do
/// not hold 28x28 images and matching labels 0..9; and what sft::io::load_idx throws.
template <class T>
TensorDataset<T> load_fashion_mnist(const std::string& split, const std::string& dir = fashion_mnist_default_dir) {
    static_assert(std::is_floating_point_v<T>, "load_fashion_mnist<T>: T must be float or double");
    if (split != "train" && split != "test")
        throw Error(ErrorKind::invalid_argument, fmt::format("load_fashion_mnist: split '{}' is not \"train\" or \"test\"", split));
    const std::string prefix = split == "train" ? "train" : "t10k";
    const std::string images_path = detail::fashion_mnist_file(dir, prefix + "-images-idx3-ubyte");
    const std::string labels_path = detail::fashion_mnist_file(dir, prefix + "-labels-idx1-ubyte");
    Tensor<T> images = io::load_idx<T>(images_path);
    Tensor<std::int64_t> labels = io::load_idx<std::int64_t>(labels_path);
    if (images.rank() != 3 || images.shape()[1] != 28 || images.shape()[2] != 28)
        throw Error(ErrorKind::format, fmt::format("load_fashion_mnist: '{}' holds {}, expected [N, 28, 28]", images_path, images.shape().str()));
    if (labels.rank() != 1 || labels.numel() != images.shape()[0])
        throw Error(ErrorKind::format, fmt::format("load_fashion_mnist: '{}' holds labels {} for images {} in '{}'", labels_path,
                                                   labels.shape().str(), images.shape().str(), images_path));
    for (std::size_t i = 0; i < labels.numel(); ++i)
        if (labels[i] < 0 || labels[i] > 9)
            throw Error(ErrorKind::format, fmt::format("load_fashion_mnist: '{}': label {} of sample {} is not in 0..9", labels_path, labels[i], i));
    const T scale = T(1) / T(255);
    for (T& v : images) v *= scale;
    const std::size_t n = images.shape()[0];
    return TensorDataset<T>(images.reshape(Shape{n, 1, 28, 28}), labels);
}

}  // namespace sft::data
