/// @file optimizer.hpp
/// sft::optim::Optimizer<T>: what AdamW, Adam and SGD share. Parameter groups with their learning
/// rate and weight decay, lazily allocated per-parameter state, zero_grad(), step() over the
/// trainable parameters, and the state as a map of tensors for safetensors (state_dict() /
/// load_state_dict()). Each optimizer only states its update rule and the names of its state.
///
/// State keys (torch keeps the same values in optimizer.state_dict(), indexed by position):
///   "<param name>.<state>"       per-parameter tensors of the parameter's shape ("fc1.weight.exp_avg")
///   "<param name>.step"          the parameter's step count (Adam, AdamW)
///   "param_groups.<i>.lr", "param_groups.<i>.initial_lr", "param_groups.<i>.weight_decay"
///   "steps_taken"                the number of step() calls
/// Scalars are stored exactly: a tensor of shape [3] for float (the double value split into three
/// floats whose sum, taken in double from the first, is the value) and [1] for double, so that a
/// resumed run is bit-identical to an uninterrupted one; load_state_dict() accepts either, so a
/// float run's state loads into a double optimizer. Read them with sum(t.double()) in PyTorch.
#pragma once

#include <sft/error.hpp>
#include <sft/nn/module.hpp>
#include <sft/optim/detail/flat_pass.hpp>
#include <sft/optim/optimizer_base.hpp>
#include <sft/optim/param_groups.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace sft::optim {

namespace detail {

/// Number of T elements that hold a double exactly (see the file comment).
template <class T>
constexpr std::size_t scalar_parts() noexcept { return std::is_same_v<T, float> ? 3 : 1; }

/// A double as a tensor of T whose elements sum (in double, from the first) to it exactly.
template <class T>
Tensor<T> encode_scalar(double x) {
    Tensor<T> t({scalar_parts<T>()});
    double rest = x;
    for (std::size_t i = 0; i < t.numel(); ++i) {
        t[i] = static_cast<T>(rest);
        rest -= static_cast<double>(t[i]);  // exact: t[i] is rest rounded to T
    }
    return t;
}

/// The double that encode_scalar() stored.
template <class T>
double decode_scalar(const Tensor<T>& t) noexcept {
    double x = 0.0;
    for (std::size_t i = 0; i < t.numel(); ++i) x += static_cast<double>(t[i]);
    return x;
}

inline std::string join_keys(const std::vector<std::string>& keys) {
    std::string s;
    for (std::size_t i = 0; i < keys.size(); ++i) s += (i ? ", '" : "'") + keys[i] + "'";
    return s;
}

}  // namespace detail

/// Base of the optimizers of element type T: parameter groups, per-parameter state, state_dict.
/// Derived classes give type_name(), state_names() and update(); step() calls update() on ranges
/// of every trainable parameter, covering each element once, in one threaded pass. Frozen
/// parameters (requires_grad() false at the time of step()) get no update, no decay and no state,
/// as PyTorch skips parameters whose .grad is None.
template <class T>
class Optimizer : public OptimizerBase {
public:
    std::size_t num_param_groups() const noexcept override { return groups_.size(); }
    double group_lr(std::size_t i) const noexcept override { return groups_[i].lr; }
    void set_group_lr(std::size_t i, double lr) noexcept override { groups_[i].lr = lr; }
    double group_initial_lr(std::size_t i) const noexcept override { return groups_[i].initial_lr; }
    /// Weight decay of group i (i < num_param_groups()).
    double group_weight_decay(std::size_t i) const noexcept { return groups_[i].weight_decay; }
    /// The parameters of group i, trainable or frozen, in the order given.
    const std::vector<nn::Parameter<T>*>& group_params(std::size_t i) const noexcept { return groups_[i].params; }

    /// The optimizer's name in messages ("AdamW").
    virtual std::string type_name() const = 0;

    /// Sets the gradient of every parameter of every group to zero, as torch's
    /// zero_grad(set_to_none=False) (the default of torch 1.13) does: grad() reads zeros afterwards.
    /// The zeros are not written here: each gradient is only marked (nn::Parameter::zero_grad_()),
    /// and the next backward stores into it instead of adding to zeros, which saves a pass over
    /// every gradient per step (what set_to_none=True saves in PyTorch 2); a gradient no backward
    /// writes gets its zeros when it is next read. O(parameters), allocates nothing.
    void zero_grad() noexcept override {
        for (auto& s : slots_) s.param->zero_grad_();
    }

