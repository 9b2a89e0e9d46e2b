/// @file sequential.hpp
/// sft::nn::Sequential: named children applied in order, as torch.nn.Sequential(OrderedDict(...)).
#pragma once

#include <sft/nn/activation.hpp>
#include <sft/nn/conv2d.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/module.hpp>

#include <memory>
#include <type_traits>
#include <typeinfo>

namespace sft::nn {

/// A chain of named modules. Parameter names are dotted paths ("backbone.conv1.weight");
/// backward stops below the lowest child that has a trainable parameter.
///
/// Fusion: a Linear immediately followed by a ReLU (exactly these types) runs as one GEMM whose
/// epilogue adds the bias and applies the ReLU (Linear::forward_act), and backward computes
/// dz = dy * (y > 0) and the bias gradient in one pass (ReLU::backward_bias) before the two GEMMs
/// of the Linear. A Conv2d immediately followed by a ReLU applies the ReLU where it adds the bias
/// to each task's GEMM result, in cache (Conv2d::forward_act), and in backward each of the conv's
/// tasks masks its part of the gradient as it gathers it (Conv2d::backward_relu), instead of
/// passes of their own over the whole tensors. The children stay as they are (names,
/// parameters, state_dict, errors); the ReLU still caches its output, and the results equal the
/// unfused ones bit for bit where the arithmetic is the same. set_fusion(false) runs every child
/// on its own.
template <class T>
class Sequential : public Module<T> {
public:
    Sequential() = default;

    /// Appends `module` (moved in) under `name`. Throws sft::Error on an empty, dotted or repeated name.
    template <class M, class = std::enable_if_t<std::is_base_of_v<Module<T>, std::decay_t<M>> && !std::is_lvalue_reference_v<M>>>
    Sequential& add(const std::string& name, M&& module) {
        return add(name, std::unique_ptr<Module<T>>(new std::decay_t<M>(std::move(module))));
    }

    /// Appends an owned module under `name`. Throws sft::Error on an empty, dotted or repeated name.
    Sequential& add(const std::string& name, std::unique_ptr<Module<T>> module) {
        if (name.empty() || name.find('.') != std::string::npos)
            throw Error(ErrorKind::key, fmt::format("{}: child name '{}' must be non-empty and have no '.'", this->label(), name));
        for (auto& c : children_)
            if (c.first == name) throw Error(ErrorKind::key, fmt::format("{}: a child is already named '{}'", this->label(), name));
        if (!module) throw Error(ErrorKind::invalid_argument, fmt::format("{}: child '{}' is null", this->label(), name));
        module->set_name(full(name));
        module->train(this->training_);
        children_.emplace_back(name, std::move(module));
        return *this;
    }

    std::string type_name() const override { return "Sequential"; }
    std::size_t size() const noexcept { return children_.size(); }
    /// Child i in order.
    Module<T>& operator[](std::size_t i) { return *children_.at(i).second; }
    /// The child named `name`. Throws sft::Error (kind key) if there is none.
    Module<T>& at(const std::string& name) {
        for (auto& c : children_)
            if (c.first == name) return *c.second;
        throw Error(ErrorKind::key, fmt::format("{}: no child named '{}'", this->label(), name));
    }
    /// The name of child i.
    const std::string& child_name(std::size_t i) const { return children_.at(i).first; }

    /// Whether Linear + ReLU and Conv2d + ReLU pairs run fused (on by default; see the class comment).
    void set_fusion(bool on) noexcept { fusion_ = on; }
    /// True when Linear + ReLU and Conv2d + ReLU pairs run fused.
    bool fusion() const noexcept { return fusion_; }

    /// The children applied in order. What the children saved at the last forward is released
    /// first, so that their kept buffers are free for reuse (see Module). Throws what a child throws.
    Tensor<T> forward(const Tensor<T>& input) override {
        release_saved();
        Tensor<T> x = input;
        for (std::size_t i = 0; i < children_.size(); ++i) {
            if (fused_pair(i)) {
                x = forward_fused<Linear<T>>(i, x);
                ++i;
                continue;
            }
            if (fused_conv_pair(i)) {
                x = forward_fused<Conv2d<T>>(i, x);
                ++i;
                continue;
            }
            x = children_[i].second->forward(x);
        }
        forwarded_ = true;
        return x;
    }

