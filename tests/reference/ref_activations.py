"""PyTorch references of the elementwise activations and Linear (float32), for
tests/nn/activation_test.cpp and tests/nn/linear_test.cpp.

One file, activations.safetensors, with each case stored as "<case>.<tensor>": the input "x", the
output "y", a random upstream gradient "gy" and the gradients of sum(y * gy): "dx", and for Linear
"dweight" and "dbias" next to its parameters "weight" and "bias".

Cases:
  relu, gelu (approximate='none'), gelu_tanh (approximate='tanh'), tanh, sigmoid:
      x [6, 37] (37: a SIMD tail for every width), spanning about [-9, 9] with a few exact
      zeros removed for ReLU's kink.
  linear:  torch.nn.Linear(13, 7) on x [5, 13]
  linear3: the same weights on x [2, 3, 13] (leading dimensions flattened)
  linear_nobias: torch.nn.Linear(13, 7, bias=False) on x [5, 13]
"""
import torch

import safetensors_io


def _case(prefix, fn, x, params=None):
    """Forward and backward of fn(x); returns the fixture entries under `prefix`."""
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    gy = torch.randn_like(y)
    y.backward(gy)
    out = {"x": x.detach().clone(), "y": y.detach().clone(), "gy": gy, "dx": x.grad.detach().clone()}
    for name, p in (params or {}).items():
        out[name] = p.detach().clone()
        out["d" + name] = p.grad.detach().clone()
    return {f"{prefix}.{k}": v for k, v in out.items()}


def make(out_dir):
    torch.manual_seed(20261126)
    tensors = {}
    x = torch.randn(6, 37) * 3.0
    x[0, :5] = torch.tensor([-9.0, -5.5, 5.5, 9.0, 1e-3])  # the far tails and a point near 0
    x[x.abs() < 1e-4] = 1e-2  # keep away from ReLU's kink at 0
    activations = {
        "relu": torch.nn.ReLU(),
        "gelu": torch.nn.GELU(),
        "gelu_tanh": torch.nn.GELU(approximate="tanh"),
        "tanh": torch.nn.Tanh(),
        "sigmoid": torch.nn.Sigmoid(),
    }
    for name, module in activations.items():
        tensors.update(_case(name, module, x))

    linear = torch.nn.Linear(13, 7)
    for prefix, shape in (("linear", (5, 13)), ("linear3", (2, 3, 13))):
        linear.zero_grad()
        tensors.update(_case(prefix, linear, torch.randn(*shape), {"weight": linear.weight, "bias": linear.bias}))
    nobias = torch.nn.Linear(13, 7, bias=False)
    tensors.update(_case("linear_nobias", nobias, torch.randn(5, 13), {"weight": nobias.weight}))

    name = "activations.safetensors"
    safetensors_io.save(tensors, out_dir / name, {"torch": torch.__version__, "dtype": "float32"})
    return [name]
