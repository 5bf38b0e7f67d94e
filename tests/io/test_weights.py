"""read_state_dict: the weight files people have (.pt/.pth, checkpoints, .safetensors, .npz) and in-memory
state dicts load as float64 arrays equal to the tensors; every bad input is an InputError whose message
names the file and the problem; no pickle is ever run."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gradscope.errors import InputError
from gradscope.io.weights import read_state_dict

FORMATS = ".npz (np.savez), .pt/.pth (torch.save) and .safetensors"
KERAS = ", and Keras models from .keras and .h5 files"
SAVE_ADVICE = 'torch.save(model.state_dict(), "model.pt")'


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def lstm_model(torch):
    """Embedding, a 2-layer bidirectional LSTM and a Linear head, named as a classifier would name them."""
    torch.manual_seed(0)
    return torch.nn.ModuleDict({
        "embed": torch.nn.Embedding(11, 5),
        "rnn": torch.nn.LSTM(5, 4, num_layers=2, bidirectional=True, batch_first=True),
        "fc": torch.nn.Linear(8, 3),
    })


def assert_same(loaded: dict, state: dict) -> None:
    """Same keys in the same order, float64, and exactly the tensors' values."""
    assert list(loaded) == list(state)
    for key, tensor in state.items():
        assert loaded[key].dtype == np.float64, key
        np.testing.assert_array_equal(loaded[key], tensor.detach().double().numpy(), err_msg=key)


def _leave_marker(path: str) -> None:
    Path(path).write_text("the pickle ran")


