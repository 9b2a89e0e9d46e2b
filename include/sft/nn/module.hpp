/// @file module.hpp
/// sft::nn::Parameter and sft::nn::Module, the base of every layer: named parameters and buffers,
/// train/eval mode, state_dict / load_state_dict, freeze / unfreeze by name prefix.
#pragma once

#include <sft/detail/thread_pool.hpp>
#include <sft/error.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sft::nn {

/// Where a layer's backward writes a parameter's gradient (Parameter::grad_for_backward()).
template <class T>
struct GradTarget {
    T* data;         ///< the gradient's elements
    bool overwrite;  ///< true: the gradient is zero and not written yet: store the result (beta 0); false: add to it
};

/// A trainable tensor with its gradient, its dotted name ("fc1.weight") and its requires_grad flag.
/// The gradient has the value's shape, starts at zero and accumulates (+=) over backward calls
/// until the optimizer's zero_grad(), as in PyTorch.
///
/// zero_grad_() zeroes the gradient lazily: it only marks it. The next access through grad()
/// writes the zeros, while a layer's backward that asks grad_for_backward() stores its gradient
/// instead of adding it to zeros: one pass over every gradient less per training step (what
/// PyTorch 2's zero_grad(set_to_none=True) saves), with grad() always reading as in PyTorch's
/// set_to_none=False. A copy of the gradient tensor taken before zero_grad_() is not zeroed.
template <class T>
class Parameter {
public:
    Parameter(std::string local_name, Tensor<T> value)
        : local_name_(local_name), name_(std::move(local_name)), value_(std::move(value)), grad_(value_.shape()) {}

    /// The full dotted name, as in PyTorch's named_parameters().
    const std::string& name() const noexcept { return name_; }
    /// The name inside its own module ("weight").
    const std::string& local_name() const noexcept { return local_name_; }
    Tensor<T>& value() noexcept { return value_; }
    const Tensor<T>& value() const noexcept { return value_; }
    /// The gradient (zeros written first if zero_grad_() marked it).
    Tensor<T>& grad() noexcept {
        materialize_zero();
        return grad_;
    }
    const Tensor<T>& grad() const noexcept {
        materialize_zero();
        return grad_;
    }
    /// Marks the gradient zero without writing it (see the class comment).
    void zero_grad_() noexcept { grad_zero_pending_ = true; }
    /// True while the gradient is marked zero and not written.
    bool grad_zero_pending() const noexcept { return grad_zero_pending_; }
    /// For a layer's backward about to write the whole gradient in one kernel that cannot fail:
    /// its memory, and whether to store (it is marked zero; the mark is cleared) or add.
    GradTarget<T> grad_for_backward() noexcept {
        const bool overwrite = grad_zero_pending_;
        grad_zero_pending_ = false;
        return {grad_.data(), overwrite};
    }
    /// False for a frozen parameter: backward computes no gradient for it, optimizers skip it.
    bool requires_grad() const noexcept { return trainable_; }
    void requires_grad_(bool on) noexcept { trainable_ = on; }

    /// Set by the owning module when it gets a name in a container.
    void set_prefix(const std::string& prefix) { name_ = prefix.empty() ? local_name_ : prefix + "." + local_name_; }

private:
    void materialize_zero() const noexcept {
        if (!grad_zero_pending_) return;
        grad_zero_pending_ = false;
        T* g = grad_.data();
        ::sft::detail::parallel_for(grad_.numel(), 16384, [g](std::size_t lo, std::size_t hi) { std::fill(g + lo, g + hi, T(0)); });
    }

    std::string local_name_;
    std::string name_;
    Tensor<T> value_;
    mutable Tensor<T> grad_;  // mutable: grad() const writes the zeros zero_grad_() marked
    bool trainable_ = true;
    mutable bool grad_zero_pending_ = false;
};

/// A named non-trainable tensor that belongs to the state (BatchNorm's running statistics).
template <class T>
struct Buffer {
    std::string local_name;
    std::string name;
    Tensor<T> value;
};

namespace detail {
/// Makes `buffer` a tensor of `shape` for a layer to write its result into: the same storage when
/// the layer holds the only reference to it and the element count is unchanged (no allocation),
/// otherwise a fresh uninitialised tensor, so that a caller who kept an earlier result never sees
/// it overwritten. Returns `buffer`.
template <class T>
Tensor<T>& reuse_or_empty(Tensor<T>& buffer, const Shape& shape) {
    if (buffer.defined() && buffer.use_count() == 1 && buffer.numel() == shape.numel()) {
        if (buffer.shape() != shape) buffer = buffer.reshape(shape);
    } else {
        buffer = Tensor<T>::empty(shape);
    }
    return buffer;
}
}  // namespace detail