    /// One update of every trainable parameter from its gradient. The state of a parameter is
    /// allocated (zero) the first time it is stepped; later steps allocate nothing. All trainable
    /// parameters of all groups are updated in one pass, as one flat array cut into chunks of at
    /// least 16K elements by its size only (optim/detail/flat_pass.hpp) on sft's pool: each
    /// element is read and written once, small tensors share a chunk, and since every element is
    /// updated on its own the result does not depend on the number of threads.
    /// Throws sft::Error (kind shape) naming the parameter if its value was replaced by a tensor
    /// of another size than its gradient or its state (the kernels would run past them); nothing
    /// is modified then.
    void step() override {
        for (const auto& s : slots_) {
            if (!s.param->requires_grad()) continue;
            // grad() writes the zeros a zero_grad() left pending (a parameter no backward reached)
            // here, on the calling thread: the pass below reads gradients from pool tasks.
            const std::size_t n = s.param->value().numel();
            if (s.param->grad().numel() != n || (s.has_state && !s.buffers.empty() && s.buffers[0].numel() != n))
                throw Error(ErrorKind::shape, fmt::format("{} step: parameter '{}' has value {}, gradient {}{}", type_name(), s.param->name(),
                                                          s.param->value().shape().str(), s.param->grad().shape().str(),
                                                          s.buffers.empty() ? std::string() : ", state " + s.buffers[0].shape().str()));
        }
        flat_.clear();  // capacity reserved for every slot at construction: no allocation
        std::size_t total = 0;
        for (auto& s : slots_) {
            if (!s.param->requires_grad()) continue;
            const bool first = !s.has_state;
            if (first) init_state(s);
            ++s.step;
            flat_.push_back(Flat{total, s.param->value().numel(), &s, first});
            total = detail::round_up(total + flat_.back().size, detail::flat_align<T>());
        }
        detail::flat_pass(flat_.data(), flat_.size(), total, detail::flat_align<T>(), [this](const Flat& f, std::size_t lo, std::size_t hi) {
            update(*f.slot, groups_[f.slot->group], f.first, lo, hi);
        });
        ++steps_;
    }

    std::size_t steps_taken() const noexcept override { return steps_; }

    /// The state as named tensors (see the file comment), copies that the optimizer does not share.
    /// Throws sft::Error (kind key) if two parameters have the same name.
    std::map<std::string, Tensor<T>> state_dict() const {
        check_unique_names("state_dict");
        std::map<std::string, Tensor<T>> out;
        out.emplace("steps_taken", detail::encode_scalar<T>(static_cast<double>(steps_)));
        for (std::size_t i = 0; i < groups_.size(); ++i) {
            out.emplace(group_key(i, "lr"), detail::encode_scalar<T>(groups_[i].lr));
            out.emplace(group_key(i, "initial_lr"), detail::encode_scalar<T>(groups_[i].initial_lr));
            out.emplace(group_key(i, "weight_decay"), detail::encode_scalar<T>(groups_[i].weight_decay));
        }
        const std::vector<std::string> names = state_names();
        for (const auto& s : slots_) {
            if (!s.has_state) continue;
            for (std::size_t k = 0; k < names.size(); ++k) out.emplace(s.param->name() + "." + names[k], s.buffers[k].clone());
            if (saves_step()) out.emplace(s.param->name() + ".step", detail::encode_scalar<T>(static_cast<double>(s.step)));
        }
        return out;
    }

