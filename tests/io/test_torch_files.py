"""io.torch_pickle: the files torch.save writes (both layouts, every dtype NumPy holds, views, shared
storages, parameters, checkpoints with optimizer state) read as torch.load(weights_only=True) reads
them, without importing torch; what it must not load is refused before anything runs; a damaged file
is one InputError line that names it."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gradscope.errors import InputError
from gradscope.io import torch_pickle
from gradscope.io.weights import read_state_dict, read_tensor

FIXTURES = Path(__file__).parent / "fixtures"
LAYOUTS = ["zip", "legacy"]
REFUSED = ("which gradscope does not load; if you trust the file, load it in PyTorch and save only the "
           'state dict: torch.save(model.state_dict(), "model.pt")')


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def save(torch, obj, path: Path, layout: str = "zip") -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=layout == "zip")
    return path


def assert_read_as_torch_reads(torch, path: Path):
    """The pure reader's object equals torch.load(weights_only=True)'s: the same containers with the
    same keys in the same order, and each tensor an array of its shape, dtype and exact values."""
    ours = torch_pickle.load(path, "the file")
    assert_same(torch, ours, torch.load(path, weights_only=True), "the object")
    return ours


def assert_same(torch, ours, theirs, where: str) -> None:
    if isinstance(theirs, torch.Tensor):
        # numpy has no bfloat16: the reader widens it to float32, exactly as torch's .float() does
        expected = (theirs.float() if theirs.dtype == torch.bfloat16 else theirs).detach().numpy()
        assert isinstance(ours, np.ndarray) and ours.dtype == expected.dtype, where
        assert ours.shape == expected.shape and np.array_equal(ours, expected), where
        assert not ours.flags.writeable, where  # views of one storage share memory: none may change it
    elif isinstance(theirs, torch.device):
        assert ours == str(theirs), where
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs), where
        for key in theirs:
            assert_same(torch, ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):  # torch.Size is read as a plain tuple
        assert type(ours) is (tuple if isinstance(theirs, tuple) else list) and len(ours) == len(theirs), where
        for i, (mine, its) in enumerate(zip(ours, theirs)):
            assert_same(torch, mine, its, f"{where}[{i}]")
    else:
        assert type(ours) is type(theirs) and ours == theirs, where


def classifier(torch):
    """nn.Embedding, a 2-layer bidirectional LSTM and an nn.Linear head."""
    torch.manual_seed(0)
    return torch.nn.ModuleDict({
        "embedding": torch.nn.Embedding(11, 5, padding_idx=0),
        "lstm": torch.nn.LSTM(5, 4, num_layers=2, bidirectional=True, batch_first=True),
        "fc": torch.nn.Linear(8, 3),
    })


MODELS = {
    "rnn": lambda nn: nn.RNN(3, 4, num_layers=2, bidirectional=True, nonlinearity="relu"),
    "gru": lambda nn: nn.GRU(3, 4, num_layers=2, bidirectional=True, bias=False),
    "lstm_proj": lambda nn: nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2),
}


# -- files written by hand, opcode by opcode, as torch.save writes them -------------------------


def global_(module: str, name: str) -> bytes:
    """Pickle's GLOBAL opcode."""
    return f"c{module}\n{name}\n".encode()


def text(value: str) -> bytes:
    """Pickle's BINUNICODE opcode."""
    data = value.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def int32(value: int) -> bytes:
    """Pickle's BININT opcode."""
    return b"J" + value.to_bytes(4, "little", signed=True)


def integers(*values: int) -> bytes:
    """A tuple of BININT opcodes."""
    return b"(" + b"".join(int32(v) for v in values) + b"t"


def storage(numel: int = 4, view: bytes = b"") -> bytes:
    """The persistent id of float32 storage "0" of numel elements, ("storage", torch.FloatStorage, "0",
    "cpu", numel), as the zip layout writes it; the legacy layout adds a view (b"N": none)."""
    return b"(" + text("storage") + global_("torch", "FloatStorage") + text("0") + text("cpu") + int32(numel) + \
        view + b"tQ"


