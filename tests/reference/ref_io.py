"""Safetensors interop fixtures for tests/io/safetensors_test.cpp, both directions.

PyTorch -> sft: make() writes io_dtypes.safetensors, tensors of every dtype sft reads from
PyTorch (F32, F64, F16, BF16, I64, I32), ranks 0 to 4, special values included (signed zeros,
F16 subnormals and extremes, infinities, NaN, int extremes), with a __metadata__ map. Beside
each tensor "<name>" is "<name>.expect", the same values converted by torch: to F64 for the
floating and I32 tensors (exact), kept I64 for the I64 ones. The C++ test loads "<name>" as
double (and float, int64 where exact) and compares it with "<name>.expect" bit for bit.

sft -> PyTorch: written_by_sft_{f32,f64,i64,f16,bf16}.safetensors are written by the C++ test
"safetensors: the files sft writes for PyTorch" (tests/io/safetensors_test.cpp) from a formula,
each by one save_safetensors call, when the environment variable SFT_WRITE_REFERENCE=1 is set;
without it that test checks that sft still writes exactly the committed bytes. make() then checks the committed file with torch (safetensors_io.load): the
format's invariants, the dtypes, shapes, metadata and every value against the same formula here,
and raises if anything is wrong. To regenerate after a format change:

    SFT_WRITE_REFERENCE=1 build/tests/sft_test_io "[safetensors][reference]"
    cd tests/reference && /usr/bin/python3 -c "import pathlib, torch, ref_io as m; m.make(pathlib.Path('.'))"
"""
import json
import pathlib
import struct

import torch

import safetensors_io

SHAPES = {0: [], 1: [5], 2: [3, 4], 3: [2, 3, 2], 4: [2, 1, 2, 3]}


def _special(dtype):
    """Values at the edges of each dtype, placed first in the rank-4 tensor."""
    inf, nan = float("inf"), float("nan")
    if dtype == torch.float16:
        return [0.0, -0.0, 65504.0, -65504.0, 2.0 ** -24, -(2.0 ** -24), 2.0 ** -14 - 2.0 ** -24, inf, -inf, nan, 1.0 / 3.0]
    if dtype == torch.bfloat16:
        return [0.0, -0.0, 3.3895313892515355e38, 2.0 ** -133, (127 / 128) * 2.0 ** -126, inf, -inf, nan, 1.0 / 3.0]
    if dtype == torch.float32:
        return [0.0, -0.0, 3.4028234663852886e38, 1.401298464324817e-45, 1.1754943508222875e-38, inf, -inf, nan, 0.1]
    if dtype == torch.float64:
        return [0.0, -0.0, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, inf, -inf, nan, 0.1]
    if dtype == torch.int32:
        return [0, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 24 + 1, -(2 ** 24) - 1]
    if dtype == torch.int64:
        return [0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 53 + 1, -(2 ** 53) - 1]
    raise ValueError(dtype)


def _tensor(dtype, rank):
    shape = SHAPES[rank]
    n = 1
    for d in shape:
        n *= d
    if dtype.is_floating_point:
        t = (torch.randn(n, dtype=torch.float64) * 3).to(dtype)
    else:
        t = torch.randint(-1000, 1000, (n,), dtype=dtype)
    if rank == 4:
        special = torch.tensor(_special(dtype), dtype=torch.float64 if dtype.is_floating_point else torch.int64)
        t[: special.numel()] = special.to(dtype)
    return t.reshape(shape)


NAMES = {torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16",
         torch.int64: "i64", torch.int32: "i32"}

# --- what the C++ side writes (keep in sync with sft_reference_tensors() in safetensors_test.cpp) ---
# value(i) = ((i * 37) % 101 - 50) / 8: exact in every dtype written (BF16 holds 8 significant bits).


def _value(i):
    return ((i * 37) % 101 - 50) / 8.0


def _expected_written():
    """{file name: {tensor name: (dtype in the header, tensor)}}."""
    def seq(shape, dtype, offset=0):
        n = 1
        for d in shape:
            n *= d
        vals = [_value(i + offset) for i in range(n)]
        return torch.tensor(vals, dtype=torch.float64).to(dtype).reshape(shape)

    ints = torch.tensor([(i * 7919) % 2001 - 1000 for i in range(6)] + [2 ** 62, -(2 ** 62)], dtype=torch.int64)
    return {
        "written_by_sft_f32.safetensors": {
            "layer.weight": ("F32", seq([3, 4], torch.float32)),
            "layer.bias": ("F32", seq([4], torch.float32, 100)),
            "empty": ("F32", torch.zeros(0, 3, dtype=torch.float32)),
        },
        "written_by_sft_f64.safetensors": {
            "double.scalar": ("F64", torch.tensor(_value(7) + 2.0 ** -40, dtype=torch.float64)),
            "double.r4": ("F64", seq([2, 1, 3, 2], torch.float64, 200)),
        },
        "written_by_sft_i64.safetensors": {"labels": ("I64", ints)},
        "written_by_sft_f16.safetensors": {"half": ("F16", seq([2, 5], torch.float16, 300))},
        "written_by_sft_bf16.safetensors": {"brain": ("BF16", seq([5, 2], torch.bfloat16, 400))},
    }