    /// Restores a state that state_dict() gave (through safetensors, say) into an optimizer built
    /// over parameters of the same names and shapes with the same number of groups. The values are
    /// copied. Strict: throws sft::Error (kind key) naming the keys on a missing key (group values,
    /// "steps_taken", part of a parameter's state, or all the state of a parameter that is
    /// trainable when the saved optimizer had stepped) or an unexpected key; (kind shape) naming
    /// the key and both shapes on a shape mismatch; (kind format) on an invalid scalar.
    /// Nothing is modified when it throws.
    void load_state_dict(const std::map<std::string, Tensor<T>>& state) {
        check_unique_names("load_state_dict");
        const std::string who = type_name() + " load_state_dict";
        std::vector<std::string> missing;
        std::set<std::string> expected;
        auto scalar = [&](const std::string& key, bool integer) -> double {
            expected.insert(key);
            auto it = state.find(key);
            if (it == state.end()) {
                missing.push_back(key);
                return 0.0;
            }
            // [3] from a float optimizer, [1] from a double one: either loads into either.
            const Tensor<T>& t = it->second;
            if (t.rank() != 1 || t.numel() < 1 || t.numel() > 3)
                throw Error(ErrorKind::shape, fmt::format("{}: key '{}' has shape {}, expected [{}] (a scalar split in parts)", who, key,
                                                          t.shape().str(), detail::scalar_parts<T>()));
            const double v = detail::decode_scalar(it->second);
            if (!(v >= 0.0) || (integer && v != std::floor(v)))
                throw Error(ErrorKind::format, fmt::format("{}: key '{}' holds {}, expected a non-negative {}", who, key, v,
                                                           integer ? "integer" : "number"));
            return v;
        };
        const double steps = scalar("steps_taken", true);
        std::vector<Group> groups = groups_;
        for (std::size_t i = 0; i < groups.size(); ++i) {
            groups[i].lr = scalar(group_key(i, "lr"), false);
            groups[i].initial_lr = scalar(group_key(i, "initial_lr"), false);
            groups[i].weight_decay = scalar(group_key(i, "weight_decay"), false);
        }
        // Per parameter: all of its keys, or none (a parameter that was frozen or never stepped).
        const std::vector<std::string> names = state_names();
        std::vector<std::vector<const Tensor<T>*>> found(slots_.size());
        std::vector<std::size_t> step_counts(slots_.size(), 0);
        std::vector<char> loaded(slots_.size(), 0);
        for (std::size_t si = 0; si < slots_.size(); ++si) {
            const auto& s = slots_[si];
            std::vector<std::string> keys;
            for (const auto& n : names) keys.push_back(s.param->name() + "." + n);
            std::size_t present = 0;
            for (const auto& k : keys) present += state.count(k);
            if (saves_step()) present += state.count(s.param->name() + ".step");
            const std::size_t total = keys.size() + (saves_step() ? 1 : 0);
            if (total == 0) continue;
            if (present == 0 && !(s.param->requires_grad() && steps > 0)) {
                for (const auto& k : keys) expected.insert(k);
                continue;
            }
            loaded[si] = 1;
            for (const auto& k : keys) {
                expected.insert(k);
                auto it = state.find(k);
                if (it == state.end()) {
                    missing.push_back(k);
                    continue;
                }
                if (it->second.shape() != s.param->value().shape())
                    throw Error(ErrorKind::shape, fmt::format("{}: key '{}' has shape {}, parameter '{}' has shape {}", who, k,
                                                              it->second.shape().str(), s.param->name(), s.param->value().shape().str()));
                found[si].push_back(&it->second);
            }
            if (saves_step()) step_counts[si] = static_cast<std::size_t>(scalar(s.param->name() + ".step", true));
        }
        std::vector<std::string> unexpected;
        for (const auto& kv : state)
            if (!expected.count(kv.first)) unexpected.push_back(kv.first);
        if (!missing.empty() || !unexpected.empty()) {
            std::string msg = who + " (strict):";
            if (!missing.empty()) msg += " missing keys " + detail::join_keys(missing) + ";";
            if (!unexpected.empty()) msg += " unexpected keys " + detail::join_keys(unexpected) + ";";
            msg.pop_back();
            throw Error(ErrorKind::key, msg);
        }
        // Everything checked: now modify.
        for (std::size_t i = 0; i < groups_.size(); ++i) groups_[i] = std::move(groups[i]);
        steps_ = static_cast<std::size_t>(steps);
        for (std::size_t si = 0; si < slots_.size(); ++si) {
            auto& s = slots_[si];
            if (!loaded[si]) {
                s.has_state = false;
                s.buffers.clear();
                s.step = 0;
                continue;
            }
            if (!s.has_state) init_state(s);
            for (std::size_t k = 0; k < names.size(); ++k) s.buffers[k].copy_(*found[si][k]);
            s.step = step_counts[si];
        }
    }

protected:
    /// One group: its parameters and hyperparameters.
    struct Group {
        std::vector<nn::Parameter<T>*> params;
        double lr = 0.0;
        double initial_lr = 0.0;
        double weight_decay = 0.0;
    };
    /// One parameter and its state.
    struct Slot {
        nn::Parameter<T>* param = nullptr;
        std::size_t group = 0;
        std::vector<Tensor<T>> buffers;  ///< in the order of state_names()
        std::size_t step = 0;            ///< number of updates of this parameter
        bool has_state = false;
    };