def tensor(size: tuple, stride: tuple, offset: int = 0, of: bytes | None = None,
           rebuild: str = "_rebuild_tensor_v2") -> bytes:
    """A call torch._utils.<rebuild>(storage, offset, size, stride[, False, {}]), of storage() by default;
    _rebuild_tensor_v2 takes requires_grad and the hooks besides, torch 0.3's _rebuild_tensor does not."""
    hooks = b"\x89}" if rebuild == "_rebuild_tensor_v2" else b""
    arguments = (storage() if of is None else of) + int32(offset) + integers(*size) + integers(*stride) + hooks
    return global_("torch._utils", rebuild) + b"(" + arguments + b"tR"


def state_dict(value: bytes) -> bytes:
    """Protocol 2 pickle of {"w": value}."""
    return b"\x80\x02}" + text("w") + value + b"s."


ARANGE = np.arange(4, dtype="<f4").tobytes()


def fake_pt(path: Path, pickled: bytes, storages: dict | None = None, byteorder: bytes | None = None) -> Path:
    """A zip laid out as torch.save's, with the given data.pkl and storages (default: float32 0..3)."""
    storages = {"0": ARANGE} if storages is None else storages
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{path.stem}/data.pkl", pickled)
        if byteorder is not None:
            zf.writestr(f"{path.stem}/byteorder", byteorder)
        for key, data in storages.items():
            zf.writestr(f"{path.stem}/data/{key}", data)
        zf.writestr(f"{path.stem}/version", b"3\n")
    return path


def legacy_pt(path: Path, pickled: bytes, keys: tuple = ("0",), storages: tuple = ((4, ARANGE),),
              protocol: int = 1001) -> Path:
    """A file in torch.save's legacy layout: magic number, protocol, system information, the object,
    the storage keys, then each storage's element count (int64) and bytes."""
    system = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = b"".join(pickle.dumps(v, protocol=2) for v in (torch_pickle.LEGACY_MAGIC, protocol, system))
    data = b"".join(count.to_bytes(8, "little") + raw for count, raw in storages)
    path.write_bytes(head + pickled + pickle.dumps(list(keys), protocol=2) + data)
    return path


