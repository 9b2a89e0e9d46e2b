"""The pretrained file of the public API contract: the state_dict of
torch.nn.Sequential(OrderedDict(fc1=Linear(784, 64), act1=ReLU(), fc2=Linear(64, 10))), F32."""
from collections import OrderedDict

import torch

import safetensors_io


def make(out_dir):
    torch.manual_seed(1234)
    model = torch.nn.Sequential(OrderedDict(fc1=torch.nn.Linear(784, 64), act1=torch.nn.ReLU(), fc2=torch.nn.Linear(64, 10)))
    name = "contract_pretrained.safetensors"
    safetensors_io.save(model.state_dict(), out_dir / name, {"format": "pt"})
    return [name]