    /// Builds the groups: each group's lr and weight decay default to `lr` and `weight_decay`.
    /// Throws sft::Error if no group has a parameter, a parameter is null, or a parameter appears
    /// twice (in one group or two).
    Optimizer(const std::vector<ParamGroup<T>>& groups, double lr, double weight_decay, const std::string& name) {
        std::size_t count = 0;
        std::set<const nn::Parameter<T>*> seen;
        for (std::size_t gi = 0; gi < groups.size(); ++gi) {
            Group g;
            g.params = groups[gi].params();
            g.lr = g.initial_lr = groups[gi].lr().value_or(lr);
            g.weight_decay = groups[gi].weight_decay().value_or(weight_decay);
            for (std::size_t pi = 0; pi < g.params.size(); ++pi) {
                nn::Parameter<T>* p = g.params[pi];
                if (!p) throw Error(ErrorKind::invalid_argument, fmt::format("{}: parameter {} of group {} is null", name, pi, gi));
                if (!seen.insert(p).second)
                    throw Error(ErrorKind::invalid_argument,
                                fmt::format("{}: parameter '{}' appears more than once in the parameter groups", name, p->name()));
                Slot s;
                s.param = p;
                s.group = gi;
                slots_.push_back(std::move(s));
                ++count;
            }
            groups_.push_back(std::move(g));
        }
        if (count == 0) throw Error(ErrorKind::invalid_argument, fmt::format("{}: got an empty parameter list", name));
        flat_.reserve(slots_.size());
    }

    /// Names of the per-parameter state tensors, each of the parameter's shape ("exp_avg", ...).
    virtual std::vector<std::string> state_names() const = 0;
    /// Whether the per-parameter step count belongs to the state (Adam: yes; SGD: no).
    virtual bool saves_step() const noexcept { return true; }
    /// The update rule of one trainable parameter over its elements [begin, end); `first` on its
    /// first step (state just zeroed), s.step already counts this step. step() calls it from
    /// several threads at once for disjoint ranges of one parameter: it must touch only those
    /// elements, modify nothing else (the slot included) and not throw.
    virtual void update(Slot& s, const Group& g, bool first, std::size_t begin, std::size_t end) const noexcept = 0;

private:
    void init_state(Slot& s) {
        const std::vector<std::string> names = state_names();
        s.buffers.clear();
        for (std::size_t k = 0; k < names.size(); ++k) s.buffers.push_back(Tensor<T>::zeros(s.param->value().shape()));
        s.has_state = true;
        s.step = 0;
    }

    static std::string group_key(std::size_t i, const char* what) { return fmt::format("param_groups.{}.{}", i, what); }

    void check_unique_names(const char* what) const {
        std::map<std::string, std::size_t> seen;
        for (const auto& s : slots_)
            if (++seen[s.param->name()] == 2)
                throw Error(ErrorKind::key, fmt::format("{} {}: two parameters are named '{}'; state keys need distinct names "
                                                        "(add the layers to a Sequential)", type_name(), what, s.param->name()));
    }

    /// One tensor of a flat pass (detail::flat_pass): its place in the flat space and its slot.
    struct Flat {
        std::size_t offset = 0;  ///< first element in the flat space
        std::size_t size = 0;    ///< number of elements
        Slot* slot = nullptr;
        bool first = false;      ///< step(): the parameter's first step
    };

    std::vector<Group> groups_;
    std::vector<Slot> slots_;
    std::vector<Flat> flat_;  // rebuilt by each step() within its reserved capacity
    std::size_t steps_ = 0;
};

}  // namespace sft::optim
