/// @file sequential.hpp
/// sft::nn::Sequential: named children applied in order, as torch.nn.Sequential(OrderedDict(...)).
#pragma once

#include <sft/nn/module.hpp>

#include <memory>
#include <type_traits>

namespace sft::nn {

/// A chain of named modules. Parameter names are dotted paths ("backbone.conv1.weight");
/// backward stops below the lowest child that has a trainable parameter.
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

    Tensor<T> forward(const Tensor<T>& input) override {
        Tensor<T> x = input;
        for (auto& c : children_) x = c.second->forward(x);
        forwarded_ = true;
        return x;
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
        for (std::size_t i = children_.size(); i-- > lowest;) g = children_[i].second->backward(g, need_input_grad || i > lowest);
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

    void collect_parameters(std::vector<Parameter<T>*>& out) override {
        Module<T>::collect_parameters(out);
        for (auto& c : children_) c.second->collect_parameters(out);
    }
    void collect_buffers(std::vector<Buffer<T>*>& out) override {
        Module<T>::collect_buffers(out);
        for (auto& c : children_) c.second->collect_buffers(out);
    }

private:
    std::string full(const std::string& child) const { return this->name().empty() ? child : this->name() + "." + child; }

    std::vector<std::pair<std::string, std::unique_ptr<Module<T>>>> children_;
    bool forwarded_ = false;
};

}  // namespace sft::nn
