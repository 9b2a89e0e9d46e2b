"""PyTorch references of the structured layers (float32): Conv2d, MaxPool2d, AvgPool2d,
BatchNorm1d/2d, LayerNorm, Embedding, and the state_dict of a small conv net.

Each case is stored as "<case>.<tensor>" in one file per layer kind: the input "x", the
parameters as they were before the forward, the output "y", a random upstream gradient "gy" and
the gradients "dx", "d<param>" of sum(y * gy). The C++ tests (tests/nn/*_test.cpp) rebuild each
layer with the same configuration (listed here next to each case), load the parameters, and
compare. Index tensors are stored as F32 (their values are exact).
"""
from collections import OrderedDict

import torch

import safetensors_io


def _grads(module, x, y, gy):
    """Runs backward of sum(y * gy) and returns {"dx", "d<param>"}."""
    module.zero_grad()
    y.backward(gy)
    out = {"dx": x.grad.detach().clone()}
    for name, p in module.named_parameters():
        out["d" + name] = p.grad.detach().clone()
    return out


def _layer_case(prefix, module, x):
    """Forward and backward of one stateless-in-forward layer; returns the fixture entries."""
    x = x.detach().clone().requires_grad_(True)
    params = {name: p.detach().clone() for name, p in module.named_parameters()}
    y = module(x)
    gy = torch.randn_like(y)
    entries = {"x": x.detach().clone(), "y": y.detach().clone(), "gy": gy, **params, **_grads(module, x, y, gy)}
    return {f"{prefix}.{k}": v for k, v in entries.items()}


def _randomize_affine(module):
    """Affine parameters away from their (1, 0) init, so that the tests see them."""
    with torch.no_grad():
        module.weight.copy_(torch.rand_like(module.weight) + 0.5)
        module.bias.copy_(torch.randn_like(module.bias) * 0.5)


def _conv(out_dir):
    t = {}
    # Conv2d(3, 4, 3, stride=2, padding=1), x [2, 3, 7, 6]
    t.update(_layer_case("s2p1", torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.randn(2, 3, 7, 6)))
    # Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(0, 1), bias=False), x [2, 2, 6, 7]
    t.update(_layer_case("nobias", torch.nn.Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(0, 1), bias=False), torch.randn(2, 2, 6, 7)))
    # Conv2d(4, 5, 1), x [2, 4, 3, 3]: the pointwise path
    t.update(_layer_case("pw", torch.nn.Conv2d(4, 5, 1), torch.randn(2, 4, 3, 3)))
    # Conv2d(3, 2, 5, padding=2), x [1, 3, 8, 8]
    t.update(_layer_case("k5p2", torch.nn.Conv2d(3, 2, 5, padding=2), torch.randn(1, 3, 8, 8)))
    name = "layers_conv2d.safetensors"
    safetensors_io.save(t, out_dir / name, {"format": "pt"})
    return name


def _pool(out_dir):
    t = {}
    # MaxPool2d(3, stride=2, padding=1), x [2, 3, 7, 8]
    t.update(_layer_case("max_k3s2p1", torch.nn.MaxPool2d(3, stride=2, padding=1), torch.randn(2, 3, 7, 8)))
    # MaxPool2d(2), x [2, 2, 6, 5] (the last column is dropped by the floor)
    t.update(_layer_case("max_k2", torch.nn.MaxPool2d(2), torch.randn(2, 2, 6, 5)))
    # MaxPool2d(2, stride=1), x [1, 2, 5, 5] of small integers: ties, the first maximum wins
    t.update(_layer_case("max_ties", torch.nn.MaxPool2d(2, stride=1), torch.randint(-2, 3, (1, 2, 5, 5)).float()))
    # AvgPool2d(3, stride=2, padding=1), count_include_pad True then False, x [2, 3, 7, 8]
    x = torch.randn(2, 3, 7, 8)
    t.update(_layer_case("avg_k3s2p1_incl", torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True), x))
    t.update(_layer_case("avg_k3s2p1_excl", torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), x))
    # AvgPool2d((2, 3), stride=(1, 2)), x [1, 2, 5, 7]
    t.update(_layer_case("avg_k23s12", torch.nn.AvgPool2d((2, 3), stride=(1, 2)), torch.randn(1, 2, 5, 7)))
    name = "layers_pool.safetensors"
    safetensors_io.save(t, out_dir / name, {"format": "pt"})
    return name


def _bn_case(prefix, module, shape, steps=3):
    """`steps` training forwards (outputs y0.., the last one's gradients), the running statistics
    after them, then one eval forward with its gradients."""
    t = {}
    if module.affine:
        _randomize_affine(module)
        t["weight"] = module.weight.detach().clone()
        t["bias"] = module.bias.detach().clone()
    module.train()
    for s in range(steps):
        x = (torch.randn(*shape) * 2.0 + 1.5).requires_grad_(True)  # off-centre: the mean matters
        y = module(x)
        t[f"x{s}"] = x.detach().clone()
        t[f"y{s}"] = y.detach().clone()
    gy = torch.randn_like(y)
    for k, v in _grads(module, x, y, gy).items():
        t["train_" + k] = v
    t["train_gy"] = gy
    t["running_mean"] = module.running_mean.clone()
    t["running_var"] = module.running_var.clone()
    t["num_batches_tracked"] = module.num_batches_tracked.clone().float()
    module.eval()
    x = (torch.randn(*shape) * 2.0 + 1.5).requires_grad_(True)
    y = module(x)
    gy = torch.randn_like(y)
    t["eval_x"] = x.detach().clone()
    t["eval_y"] = y.detach().clone()
    t["eval_gy"] = gy
    for k, v in _grads(module, x, y, gy).items():
        t["eval_" + k] = v
    return {f"{prefix}.{k}": v for k, v in t.items()}