def check_written_by_sft(path, expected):
    """Raises AssertionError unless the file sft wrote holds `expected` and follows the format."""
    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, f"{path}: header length {n} is not padded to 8 bytes"
    text = raw[8:8 + n].decode("utf-8")
    assert text.startswith("{"), f"{path}: header does not start with '{{'"
    header = json.loads(text)
    assert header.pop("__metadata__") == {"format": "pt", "written_by": "sft", "note": "quote \" and \u00e9"}, \
        f"{path}: wrong __metadata__"
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    end = 0
    for b, e, k in spans:
        assert b == end, f"{path}: tensor {k} begins at {b}, expected {end}"
        end = e
    assert end == len(raw) - 8 - n, f"{path}: data buffer not covered exactly"
    tensors, meta = safetensors_io.load(path)
    assert meta["written_by"] == "sft"
    assert set(tensors) == set(expected), f"{path}: keys {sorted(tensors)} != {sorted(expected)}"
    for name, (dtype_name, want) in expected.items():
        got = tensors[name]
        assert header[name]["dtype"] == dtype_name, f"{path}: {name} is {header[name]['dtype']}, expected {dtype_name}"
        assert got.dtype == want.dtype and list(got.shape) == list(want.shape), \
            f"{path}: {name} is {got.dtype} {list(got.shape)}, expected {want.dtype} {list(want.shape)}"
        assert torch.equal(got, want), f"{path}: {name} values differ:\n{got}\n{want}"


def make(out_dir):
    out_dir = pathlib.Path(out_dir)
    torch.manual_seed(1234)
    tensors = {}
    for dtype, short in NAMES.items():
        for rank in SHAPES:
            t = _tensor(dtype, rank)
            name = f"{short}.r{rank}"
            tensors[name] = t
            tensors[name + ".expect"] = t.to(torch.int64) if dtype == torch.int64 else t.to(torch.float64)
    safetensors_io.save(tensors, out_dir / "io_dtypes.safetensors",
                        metadata={"format": "pt", "source": "ref_io.py", "torch": torch.__version__})
    back, meta = safetensors_io.load(out_dir / "io_dtypes.safetensors")
    assert meta["source"] == "ref_io.py"
    for k, v in tensors.items():  # bit-exact round trip through the minimal writer (NaN included)
        assert torch.equal(back[k].reshape(-1).view(torch.uint8), v.reshape(-1).view(torch.uint8)), k

    # Rounding of float -> F16 / BF16 as torch does it, for sft's float_to_f16 / float_to_bf16 (the
    # save path): random values over every exponent, exact ties, subnormals, the overflow edges.
    g = torch.Generator().manual_seed(99)
    mant = torch.randint(0, 1 << 23, (1500,), generator=g, dtype=torch.int64)
    expo = torch.randint(-150, 130, (1500,), generator=g, dtype=torch.int64).double()
    sign = torch.where(torch.rand(1500, generator=g) < 0.5, -1.0, 1.0).double()
    x = (sign * (1 + mant.double() / 2 ** 23) * torch.pow(2.0, expo)).float()
    ties = torch.tensor([1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, 65519.99, 65520, 65536,
                         2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -26, 2 ** -14 - 2 ** -25, 3.3895e38, 3.4028e38,
                         0.0, -0.0, float("inf"), float("-inf"), float("nan"), 0.1, 1 / 3], dtype=torch.float64).float()
    x = torch.cat([ties, x])
    rounding = {"x": x, "x.f16": x.half(), "x.bf16": x.bfloat16()}
    safetensors_io.save(rounding, out_dir / "io_rounding.safetensors", metadata={"torch": torch.__version__})

    for file_name, expected in _expected_written().items():
        check_written_by_sft(out_dir / file_name, expected)
        print(f"ref_io: {file_name} verified with torch {torch.__version__}")
    return ["io_dtypes.safetensors", "io_rounding.safetensors"]