def rewrite(source: Path, target: Path, change) -> Path:
    """A copy of a torch.save zip under target's name, each member's bytes passed through
    ``change(name, data)`` (None drops the member)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = change(name, old.read(name))
            if data is not None:
                new.writestr(target.stem + name[name.index("/"):], data)
    return target


def test_the_hand_made_pickles_are_read_as_torch_writes_them(tmp_path):
    """The positive control for the damaged files below: the same bytes with consistent numbers."""
    def read(pickled: bytes, legacy: bool = False) -> np.ndarray:
        path = (legacy_pt if legacy else fake_pt)(tmp_path / "ok.pt", pickled)
        return torch_pickle.load(path, "ok.pt")["w"]

    assert np.array_equal(read(state_dict(tensor((2, 2), (1, 2)))), [[0, 2], [1, 3]])
    assert read(state_dict(tensor((), (), offset=3))).shape == () and read(state_dict(tensor((), (), offset=3))) == 3
    assert np.array_equal(read(state_dict(tensor((3,), (1,), rebuild="_rebuild_tensor"))), [0, 1, 2])
    legacy = state_dict(tensor((2, 2), (1, 2), of=storage(view=b"N")))
    assert np.array_equal(read(legacy, legacy=True), [[0, 2], [1, 3]])
    # a storage view (torch < 0.4): elements 1 and 2 of the storage, seen as a storage of their own
    view = storage(view=b"(" + text("view") + int32(1) + int32(2) + b"t")
    assert np.array_equal(read(state_dict(tensor((2,), (1,), of=view)), legacy=True), [1, 2])


# -- what torch.save writes ------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", [*MODELS, "classifier"])
def test_recurrent_state_dicts_read_as_torch_load_reads_them(torch, tmp_path, name, layout):
    torch.manual_seed(1)
    model = classifier(torch) if name == "classifier" else MODELS[name](torch.nn)
    state = model.state_dict()
    path = save(torch, state, tmp_path / "m.pt", layout)
    assert_read_as_torch_reads(torch, path)
    loaded = read_state_dict(path)
    assert list(loaded) == list(state)
    for key, tensor in state.items():
        assert loaded[key].dtype == np.float64
        assert np.array_equal(loaded[key], tensor.double().numpy()), key


def every_dtype(torch, layout: str) -> dict:
    """A tensor of each dtype NumPy can hold, its values spread over the range (signs, zeros, the
    extremes, a subnormal); bfloat16 from float32 values whose low bits it drops."""
    torch.manual_seed(2)
    floats = torch.cat([torch.randn(9) * 100, torch.tensor([0.0, -0.0, 1e-40, 3e38, -3e38])])
    tensors = {
        "float64": floats.double() / 3, "float32": floats, "float16": (floats / 1e36).half(),
        "bfloat16": floats.bfloat16(),
        "int64": torch.tensor([-2**63, -1, 0, 2**63 - 1]), "int32": torch.tensor([-2**31, 7], dtype=torch.int32),
        "int16": torch.tensor([-2**15, 2**15 - 1], dtype=torch.int16),
        "int8": torch.tensor([-128, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
        "complex64": torch.randn(3, dtype=torch.complex64), "complex128": torch.randn(2, 2, dtype=torch.complex128),
    }
    if layout == "zip":  # torch.load cannot read these back from the legacy layout (no storage class)
        tensors.update({name: torch.tensor([0, 1, 2**bits - 1]).to(getattr(torch, name))
                        for name, bits in (("uint16", 16), ("uint32", 32))})
        tensors["uint64"] = torch.tensor([0, 2**62]).to(torch.uint64)
    return tensors


@pytest.mark.torch
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_dtype_numpy_holds_is_read_exactly(torch, tmp_path, layout):
    tensors = every_dtype(torch, layout)
    ours = assert_read_as_torch_reads(torch, save(torch, tensors, tmp_path / "d.pt", layout))
    assert ours["bfloat16"].dtype == np.float32
    assert np.array_equal(ours["bfloat16"], tensors["bfloat16"].float().numpy())
    assert not np.array_equal(ours["bfloat16"], tensors["float32"].numpy())  # it did lose bits: a real test


@pytest.mark.torch
@pytest.mark.parametrize("layout", LAYOUTS)
def test_views_and_shared_storages_read_as_torch_reads_them(torch, tmp_path, layout):
    torch.manual_seed(3)
    w = torch.randn(4, 6)
    views = {
        "w": w, "transposed": w.t(), "strided": w[1:, ::2], "row": w[2], "column": w[:, 3],
        "element": w[1, 1],  # 0-d, at an offset into w's storage
        "empty": w[:0], "expanded": torch.randn(3, 1).expand(3, 5),  # stride 0
        "scalar": torch.tensor(2.5), "count": torch.tensor(7),
    }
    path = save(torch, views, tmp_path / "v.pt", layout)
    ours = assert_read_as_torch_reads(torch, path)
    assert ours["element"].shape == () and ours["transposed"].shape == (6, 4)
    assert np.shares_memory(ours["w"], ours["transposed"])  # as torch's views share their storage
    if layout == "zip":  # w and its seven views share one storage: four storages in all
        assert len([n for n in zipfile.ZipFile(path).namelist() if "/data/" in n]) == 4


@pytest.mark.torch
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_transposed_view_saved_alone_is_read(torch, tmp_path, layout):
    w = torch.arange(12.0).reshape(3, 4)
    path = save(torch, w.t(), tmp_path / "t.pt", layout)
    assert_read_as_torch_reads(torch, path)
    assert np.array_equal(read_tensor(path, "inputs"), w.t().double().numpy())


@pytest.mark.torch
@pytest.mark.parametrize("layout", LAYOUTS)
def test_parameters_and_tensors_with_attributes_are_read_as_tensors(torch, tmp_path, layout):
    plain = torch.nn.Parameter(torch.randn(3))
    noted = torch.nn.Parameter(torch.randn(2, 2))
    noted.note = "kept by torch, not by gradscope"
    tensor = torch.randn(2)
    tensor.note = 1
    path = save(torch, {"plain": plain, "noted": noted, "tensor": tensor}, tmp_path / "p.pt", layout)
    raw = path.read_bytes() if layout == "legacy" else zipfile.ZipFile(path).read("p/data.pkl")
    for rebuilder in (b"_rebuild_parameter\n", b"_rebuild_parameter_with_state", b"_rebuild_from_type_v2"):
        assert rebuilder in raw  # each way torch pickles a tensor, exercised
    ours = torch_pickle.load(path, "p.pt")
    for key, value in {"plain": plain, "noted": noted, "tensor": tensor}.items():
        assert np.array_equal(ours[key], value.detach().numpy()), key


@pytest.mark.torch
@pytest.mark.parametrize("layout, key", [("zip", "model"), ("legacy", "state_dict"), ("zip", "model_state_dict")])
def test_checkpoint_with_optimizer_state_reads_whole_and_yields_its_state_dict(torch, tmp_path, layout, key):
    model = classifier(torch)
    optimizer = torch.optim.Adam(model.parameters())
    model["fc"](torch.ones(2, 8)).sum().backward()
    optimizer.step()  # per-parameter state: step, exp_avg, exp_avg_sq
    checkpoint = {
        "epoch": 7, "optimizer": optimizer.state_dict(), key: model.state_dict(),
        "rng_state": torch.get_rng_state(), "best_loss": 0.25, "history": [1.0, 0.5], "name": "run 3",
        "tags": {"lstm", "imdb"}, "blob": b"\x00\xffbytes", "shape": torch.Size([2, 3]), "note": None,
        "devices": [torch.device("cpu"), torch.device("cuda", 1)],
    }
    path = save(torch, checkpoint, tmp_path / "ckpt.pt", layout)
    ours = assert_read_as_torch_reads(torch, path)
    # Adam keeps state for fc's weight and bias only: the other parameters had no gradient
    assert [s["exp_avg"].shape for s in ours["optimizer"]["state"].values()] == [(3, 8), (3,)]
    assert ours["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    loaded = read_state_dict(path)  # the model's state dict, not the optimizer's tensors nor the RNG state
    assert list(loaded) == list(model.state_dict())
    for name, tensor in model.state_dict().items():
        assert np.array_equal(loaded[name], tensor.double().numpy()), name


@pytest.mark.torch
def test_big_endian_files_are_read(torch, tmp_path):
    tensors = {"float32": torch.randn(2, 3), "int64": torch.tensor([1, -2**40]),
               "bfloat16": torch.randn(4).bfloat16()}
    little = save(torch, tensors, tmp_path / "little.pt")
    itemsizes = {"0": 4, "1": 8, "2": 2}  # storages are keyed in the order the pickle meets them

    def swapped(name: str, data: bytes) -> bytes:
        if name.endswith("/byteorder"):
            return b"big"
        key = name.rsplit("/data/", 1)[-1] if "/data/" in name else None
        return np.frombuffer(data, f"<u{itemsizes[key]}").byteswap().tobytes() if key in itemsizes else data

    big = rewrite(little, tmp_path / "big.pt", swapped)
    assert zipfile.ZipFile(big).read("big/byteorder") == b"big"
    ours = assert_read_as_torch_reads(torch, big)  # torch swaps them back too: the file is as torch writes it
    assert np.array_equal(ours["int64"], [1, -2**40])


@pytest.mark.torch
def test_storages_named_as_older_torch_named_those_of_cuda_tensors(torch, tmp_path):
    state = {"w": torch.randn(3)}
    path = rewrite(save(torch, state, tmp_path / "cuda.pt"), tmp_path / "old.pt",
                   lambda name, data: data.replace(b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n"))
    assert b"torch.cuda\nFloatStorage" in zipfile.ZipFile(path).read("old/data.pkl")
    assert np.array_equal(torch_pickle.load(path, "old.pt")["w"], state["w"].numpy())


# -- dtypes only torch converts --------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["float8_e4m3fn", "sparse"])
def test_tensors_numpy_cannot_hold_are_read_by_torch_where_installed(torch, tmp_path, monkeypatch, kind):
    special = (torch.tensor([0.5, -2.0]).to(torch.float8_e4m3fn) if kind == "float8_e4m3fn"
               else torch.tensor([0.5, -2.0]).to_sparse())
    path = save(torch, {"w": torch.ones(2), "special": special}, tmp_path / "x.pt")
    assert read_state_dict(path)["special"].tolist() == [0.5, -2.0]
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(torch_pickle.NeedsTorch) as err:
        read_state_dict(path)
    name = "torch.float8_e4m3fn" if kind == "float8_e4m3fn" else "torch._utils._rebuild_sparse_tensor"
    assert str(err.value) == (f"weights file {path} holds {name}, which NumPy cannot hold; "
                              f"reading it needs PyTorch: pip install 'gradscope-bptt[torch]'")


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_complex32_goes_through_torch_and_is_refused_as_complex(torch, tmp_path):
    path = save(torch, {"z": torch.ones(2, dtype=torch.complex32)}, tmp_path / "z.pt")
    with pytest.raises(InputError, match=r"z\.pt, tensor 'z', holds complex numbers$"):
        read_state_dict(path)


# -- refused before anything runs -----------------------------------------------------------------


class Command:
    """Unpickling it runs a shell command: os.system, named in the pickle as the module defines it."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.torch
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_pickle_that_would_run_a_command_is_refused_before_it_runs(torch, tmp_path, layout):
    marker = tmp_path / "ran"
    path = save(torch, {"model": {"w": torch.ones(2)}, "hook": Command(f"touch {marker}")},
                tmp_path / "evil.pt", layout)
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == f"weights file {path} holds a pickled {os.system.__module__}.system, {REFUSED}"
    assert not marker.exists()