/// What a non-strict load_state_dict() did not match.
struct LoadResult {
    std::vector<std::string> missing_keys;     ///< in the model, not in the state dict
    std::vector<std::string> unexpected_keys;  ///< in the state dict, not in the model
};

/// Base of every layer and container.
///
/// forward() caches what backward() needs; backward(grad_output) adds parameter gradients into
/// grad() and returns the gradient with respect to the input. Layers are movable, not copyable.
///
/// Buffer reuse: a layer keeps its outputs and input gradients and writes the next step's into
/// the same storage when it holds the only reference (detail::reuse_or_empty), so a training
/// loop allocates nothing in its steady state. backward() releases what forward() saved for it,
/// as PyTorch frees saved tensors: a second backward() without a new forward() throws.
template <class T>
class Module {
public:
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;
    Module(Module&&) noexcept = default;
    Module& operator=(Module&&) noexcept = default;
    virtual ~Module() = default;

    /// Computes the output and caches what backward() needs.
    virtual Tensor<T> forward(const Tensor<T>& input) = 0;

    /// Back-propagates grad_output (shape of the last forward's output): accumulates the gradients
    /// of trainable parameters into grad() and returns the gradient with respect to the last
    /// forward's input. With need_input_grad false the input gradient is not computed and an
    /// undefined tensor is returned (containers use it to stop below the lowest trainable layer).
    /// Overrides repeat the default argument. Throws sft::Error (kind state) without a preceding
    /// forward, (kind shape) when grad_output's shape is not the last output's.
    virtual Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) = 0;

    /// Drops what the last forward() saved for backward() (afterwards backward() throws as without
    /// a forward). Containers call it on their children before a forward(), so that a saved
    /// tensor left by a forward without backward (evaluation, frozen layers) does not keep a
    /// layer's output buffer shared. The default saves nothing to drop.
    virtual void release_saved() noexcept {}

    /// The layer's kind, as in error messages ("Linear").
    virtual std::string type_name() const = 0;

    /// Training mode (dropout active, batch statistics in BatchNorm) when on, eval mode otherwise.
    virtual void train(bool on = true) { training_ = on; }
    void eval() { train(false); }
    bool is_training() const noexcept { return training_; }

    /// The dotted name of this module in its container ("backbone.conv1"), empty at the top.
    const std::string& name() const noexcept { return name_; }
    /// "Linear 'fc1'", how error messages name a module.
    std::string label() const { return name_.empty() ? type_name() : fmt::format("{} '{}'", type_name(), name_); }

    /// Renames this module and everything below it (called by containers).
    virtual void set_name(const std::string& name) {
        name_ = name;
        for (auto& p : params_) p->set_prefix(name);
        for (auto& b : buffers_) b->name = name.empty() ? b->local_name : name + "." + b->local_name;
    }

    /// Every parameter below this module, trainable or frozen, in registration order.
    std::vector<Parameter<T>*> parameters() {
        std::vector<Parameter<T>*> out;
        collect_parameters(out);
        return out;
    }
    /// Every buffer below this module.
    std::vector<Buffer<T>*> buffers() {
        std::vector<Buffer<T>*> out;
        collect_buffers(out);
        return out;
    }

    /// True if some parameter of this module or below it requires a gradient. Walks the modules
    /// without collecting anything (a training step calls it; containers override to add their
    /// children).
    virtual bool has_trainable() const noexcept {
        for (const auto& p : params_)
            if (p->requires_grad()) return true;
        return false;
    }

    /// Parameters and buffers by dotted name. The tensors share storage with the model, as
    /// PyTorch's state_dict() does: clone() them to keep a snapshot.
    std::map<std::string, Tensor<T>> state_dict() {
        std::map<std::string, Tensor<T>> out;
        for (auto* p : parameters()) out.emplace(p->name(), p->value());
        for (auto* b : buffers()) out.emplace(b->name, b->value);
        return out;
    }

    /// Copies the values of `state` into the model's parameters and buffers.
    /// Strict (default): a missing key, an unexpected key or a shape mismatch throws sft::Error
    /// naming the key (and both shapes). Non-strict: shape mismatches still throw; missing and
    /// unexpected keys are returned. Nothing is modified when it throws.
    LoadResult load_state_dict(const std::map<std::string, Tensor<T>>& state, bool strict = true) {
        std::map<std::string, Tensor<T>*> targets;
        for (auto* p : parameters()) targets.emplace(p->name(), &p->value());
        for (auto* b : buffers()) targets.emplace(b->name, &b->value);
        LoadResult result;
        for (const auto& [key, target] : targets) {
            auto it = state.find(key);
            if (it == state.end()) {
                result.missing_keys.push_back(key);
                continue;
            }
            if (it->second.shape() != target->shape())
                throw Error(ErrorKind::shape, fmt::format("load_state_dict: key '{}' has shape {} in the state dict, {} in the model",
                                                          key, it->second.shape().str(), target->shape().str()));
        }
        for (const auto& kv : state)
            if (!targets.count(kv.first)) result.unexpected_keys.push_back(kv.first);
        if (strict && (!result.missing_keys.empty() || !result.unexpected_keys.empty())) {
            std::string msg = "load_state_dict (strict):";
            if (!result.missing_keys.empty()) msg += fmt::format(" missing keys {};", join(result.missing_keys, target_shapes(targets, result.missing_keys)));
            if (!result.unexpected_keys.empty()) msg += fmt::format(" unexpected keys {};", join(result.unexpected_keys, state_shapes(state, result.unexpected_keys)));
            msg.pop_back();
            throw Error(ErrorKind::key, msg);
        }
        for (const auto& [key, target] : targets) {
            auto it = state.find(key);
            if (it != state.end() && !it->second.is_same(*target)) target->copy_(it->second);
        }
        return result;
    }

    /// Freezes every parameter whose dotted name is `prefix` or starts with `prefix.`
    /// (an empty prefix: all). Throws sft::Error (kind key) if no parameter matches.
    void freeze(const std::string& prefix = "") { set_requires_grad(prefix, false, "freeze"); }
    /// Makes trainable again what freeze() froze. Throws sft::Error (kind key) if no parameter matches.
    void unfreeze(const std::string& prefix = "") { set_requires_grad(prefix, true, "unfreeze"); }

    /// Parameters and buffers of this module itself, then of its children (containers override
    /// these and has_trainable()).
    virtual void collect_parameters(std::vector<Parameter<T>*>& out) {
        for (auto& p : params_) out.push_back(p.get());
    }
    virtual void collect_buffers(std::vector<Buffer<T>*>& out) {
        for (auto& b : buffers_) out.push_back(b.get());
    }