class Payload:
    """Unpickling it runs _leave_marker: proof that a loader ran the pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return _leave_marker, (self.marker,)


# -- PyTorch files ---------------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("name, legacy", [("model.pt", False), ("model.pth", False), ("legacy.pt", True)])
def test_state_dict_saved_by_torch_save_loads_exactly(torch, tmp_path, name, legacy):
    state = lstm_model(torch).state_dict()
    assert "rnn.weight_hh_l1_reverse" in state
    path = tmp_path / name
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    assert_same(read_state_dict(path), state)
    assert_same(read_state_dict(str(path)), state)


@pytest.mark.torch
def test_format_comes_from_the_content_not_the_suffix(torch, tmp_path):
    state = lstm_model(torch).state_dict()
    torch.save(state, tmp_path / "model.bin")
    np.savez(tmp_path / "arrays.weights", **{k: v.numpy() for k, v in state.items()})
    assert_same(read_state_dict(tmp_path / "model.bin"), state)
    assert_same(read_state_dict(tmp_path / "arrays.weights.npz"), state)


def test_checkpoint_keys_are_tried_in_order_and_non_tensors_skipped():
    first, second = {"w": np.ones(2)}, {"w": np.zeros(2)}
    assert read_state_dict({"model_state_dict": second, "state_dict": first})["w"].tolist() == [1, 1]
    assert read_state_dict({"state_dict": second, "model": first})["w"].tolist() == [1, 1]
    loaded = read_state_dict({"state_dict": {"_metadata": {"": {"version": 1}}, "version": 2, "w": np.ones(1)}})
    assert list(loaded) == ["w"]


def test_state_dict_without_tensors_is_refused():
    with pytest.raises(InputError) as err:
        read_state_dict({"epoch": 3, "model": {"hidden_size": 8}})
    message = str(err.value)
    assert message.startswith("the state dict holds no tensors (keys: 'epoch', 'model')")
    assert "'model', 'state_dict', 'model_state_dict'" in message


@pytest.mark.torch
def test_pickled_module_is_refused_with_the_way_to_save_a_state_dict(torch, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(lstm_model(torch), path)
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == (
        f"weights file {path} holds a pickled module (torch.save(model)), not a state dict; "
        f"save the state dict instead: {SAVE_ADVICE}"
    )


@pytest.mark.torch
@pytest.mark.parametrize("legacy", [False, True])
def test_pickle_that_would_run_code_is_refused_without_running(torch, tmp_path, legacy):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.ones(2)}, "hook": Payload(marker)}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    message = str(err.value)
    assert message.startswith(f"weights file {path} holds a pickled ")
    assert "test_weights._leave_marker, which gradscope does not load; if you trust the file" in message
    assert message.endswith(SAVE_ADVICE)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: a full unpickle does run it
    assert marker.read_text() == "the pickle ran"


def test_plain_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "weights.pt"
    path.write_bytes(pickle.dumps({"w": Payload(marker)}, protocol=4))
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == (
        f"weights file {path} is a Python pickle, not a file written by torch.save; "
        f"gradscope reads state dicts from {FORMATS} files{KERAS}"
    )
    assert not marker.exists()


@pytest.mark.torch
@pytest.mark.parametrize("protocol", [4, 5])
def test_pickle_protocols_that_torch_load_cannot_read_safely_are_read(torch, tmp_path, protocol):
    path = tmp_path / "protocol.pt"
    state = lstm_model(torch).state_dict()
    torch.save(state, path, pickle_protocol=protocol)
    assert_same(read_state_dict(path), state)


@pytest.mark.torch
def test_file_holding_a_single_tensor_is_refused(torch, tmp_path):
    path = tmp_path / "t.pt"
    torch.save(torch.ones(3), path)
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == f"weights file {path} holds a single tensor, not a state dict; save one with {SAVE_ADVICE}"


def fake_torch_zip(path: Path, *members: str) -> Path:
    """A zip laid out like torch.save's (or torch.jit.save's) output, written without torch."""
    with zipfile.ZipFile(path, "w") as zf:
        for member in members:
            zf.writestr(f"model/{member}", b"\x80\x02}q\x00.")
    return path


def test_pt_file_is_read_without_torch(tmp_path, monkeypatch):
    path = fake_torch_zip(tmp_path / "model.pt", "data.pkl", "version")  # an empty dict
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value).startswith(f"weights file {path} holds no tensors (keys: none)")


def test_torchscript_archive_is_refused(tmp_path):
    path = fake_torch_zip(tmp_path / "scripted.pt", "data.pkl", "constants.pkl", "code/model.py")
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == (
        f"weights file {path} is a TorchScript archive (torch.jit.save), not a state dict; "
        f"save the state dict instead: {SAVE_ADVICE}"
    )


# -- safetensors and npz ---------------------------------------------------------------------------


def test_safetensors_written_by_numpy_loads_exactly(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    arrays = {
        "rnn.weight_hh_l0": rng.standard_normal((8, 2)).astype(np.float32),
        "rnn.bias_hh_l0": rng.standard_normal(8),
        "bn.num_batches_tracked": np.array(12, dtype=np.int64),
        "mask": np.array([True, False]),
    }
    path = tmp_path / "model.safetensors"
    st_numpy.save_file(arrays, path)
    loaded = read_state_dict(path)
    assert sorted(loaded) == sorted(arrays)
    for key, array in arrays.items():
        assert loaded[key].dtype == np.float64 and loaded[key].shape == array.shape
        np.testing.assert_array_equal(loaded[key], array.astype(np.float64))


@pytest.mark.torch
def test_safetensors_written_by_torch_loads_exactly_including_half_precision(torch, tmp_path):
    st_torch = pytest.importorskip("safetensors.torch")
    state = dict(lstm_model(torch).state_dict())
    state["rnn.weight_hh_l0"] = state["rnn.weight_hh_l0"].to(torch.bfloat16)
    state["fc.weight"] = state["fc.weight"].to(torch.float16)
    path = tmp_path / "model.safetensors"
    st_torch.save_file(state, path)
    loaded = read_state_dict(path)
    assert sorted(loaded) == sorted(state)
    assert_same({k: loaded[k] for k in state}, state)


@pytest.mark.torch
def test_bfloat16_safetensors_without_torch_names_the_dtype(torch, tmp_path, monkeypatch):
    st_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "half.safetensors"
    st_torch.save_file({"w": torch.ones(2, dtype=torch.bfloat16)}, path)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == (
        f"weights file {path}, tensor 'w', is bfloat16, which NumPy cannot hold; "
        f"converting it needs PyTorch: pip install 'gradscope-bptt[torch]'"
    )


def test_safetensors_without_the_package_names_it(tmp_path, monkeypatch):
    st_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "model.safetensors"
    st_numpy.save_file({"w": np.ones(2)}, path)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == (
        f"reading weights file {path} (a .safetensors file) needs the safetensors package: pip install safetensors"
    )


def test_damaged_safetensors_is_an_input_error(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "cut.safetensors"
    st_numpy.save_file({"w": np.ones(4)}, path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(InputError, match=r"cut\.safetensors is not a valid \.safetensors file \(.+\); gradscope reads"):
        read_state_dict(path)


def test_npz_state_dict_loads(tmp_path):
    arrays = {"rnn.weight_ih_l0": np.arange(6.0).reshape(3, 2), "fc.bias": np.array([0.5, -1.0])}
    path = tmp_path / "model.npz"
    np.savez(path, **arrays)
    loaded = read_state_dict(path)
    assert list(loaded) == list(arrays)
    for key, array in arrays.items():
        np.testing.assert_array_equal(loaded[key], array)


def test_single_npy_is_refused_with_the_formats(tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.ones((2, 2)))
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == (
        f"weights file {path} is a single .npy array, not a state dict; "
        f"weights are read from a state dict in an .npz, .pt/.pth or .safetensors file, or a Keras model in a .keras or .h5 file"
    )


# -- files that are not weights --------------------------------------------------------------------


def bad_file(kind: str, path: Path) -> Path:
    """A file named like weights that holds something else."""
    if kind == "text":
        path.write_text("rnn.weight_hh_l0 0.1 0.2\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = fake_torch_zip(path, "data.pkl", "data/0", "version").read_bytes()
        path.write_bytes(data[: len(data) // 2])  # the zip's central directory is at the end
    else:
        path.write_bytes(bytes(range(200, 256)))
    return path


@pytest.mark.parametrize("kind, problem", [
    ("text", "holds text, not weights"),
    ("empty", "is empty"),
    ("truncated", "is not a valid .npz or .pt/.pth file: its zip archive is truncated or damaged; save or copy"),
    ("binary", "is not in a format gradscope reads"),
])
def test_file_that_is_not_weights_is_named_with_the_formats(tmp_path, kind, problem):
    path = bad_file(kind, tmp_path / "model.pt")
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    message = str(err.value)
    assert message.startswith(f"weights file {path} {problem}")
    assert message.endswith(f"gradscope reads state dicts from {FORMATS} files{KERAS}")


def test_directory_and_missing_file_are_named(tmp_path):
    with pytest.raises(InputError) as err:
        read_state_dict(tmp_path)
    assert str(err.value) == (
        f"weights path {tmp_path} is a directory, not a file; gradscope reads state dicts from {FORMATS} files{KERAS}"
    )
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(InputError) as err:
        read_state_dict(missing, what="teacher weights")
    assert str(err.value) == (
        f"teacher weights file not found: {missing}; gradscope reads state dicts from {FORMATS} files{KERAS}"
    )


def test_zip_that_is_neither_npz_nor_torch_is_refused(tmp_path):
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(InputError, match=r"model\.zip is a zip archive but neither an \.npz .* it holds readme\.txt"):
        read_state_dict(path)


def test_source_of_another_type_is_refused():
    with pytest.raises(InputError, match="^weights must be a file path or a state dict .*, not list$"):
        read_state_dict([np.ones(2)])


# -- in-memory state dicts -------------------------------------------------------------------------


@pytest.mark.torch
def test_in_memory_torch_state_dict_of_any_dtype(torch):
    model = lstm_model(torch)
    state = dict(model.named_parameters())  # requires_grad tensors
    assert all(p.requires_grad for p in state.values())
    state["embed.weight"] = state["embed.weight"].to(torch.bfloat16)
    state["fc.bias"] = state["fc.bias"].to(torch.float16)
    state["bn.num_batches_tracked"] = torch.tensor(5)  # 0-d int64
    state["mask"] = torch.tensor([True, False])
    loaded = read_state_dict(state)
    assert_same(loaded, state)
    assert loaded["bn.num_batches_tracked"].shape == ()
    loaded["fc.bias"][:] = 0  # a copy: the model is untouched
    assert torch.count_nonzero(state["fc.bias"]) > 0


def test_in_memory_numpy_state_dict_never_imports_torch():
    code = (
        "import sys, numpy as np\n"
        "from gradscope.io.weights import read_state_dict\n"
        "out = read_state_dict({'model': {'w': np.ones((2, 3), np.float32), 'n': np.int64(3), 's': np.array(2)}})\n"
        "assert list(out) == ['w', 's'] and out['w'].dtype == np.float64 and out['s'].shape == ()\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'safetensors')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_non_finite_value_is_named_by_key():
    with pytest.raises(InputError) as err:
        read_state_dict({"rnn.weight_hh_l0": np.array([[1.0, np.nan], [np.inf, 0.0]])})
    assert str(err.value) == "the state dict, tensor 'rnn.weight_hh_l0', contains 2 NaN or infinite value(s)"


@pytest.mark.torch
def test_non_finite_tensor_in_a_file_names_the_file_and_key(torch, tmp_path):
    path = tmp_path / "diverged.pt"
    torch.save({"fc.weight": torch.ones(2), "fc.bias": torch.tensor([float("inf")])}, path)
    with pytest.raises(InputError) as err:
        read_state_dict(path)
    assert str(err.value) == f"weights file {path}, tensor 'fc.bias', contains 1 NaN or infinite value(s)"


@pytest.mark.torch
def test_complex_and_object_values_are_named_by_key(torch):
    with pytest.raises(InputError, match="^the state dict, tensor 'z', holds complex numbers$"):
        read_state_dict({"w": torch.ones(2), "z": torch.ones(2, dtype=torch.complex64)})
    with pytest.raises(InputError, match="^the state dict, tensor 'o', holds Python objects, not numbers$"):
        read_state_dict({"o": np.array([1, "a"], dtype=object)})