@pytest.mark.torch
def test_numpy_scalars_are_refused_as_torch_load_refuses_them(torch, tmp_path):
    path = save(torch, {"model": {"w": torch.ones(2)}, "best": np.float64(0.5)}, tmp_path / "np.pt")
    with pytest.raises(InputError, match=r"np\.pt holds a pickled numpy\.\S+, which gradscope does not load"):
        read_state_dict(path)
    with pytest.raises(Exception, match="weights_only"):
        torch.load(path, weights_only=True)


def test_a_hand_made_pickle_naming_os_system_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = fake_pt(tmp_path / "evil.pt", global_("os", "system") + b"(" + text(f"touch {marker}") + b"tR.")
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == f"weights file {path} holds a pickled os.system, {REFUSED}"
    assert not marker.exists()


@pytest.mark.parametrize("target", [("torch", "FloatStorage"), ("torch._utils", "_rebuild_tensor_v2")])
@pytest.mark.parametrize("state", [b"}" + text("code") + text("O") + b"s",  # {"code": "O"}: into __dict__
                                   b"N}" + text("code") + text("O") + b"s\x86"],  # (None, {...}): by setattr
                         ids=["dict-state", "slot-state"])
def test_a_pickle_cannot_set_attributes_on_what_the_reader_lends_it(tmp_path, target, state):
    """pickle's BUILD opcode sets attributes on the object on its stack: on a dtype or a rebuilder
    that would change how every later file is read."""
    path = fake_pt(tmp_path / "build.pt", global_(*target) + state + b"b.")
    with pytest.raises(InputError, match=r"build\.pt is a damaged torch\.save file"):
        torch_pickle.load(path, "weights file build.pt")
    assert torch_pickle.DTYPES["float32"] == ("float32", "f4")
    assert np.array_equal(torch_pickle.load(fake_pt(tmp_path / "ok.pt", state_dict(tensor((2, 2), (2, 1)))),
                                            "ok.pt")["w"], [[0, 1], [2, 3]])


