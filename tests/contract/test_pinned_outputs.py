"""The JSON of a set of runs as it was before the one-model restructuring (pinned_cases.py): one
model kind and one BPTT driver must not change a single digit of what the built models report,
nor the keys (`rnn.*`, `fc.*`) and bytes of the files they write.

What the restructuring added is listed in ADDED and left out of the comparison (a new key is not
a changed output); every other key and value must be the pinned one, byte for byte.
"""

from __future__ import annotations

import json

import pytest

from pinned_cases import CASES, PINNED, run_case

# Keys that exist only since the one-model restructuring: per layer and direction reports; and
# since issue 20, ``partial`` (null unless a Dask cluster was lost mid-run).
ADDED = {
    "spectrum": [("layers",)],
    "compare": [("runs", "*", "layers"), ("start",), ("partial",)],
    "sweep": [("model_at",), ("partial",)],
    "train": [("partial",)],
    "reproduce": [("partial",)],
    # issue 19: what reaches each layer's initial state, null unless --initial-state gave one
    "analyze": [("layers", "*", "initial_state"), ("layers", "*", "log10_flow_norms")],
    # check --every-layer (false unless given)
    "check": [("criteria", "every_layer")],
}
# New settings: every document's config has them (null where not given).
ADDED_SETTINGS = [(*where, name) for name in ("recurrent_scale", "initial_state")
                  for where in (("config",), ("report", "config"))]


def _cli(capsys):
    from gradscope.cli import main

    def run(argv):
        capsys.readouterr()
        code = main(argv)
        return code, capsys.readouterr().out

    return run


def _drop(doc, path: tuple) -> bool:
    """Remove the key at path ('*': every list item) from doc; whether anything was removed."""
    if not path or doc is None:
        return False
    head, rest = path[0], path[1:]
    if head == "*":
        return any([_drop(item, rest) for item in doc])
    if not rest:
        return isinstance(doc, dict) and head in doc and (doc.pop(head) or True)
    return _drop(doc.get(head), rest)


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_is_byte_for_byte_the_pinned_one(name, capsys):
    code, out, files = run_case(name, _cli(capsys))
    meta = json.loads((PINNED / f"{name}.meta.json").read_text())
    assert code == meta["exit_code"]
    assert files == meta["files"]
    pinned = (PINNED / f"{name}.json").read_text()
    if not out:
        assert pinned == ""
        return
    doc, old = json.loads(out), json.loads(pinned)
    command = doc.get("command") if isinstance(doc, dict) else None
    added = ADDED.get(command, []) + (ADDED_SETTINGS if isinstance(doc, dict) else [])
    for path in added:  # a pin written after a key was added holds it too
        _drop(old, path)
    if any([_drop(doc, path) for path in added]):  # what they held may count non-finite values
        assert doc.pop("nonfinite_count") >= old.pop("nonfinite_count")
    else:
        assert out == pinned
    # json.dumps writes floats by their shortest repr, so equal dumps are the same digits
    assert json.dumps(doc, indent=2) == json.dumps(old, indent=2)