protected:
    /// Registers a parameter under its local name; the pointer stays valid when the module moves.
    Parameter<T>* register_parameter(const std::string& local_name, Tensor<T> value) {
        params_.push_back(std::make_unique<Parameter<T>>(local_name, std::move(value)));
        params_.back()->set_prefix(name_);
        return params_.back().get();
    }
    /// Registers a buffer (saved in state_dict, never trained).
    Buffer<T>* register_buffer(const std::string& local_name, Tensor<T> value) {
        buffers_.push_back(std::make_unique<Buffer<T>>(Buffer<T>{local_name, local_name, std::move(value)}));
        return buffers_.back().get();
    }

    /// Throws the error of a backward() called with no forward() before it.
    [[noreturn]] void throw_no_forward() const {
        throw Error(ErrorKind::state, fmt::format("{}: backward() called before forward()", label()));
    }
    /// Throws unless grad_output has the shape of the last output.
    void check_grad_shape(const Tensor<T>& grad_output, const Shape& expected) const {
        if (grad_output.shape() != expected)
            throw Error(ErrorKind::shape, fmt::format("{}: grad_output {}, expected {} (the shape of the last output)",
                                                      label(), grad_output.shape().str(), expected.str()));
    }

    bool training_ = true;

private:
    void set_requires_grad(const std::string& prefix, bool on, const char* what) {
        std::size_t matched = 0;
        for (auto* p : parameters()) {
            const std::string& n = p->name();
            if (prefix.empty() || n == prefix || (n.size() > prefix.size() && n.compare(0, prefix.size(), prefix) == 0 && n[prefix.size()] == '.')) {
                p->requires_grad_(on);
                ++matched;
            }
        }
        if (matched == 0) {
            std::vector<std::string> names;
            for (auto* p : parameters()) names.push_back(p->name());
            throw Error(ErrorKind::key, fmt::format("{}(\"{}\"): no parameter has this prefix; parameters are {}", what, prefix,
                                                    names.empty() ? std::string("none") : join(names, {})));
        }
    }

    static std::vector<std::string> target_shapes(const std::map<std::string, Tensor<T>*>& m, const std::vector<std::string>& keys) {
        std::vector<std::string> s;
        for (auto& k : keys) s.push_back(m.at(k)->shape().str());
        return s;
    }
    static std::vector<std::string> state_shapes(const std::map<std::string, Tensor<T>>& m, const std::vector<std::string>& keys) {
        std::vector<std::string> s;
        for (auto& k : keys) s.push_back(m.at(k).shape().str());
        return s;
    }
    static std::string join(const std::vector<std::string>& keys, const std::vector<std::string>& shapes) {
        std::string s;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            if (i) s += ", ";
            s += "'" + keys[i] + "'";
            if (i < shapes.size()) s += " " + shapes[i];
        }
        return s;
    }

    std::string name_;
    std::vector<std::unique_ptr<Parameter<T>>> params_;
    std::vector<std::unique_ptr<Buffer<T>>> buffers_;
};

}  // namespace sft::nn