# -- damaged files ----------------------------------------------------------------------------------


def v3_tensor(dtype: bytes) -> bytes:
    return global_("torch._utils", "_rebuild_tensor_v3") + b"(" + storage() + int32(0) + integers(1) + \
        integers(1) + b"\x89}" + dtype + b"tR"


@pytest.mark.parametrize("pickled, storages, problem", [
    (state_dict(tensor((2, 2), (3, 1))), None, "a tensor of size (2, 2) reaches element 4 of a float32 storage of 4"),
    (state_dict(tensor((2,), (1,), offset=4)), None,
     "a tensor of size (2,) reaches element 5 of a float32 storage of 4"),
    (state_dict(tensor((2, 2), (-1, 1))), None, "a tensor of size (2, 2), stride (-1, 1), offset 0"),
    (state_dict(tensor((1,), (1,), of=int32(5))), None, "a tensor without a storage"),
    (state_dict(v3_tensor(text("float32"))), None, "a tensor of dtype 'float32'"),
    (state_dict(global_("torch._tensor", "_rebuild_from_type_v2") + b"("
                + global_("torch._utils", "_rebuild_tensor_v2") + text("MyTensor") + b")}tR"),
     None, "a tensor of type 'MyTensor'"),
    (state_dict(global_("_codecs", "encode") + b"(" + text("abc") + text("rot13") + b"tR"), None,
     "bytes pickled in 'rot13'"),
    (state_dict(tensor((2,), (1,))), {}, "storage d/data/0 is missing"),
    (state_dict(tensor((2,), (1,), of=storage(numel=8))), None,
     "storage d/data/0 holds 16 bytes, not 8 float32 elements"),
    (state_dict(b"(" + text("storage") + b"tQ"), None, "unknown persistent id ('storage',)"),
    (b"\x80\x02}(X\x01", None, "pickle data was truncated"),
    (b"not a pickle", None, "invalid load key, 'n'."),
], ids=["stride", "offset", "negative", "no-storage", "v3-dtype", "tensor-type", "codec", "missing", "short",
        "persistent-id", "truncated", "garbage"])
