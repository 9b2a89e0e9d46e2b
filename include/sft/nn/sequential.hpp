/// @file sequential.hpp
/// sft::nn::Sequential: named children applied in order, as torch.nn.Sequential(OrderedDict(...)).
#pragma once

#include <sft/nn/activation.hpp>
#include <sft/nn/conv2d.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/module.hpp>

#include <algorithm>
#include <memory>
#include <type_traits>
#include <typeinfo>
#include <vector>

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
///
/// Row-parallel runs: consecutive children that work row by row (Linear, ReLU, GELU, Tanh,
/// Sigmoid: exactly these types), at least two of them with a Linear among them, run as one job
/// of sft's thread pool when it has 2 or more threads and the input has at least 64 rows: each
/// thread takes its block of rows (multiples of 32) through all the run's layers, instead of
/// every layer splitting its own product among the threads. Forward is one job for the whole
/// run; backward is one job for the chain of input gradients, then the weight and bias
/// gradients, which sum over all rows, as threaded products of their own. A row's values never
/// depend on the cut (each GEMM computes every element the same way whatever block it is in),
/// so the results are bit-identical to the layers run one by one, at every thread count.
/// Measured at 2 threads, on and off alternating in one process (benchmarks/row_parallel_ab,
/// RESULTS.md): the reference MLP's forward in 0.86-0.98 of the time at batch 128 (7 runs) and
/// 0.86-0.93 at 256 and 512, the whole step in 0.94-1.00 and 0.93-0.95. Each thread then reads
/// all the weights: the optimizer's update, which writes them next, takes 1.02-1.05x its time
/// (see kernels/adamw.hpp). A static cut pays when one core is slowed by other work (the
/// spread above); each layer's own split balances its tasks instead.
/// set_row_parallel(false) runs every child on its own; forward_row_blocks() and
/// backward_row_blocks() tell how the last calls cut their rows.
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

    /// Whether runs of row-wise children run row-parallel (on by default; see the class comment).
    void set_row_parallel(bool on) noexcept { row_parallel_ = on; }
    /// True when runs of row-wise children run row-parallel.
    bool row_parallel() const noexcept { return row_parallel_; }
    /// The blocks of rows the last forward() cut its row-parallel runs into (0: none ran so).
    std::size_t forward_row_blocks() const noexcept { return forward_row_blocks_; }
    /// The blocks of rows the last backward() cut its row-parallel runs into (0: none ran so).
    std::size_t backward_row_blocks() const noexcept { return backward_row_blocks_; }

    /// The children applied in order. What the children saved at the last forward is released
    /// first, so that their kept buffers are free for reuse (see Module). Throws what a child throws.
    Tensor<T> forward(const Tensor<T>& input) override {
        release_saved();
        forward_row_blocks_ = 0;
        Tensor<T> x = input;
        for (std::size_t i = 0; i < children_.size(); ++i) {
            if (const std::size_t end = row_run_end(i); end > i) {
                if (const RowCut cut = row_cut(x); cut.chunks > 1) {
                    x = forward_rows(i, end, x, cut);
                    forward_row_blocks_ = cut.chunks;
                    i = end - 1;
                    continue;
                }
            }
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
        backward_row_blocks_ = 0;
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
            if (const std::size_t begin = std::max(row_run_begin(i), lowest); begin < i) {  // a row-wise run ends at i
                if (const RowCut cut = row_cut(g); cut.chunks > 1 && has_linear(begin, i + 1)) {
                    g = backward_rows(begin, i + 1, g, lowest, need_input_grad, cut);
                    backward_row_blocks_ = cut.chunks;
                    i = begin;
                    continue;
                }
            }
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
    /// How a row-parallel run cuts its rows: `chunks` blocks of `size` rows (the last one shorter).
    struct RowCut {
        std::size_t rows = 0, size = 0, chunks = 0;
        std::size_t begin(std::size_t c) const noexcept { return c * size; }
        std::size_t count(std::size_t c) const noexcept { return std::min(rows, (c + 1) * size) - c * size; }
    };

    /// The rows of x (all dimensions but the last) cut into one block per thread, each a multiple
    /// of 32 rows (the GEMM's panels of rows): no cut (chunks <= 1) with 1 thread, inside a pool
    /// task, with row parallelism off, or below 64 rows.
    RowCut row_cut(const Tensor<T>& x) const noexcept {
        RowCut cut;
        if (!row_parallel_ || !x.defined() || x.rank() < 2 || ::sft::detail::ThreadPool::in_task()) return cut;
        const std::size_t threads = ::sft::detail::ThreadPool::instance().num_threads();
        const std::size_t cols = x.shape()[x.rank() - 1];
        if (threads < 2 || cols == 0) return cut;
        constexpr std::size_t panel = 32;
        cut.rows = x.numel() / cols;
        const std::size_t blocks = std::min(threads, cut.rows / panel);
        if (blocks < 2) return cut;
        cut.size = (cut.rows + blocks - 1) / blocks;
        cut.size = (cut.size + panel - 1) / panel * panel;
        cut.chunks = (cut.rows + cut.size - 1) / cut.size;
        return cut;
    }

    /// Child i works row by row: exactly a Linear, ReLU, GELU, Tanh or Sigmoid.
    bool row_wise(std::size_t i) const noexcept {
        const Module<T>& m = *children_[i].second;
        const std::type_info& t = typeid(m);
        return t == typeid(Linear<T>) || t == typeid(ReLU<T>) || t == typeid(GELU<T>) || t == typeid(Tanh<T>) || t == typeid(Sigmoid<T>);
    }
    bool is_linear(std::size_t i) const noexcept { return typeid(*children_[i].second) == typeid(Linear<T>); }
    bool has_linear(std::size_t begin, std::size_t end) const noexcept {
        for (std::size_t i = begin; i < end; ++i)
            if (is_linear(i)) return true;
        return false;
    }
    /// The end of the row-parallel run that starts at child i (at least two row-wise children, a
    /// Linear among them), or i when none starts there.
    std::size_t row_run_end(std::size_t i) const noexcept {
        if (!row_parallel_) return i;
        std::size_t end = i;
        while (end < children_.size() && row_wise(end)) ++end;
        return end - i >= 2 && has_linear(i, end) ? end : i;
    }
    /// The first child of the row-wise children that end at child i (i itself when it is alone or
    /// not row-wise).
    std::size_t row_run_begin(std::size_t i) const noexcept {
        if (!row_parallel_ || !row_wise(i)) return i;
        std::size_t begin = i;
        while (begin > 0 && row_wise(begin - 1)) --begin;
        return begin;
    }

    /// One step of a row-parallel run: a Linear (with its fused ReLU's activation), or an
    /// elementwise activation.
    struct RowStep {
        Linear<T>* linear = nullptr;
        detail::ElementwiseActivation<T>* act = nullptr;
        kernels::GemmActivation gemm_act = kernels::GemmActivation::none;
        Tensor<T> in, out;    // forward: input and output; backward: grad_output and grad_input
        Tensor<T> saved;      // backward: the saved input (Linear) or cache (activation)
        std::size_t in_cols = 0, out_cols = 0;
    };

    /// Empties steps_ (releasing its tensors, keeping its capacity) when a run ends, thrown or not.
    struct StepsGuard {
        std::vector<RowStep>& steps;
        ~StepsGuard() { steps.clear(); }
    };

    /// Forward of children [begin, end) row-parallel: every child's checks, buffers and saved
    /// tensors first, on this thread (what throws, throws here, before any computation), then one
    /// job whose tasks each take their block of rows through all the children.
    Tensor<T> forward_rows(std::size_t begin, std::size_t end, const Tensor<T>& input, const RowCut& cut) {
        StepsGuard guard{steps_};
        steps_.clear();
        Tensor<T> x = input;
        for (std::size_t i = begin; i < end; ++i) {
            RowStep s;
            s.in = x;
            if (is_linear(i)) {
                auto& linear = static_cast<Linear<T>&>(*children_[i].second);
                s.linear = &linear;
                if (fused_pair(i)) {
                    auto& relu = static_cast<ReLU<T>&>(*children_[i + 1].second);
                    s.out = linear.forward_prepare(x, relu.fused_output_buffer());
                    relu.set_fused_output(s.out);
                    s.gemm_act = kernels::GemmActivation::relu;
                    ++i;
                } else {
                    s.out = linear.forward_prepare(x);
                }
            } else {
                auto& act = static_cast<detail::ElementwiseActivation<T>&>(*children_[i].second);
                s.act = &act;
                s.out = act.forward_prepare(x);
            }
            s.in_cols = x.numel() / cut.rows;
            s.out_cols = s.out.numel() / cut.rows;
            x = s.out;
            steps_.push_back(std::move(s));
        }
        ::sft::detail::ThreadPool::instance().run(cut.chunks, [&](std::size_t c) {
            const std::size_t r0 = cut.begin(c), rows = cut.count(c);
            for (RowStep& s : steps_) {  // each task writes its own rows of every step's output
                const T* in = s.in.data() + r0 * s.in_cols;
                T* out = s.out.data() + r0 * s.out_cols;
                if (s.linear) s.linear->forward_rows(in, out, rows, s.gemm_act);
                else s.act->forward_range(in, out, rows * s.in_cols);
            }
        });
        return x;
    }

    /// Backward of children [begin, end) row-parallel (begin >= lowest, the lowest child
    /// back-propagated into): the checks and buffers of every child from the top down first, then
    /// one job whose tasks each take their block of rows down the chain of input gradients
    /// (including a fused ReLU's mask), then the weight and bias gradients of each Linear from
    /// the top down, each a threaded product over all rows. A fused ReLU's bias gradient is the
    /// Linear's column sums of dz, bit-identical to ReLU::backward_bias's.
    Tensor<T> backward_rows(std::size_t begin, std::size_t end, const Tensor<T>& grad_output, std::size_t lowest, bool need_input_grad,
                            const RowCut& cut) {
        StepsGuard guard{steps_};
        steps_.clear();
        Tensor<T> g = grad_output;
        for (std::size_t i = end; i-- > begin;) {
            RowStep s;
            s.in = g;
            if (i > begin && fused_pair(i - 1)) {  // ReLU i after Linear i - 1: the mask, then the Linear
                auto& relu = static_cast<ReLU<T>&>(*children_[i].second);
                s.act = &relu;
                s.out = relu.backward_prepare(g, true, s.saved);
                s.in_cols = s.out_cols = g.numel() / cut.rows;
                g = s.out;
                steps_.push_back(std::move(s));
                s = RowStep();
                s.in = g;
                --i;
            }
            const bool need = need_input_grad || i > lowest;  // the input gradient of child i
            if (is_linear(i)) {
                auto& linear = static_cast<Linear<T>&>(*children_[i].second);
                s.linear = &linear;
                s.out = linear.backward_prepare(g, need, s.saved);
            } else {
                auto& act = static_cast<detail::ElementwiseActivation<T>&>(*children_[i].second);
                s.act = &act;
                s.out = act.backward_prepare(g, need, s.saved);
            }
            s.in_cols = g.numel() / cut.rows;
            s.out_cols = s.out.defined() ? s.out.numel() / cut.rows : 0;
            g = s.out;
            steps_.push_back(std::move(s));
        }
        ::sft::detail::ThreadPool::instance().run(cut.chunks, [&](std::size_t c) {
            const std::size_t r0 = cut.begin(c), rows = cut.count(c);
            for (RowStep& s : steps_) {  // each task writes its own rows of every step's input gradient
                if (!s.out.defined()) break;  // the lowest child, without an input gradient
                const T* g_rows = s.in.data() + r0 * s.in_cols;
                T* dx = s.out.data() + r0 * s.out_cols;
                if (s.linear) s.linear->backward_input_rows(g_rows, dx, rows);
                else s.act->backward_range(g_rows, s.saved.data() + r0 * s.in_cols, dx, rows * s.in_cols);
            }
        });
        for (const RowStep& s : steps_)
            if (s.linear) s.linear->accumulate_param_grads(s.in, s.saved, true);
        return g;
    }

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
    bool row_parallel_ = true;
    std::size_t forward_row_blocks_ = 0, backward_row_blocks_ = 0;
    std::vector<RowStep> steps_;  // the steps of the current row-parallel run (kept for its capacity)
};

}  // namespace sft::nn