    void release_saved() noexcept override {
        for (auto& c : children_) c.second->release_saved();
    }

    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        if (!forwarded_) this->throw_no_forward();
        // Without a need for the input gradient, children below the lowest one with a trainable
        // parameter are skipped, and that one computes no input gradient.
        std::size_t lowest = 0;
        if (!need_input_grad) {
            lowest = children_.size();
            for (std::size_t i = 0; i < children_.size(); ++i)
                if (children_[i].second->has_trainable()) {
                    lowest = i;
                    break;
                }
        }
        Tensor<T> g = grad_output;
        for (std::size_t i = children_.size(); i-- > lowest;) {
            if (i > lowest && fused_pair(i - 1)) {  // ReLU i after Linear i - 1, both above the stop
                auto& linear = static_cast<Linear<T>&>(*children_[i - 1].second);
                auto& relu = static_cast<ReLU<T>&>(*children_[i].second);
                const Tensor<T> dz = relu.backward_bias(g, linear.trainable_bias_grad());
                --i;
                g = linear.backward_without_bias(dz, need_input_grad || i > lowest);
                continue;
            }
            if (i > lowest && fused_conv_pair(i - 1)) {  // ReLU i after Conv2d i - 1: the mask applied by the conv's tasks
                auto& conv = static_cast<Conv2d<T>&>(*children_[i - 1].second);
                auto& relu = static_cast<ReLU<T>&>(*children_[i].second);
                const Tensor<T> y = relu.take_saved_output(g);
                --i;
                g = conv.backward_relu(g, y, need_input_grad || i > lowest);
                continue;
            }
            g = children_[i].second->backward(g, need_input_grad || i > lowest);
        }
        // Children below the stop keep nothing alive that a later forward could reuse.
        for (std::size_t i = 0; i < lowest; ++i) children_[i].second->release_saved();
        return need_input_grad ? g : Tensor<T>();
    }

    void train(bool on = true) override {
        Module<T>::train(on);
        for (auto& c : children_) c.second->train(on);
    }

    void set_name(const std::string& name) override {
        Module<T>::set_name(name);
        for (auto& c : children_) c.second->set_name(full(c.first));
    }

    bool has_trainable() const noexcept override {
        if (Module<T>::has_trainable()) return true;
        for (const auto& c : children_)
            if (c.second->has_trainable()) return true;
        return false;
    }
    void collect_parameters(std::vector<Parameter<T>*>& out) override {
        Module<T>::collect_parameters(out);
        for (auto& c : children_) c.second->collect_parameters(out);
    }
    void collect_buffers(std::vector<Buffer<T>*>& out) override {
        Module<T>::collect_buffers(out);
        for (auto& c : children_) c.second->collect_buffers(out);
    }

private:
    /// Children i (an L: Linear or Conv2d) and i + 1 (a ReLU) as one: L writes relu(L(x)) into the
    /// ReLU's output buffer, and the ReLU keeps it as what its backward needs.
    template <class L>
    Tensor<T> forward_fused(std::size_t i, const Tensor<T>& x) {
        auto& layer = static_cast<L&>(*children_[i].second);
        auto& relu = static_cast<ReLU<T>&>(*children_[i + 1].second);
        Tensor<T> y = layer.forward_act(x, kernels::GemmActivation::relu, relu.fused_output_buffer());
        relu.set_fused_output(y);
        return y;
    }

    bool fused_pair(std::size_t i) const noexcept { return pair_of<Linear<T>>(i); }
    bool fused_conv_pair(std::size_t i) const noexcept { return pair_of<Conv2d<T>>(i); }
    /// Child i is exactly an L and child i + 1 exactly a ReLU, with fusion on.
    template <class L>
    bool pair_of(std::size_t i) const noexcept {
        if (!fusion_ || i + 1 >= children_.size()) return false;
        const Module<T>& a = *children_[i].second;
        const Module<T>& b = *children_[i + 1].second;
        return typeid(a) == typeid(L) && typeid(b) == typeid(ReLU<T>);
    }

    std::string full(const std::string& child) const { return this->name().empty() ? child : this->name() + "." + child; }

    std::vector<std::pair<std::string, std::unique_ptr<Module<T>>>> children_;
    bool forwarded_ = false;
    bool fusion_ = true;
};

}  // namespace sft::nn