def test_damaged_files_are_one_line_naming_the_file(tmp_path, pickled, storages, problem):
    path = fake_pt(tmp_path / "d.pt", pickled, storages)
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == f"weights file {path} is a damaged torch.save file ({problem}); save or copy it again"


LEGACY_TENSOR = state_dict(tensor((4,), (1,), of=storage(view=b"N")))


@pytest.mark.parametrize("layout, problem", [
    (dict(protocol=1000), "protocol version 1000, not 1001"),
    (dict(keys=("0", "9")), "storage '9' is listed but no tensor uses it"),
    (dict(keys=()), "storage '0' is missing"),
    (dict(storages=((3, ARANGE),)), "storage '0' has 3 elements, not 4"),
    (dict(storages=((4, ARANGE[:9]),)), "storage '0' is truncated: 9 of 16 bytes"),
], ids=["protocol", "unused", "missing", "count", "truncated"])
def test_damaged_legacy_files_are_one_line_naming_the_file(tmp_path, layout, problem):
    path = legacy_pt(tmp_path / "l.pt", LEGACY_TENSOR, **layout)
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == f"weights file {path} is a damaged torch.save file ({problem}); save or copy it again"


def test_a_zip_without_data_pkl_or_with_an_unknown_byte_order_is_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.pt", "w") as zf:
        zf.writestr("a/version", b"3\n")
    with pytest.raises(InputError, match=r"^a\.pt is a damaged torch\.save file \(no data\.pkl in the archive\)"):
        torch_pickle.load(tmp_path / "a.pt", "a.pt")
    path = fake_pt(tmp_path / "b.pt", state_dict(tensor((4,), (1,))), byteorder=b"middle")
    with pytest.raises(InputError, match=r"^b\.pt is a damaged torch\.save file \(byte order b'middle'\)"):
        torch_pickle.load(path, "b.pt")


