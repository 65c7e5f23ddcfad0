import pickle

import torch
from safetensors.torch import save_file

from netcfg.errors import CheckpointError
from netcfg.io.safetensors_header import read_header


def test_a_header_length_starting_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    # Found by the property tests: 0x80 is also the first byte of a pickle.
    path = tmp_path / "x.safetensors"
    save_file({"x" * 68: torch.zeros(1)}, str(path))
    assert path.read_bytes()[:1] == b"\x80"
    assert list(read_header(path).tensors) == ["x" * 68]


def test_pickles_and_zip_archives_are_recognized_not_opened(tmp_path):
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps({"a": 1}))
    zipped = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(2)}, zipped)
    for path, what in ((pkl, "a Python pickle"), (zipped, "a zip archive")):
        try:
            read_header(path)
        except CheckpointError as exc:
            assert str(exc).startswith(f"{path}: error: {what}")
        else:
            raise AssertionError("accepted")