def _batchnorm(out_dir):
    t = {}
    t.update(_bn_case("bn2d", torch.nn.BatchNorm2d(3), (4, 3, 5, 5)))                     # BatchNorm2d(3)
    t.update(_bn_case("bn1d", torch.nn.BatchNorm1d(4), (8, 4)))                           # BatchNorm1d(4)
    t.update(_bn_case("bn1d_l", torch.nn.BatchNorm1d(3, momentum=None), (4, 3, 6)))       # BatchNorm1d(3, momentum=None)
    t.update(_bn_case("bn2d_noaffine", torch.nn.BatchNorm2d(2, eps=1e-3, momentum=0.3, affine=False), (3, 2, 4, 3)))
    name = "layers_batchnorm.safetensors"
    safetensors_io.save(t, out_dir / name, {"format": "pt"})
    return name


def _layernorm(out_dir):
    t = {}
    m = torch.nn.LayerNorm(8)  # LayerNorm(8), x [3, 5, 8]
    _randomize_affine(m)
    t.update(_layer_case("last", m, torch.randn(3, 5, 8)))
    m = torch.nn.LayerNorm([4, 5])  # LayerNorm([4, 5]), x [2, 3, 4, 5]
    _randomize_affine(m)
    t.update(_layer_case("last2", m, torch.randn(2, 3, 4, 5)))
    # LayerNorm(6, elementwise_affine=False), x [4, 6] far from 0 (mean 100, std 0.1): the variance
    # must not cancel. Float32 itself is ill-conditioned here (the mean is known to 1 ulp of 100,
    # 4e-5 of a standard deviation), so torch's float result is stored with the exact one,
    # computed in float64 from the same float32 input ("y64", "dx64").
    x = torch.randn(4, 6) * 0.1 + 100.0
    t.update(_layer_case("noaffine", torch.nn.LayerNorm(6, elementwise_affine=False), x))
    xd = x.double().requires_grad_(True)
    yd = torch.nn.functional.layer_norm(xd, (6,))
    yd.backward(t["noaffine.gy"].double())
    t["noaffine.y64"] = yd.detach().float()
    t["noaffine.dx64"] = xd.grad.float()
    # LayerNorm(37, eps=1e-3), x [2, 37]: a row longer than a SIMD register, with a tail
    m = torch.nn.LayerNorm(37, eps=1e-3)
    _randomize_affine(m)
    t.update(_layer_case("long", m, torch.randn(2, 37)))
    name = "layers_layernorm.safetensors"
    safetensors_io.save(t, out_dir / name, {"format": "pt"})
    return name


def _emb_case(prefix, module, idx):
    w = module.weight.detach().clone()
    y = module(idx)
    gy = torch.randn_like(y)
    module.zero_grad()
    y.backward(gy)
    entries = {"idx": idx.float(), "weight": w, "y": y.detach().clone(), "gy": gy, "dweight": module.weight.grad.clone()}
    return {f"{prefix}.{k}": v for k, v in entries.items()}


def _embedding(out_dir):
    t = {}
    # Embedding(10, 4), idx [3, 5] with repeated indices
    t.update(_emb_case("plain", torch.nn.Embedding(10, 4), torch.tensor([[1, 3, 3, 9, 0], [3, 1, 7, 7, 7], [2, 2, 5, 9, 3]])))
    # Embedding(10, 4, padding_idx=2), idx [2, 6] containing the padding index, repeated
    t.update(_emb_case("pad", torch.nn.Embedding(10, 4, padding_idx=2), torch.tensor([[2, 4, 4, 2, 0, 9], [1, 2, 2, 8, 4, 5]])))
    name = "layers_embedding.safetensors"
    safetensors_io.save(t, out_dir / name, {"format": "pt"})
    return name


def _state(out_dir):
    """The state_dict of Sequential(conv, bn, relu, pool) after a few training steps (so the
    running statistics are not the defaults), saved by torch as-is (num_batches_tracked is I64);
    and an input with its eval-mode output."""
    model = torch.nn.Sequential(OrderedDict(
        conv=torch.nn.Conv2d(2, 4, 3, padding=1), bn=torch.nn.BatchNorm2d(4), relu=torch.nn.ReLU(), pool=torch.nn.MaxPool2d(2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 2, 6, 6) + 0.5).square().mean().backward()
        opt.step()
    model.eval()
    x = torch.randn(2, 2, 6, 6)
    with torch.no_grad():
        y = model(x)
    names = ["layers_state.safetensors", "layers_state_io.safetensors"]
    safetensors_io.save(model.state_dict(), out_dir / names[0], {"format": "pt"})
    safetensors_io.save({"x": x, "y": y}, out_dir / names[1], {"format": "pt"})
    return names


def make(out_dir):
    torch.manual_seed(2024)
    written = [_conv(out_dir), _pool(out_dir), _batchnorm(out_dir), _layernorm(out_dir), _embedding(out_dir)]
    return written + _state(out_dir)