def test_a_storage_whose_bytes_changed_is_named(tmp_path):
    path = fake_pt(tmp_path / "crc.pt", state_dict(tensor((4,), (1,))))
    data = bytearray(path.read_bytes())
    at = data.index(ARANGE)
    data[at + 5] ^= 0xFF  # a flipped bit in the stored floats: the zip's CRC-32 no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"crc\.pt is a damaged torch\.save file \(Bad CRC-32 for file "
                                         r"'crc/data/0'\); save or copy it again$"):
        read_state_dict(path)


@pytest.mark.torch
def test_a_truncated_legacy_file_is_named(torch, tmp_path):
    path = save(torch, {"w": torch.ones(3), "v": torch.zeros(3)}, tmp_path / "cut.pt", "legacy")
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(InputError, match=r"cut\.pt is a damaged torch\.save file \(storage '\d+' is truncated: 5 of 12 "
                                         r"bytes\); save or copy it again$"):
        read_state_dict(path)


# -- without torch ---------------------------------------------------------------------------------


def run_python(code: str, cwd: Path = FIXTURES) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_committed_files_read_where_torch_cannot_be_imported():
    """The fixtures (make_fixtures.py wrote them with torch 2.13) against the float64 copies beside them,
    in an interpreter where ``import torch`` fails."""
    seen = run_python(
        "import json, sys\n"
        "sys.modules['torch'] = None\n"  # import torch raises ImportError
        "import numpy as np\n"
        "from gradscope.io import torch_pickle\n"
        "from gradscope.io.weights import read_state_dict\n"
        "expected = np.load('expected.npz')\n"
        "wrong = []\n"
        "for name in ('checkpoint', 'legacy'):\n"
        "    loaded = read_state_dict(name + '.pt')\n"
        "    keys = [k.split('/', 1)[1] for k in expected.files if k.startswith(name + '/')]\n"
        "    wrong += [name] if list(loaded) != keys else []\n"
        "    wrong += [k for k in keys if not np.array_equal(loaded[k], expected[name + '/' + k])]\n"
        "whole = torch_pickle.load('checkpoint.pt', 'checkpoint.pt')\n"
        "print(json.dumps({'wrong': wrong, 'epoch': whole['epoch'],\n"
        "                  'groups': len(whole['optimizer']['param_groups']),\n"
        "                  'torch': [m for m in sys.modules if m.split('.')[0] == 'torch' and sys.modules[m]]}))\n"
    )
    assert seen == {"wrong": [], "epoch": 3, "groups": 1, "torch": []}


def test_analyze_reads_a_pt_file_without_importing_torch():
    """The whole command, in a fresh interpreter where torch may well be installed: it is not imported."""
    seen = run_python(
        "import contextlib, io, json, sys\n"
        "from gradscope.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):\n"
        "    code = main(['analyze', '--weights', 'checkpoint.pt', '--inputs', 'tokens.npy', '--targets',\n"
        "                 'labels.npy', '--padding-idx', '0', '--json'])\n"
        "doc = json.loads(out.getvalue())\n"
        "print(json.dumps({'code': code, 'command': doc['command'], 'torch': 'torch' in sys.modules}))\n"
    )
    assert seen == {"code": 0, "command": "analyze", "torch": False}
