"""Registering an adapter folder that holds a symbolic link (or a special file) is refused
before anything is staged: a link must not copy a file from elsewhere into the registry."""

from __future__ import annotations

import io
import os

import pytest
from test_registry_support import make_run, record

from cl_toolkit.core.errors import BadInput
from cl_toolkit.registry import open_registry
from cl_toolkit.registry.artifacts import _copy_hashing


@pytest.fixture
def reg(empty_workspace):
    with open_registry(empty_workspace) as r:
        yield r


def _nothing_registered(reg, ws):
    art = ws / "registry" / "artifacts"
    assert reg.versions() == [] and reg.events() == []
    assert not art.exists() or not any(art.rglob("*"))  # no staging folder, no half copy


def _secret(ws):
    secret = ws.parent / "outside" / "id_rsa"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("PRIVATE KEY\n")
    return secret


@pytest.mark.parametrize("where", ["adapter/notes.txt", "adapter/sub/deeper.bin", "recipe.yml",
                                   "eval/results.json"])
def test_a_link_to_a_file_outside_is_refused(reg, empty_workspace, where):
    run = make_run(empty_workspace, "1.0.0")
    link = run / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(_secret(empty_workspace))
    with pytest.raises(BadInput, match=rf"{link.name} is a symbolic link \(to .*id_rsa\)"):
        reg.register(record(run, "1.0.0"))
    _nothing_registered(reg, empty_workspace)


def test_a_link_inside_the_folder_and_a_linked_folder_are_refused(reg, empty_workspace):
    run = make_run(empty_workspace, "1.0.0")
    adapter = run / "adapter"
    (adapter / "copy.safetensors").symlink_to("adapter_model.safetensors")
    with pytest.raises(BadInput, match="copy.safetensors is a symbolic link"):
        reg.register(record(run, "1.0.0"))
    (adapter / "copy.safetensors").unlink()
    (adapter / "etc").symlink_to(_secret(empty_workspace).parent, target_is_directory=True)
    with pytest.raises(BadInput, match="adapter/etc is a symbolic link"):
        reg.register(record(run, "1.0.0"))
    _nothing_registered(reg, empty_workspace)
    (adapter / "etc").unlink()
    assert reg.register(record(run, "1.0.0")).version == "1.0.0"  # the clean folder registers


def test_a_special_file_is_refused(reg, empty_workspace):
    run = make_run(empty_workspace, "1.0.0")
    os.mkfifo(run / "adapter" / "pipe")  # reading it would hang the register
    with pytest.raises(BadInput, match="pipe is not a regular file"):
        reg.register(record(run, "1.0.0"))
    _nothing_registered(reg, empty_workspace)


def test_a_link_swapped_in_after_the_check_is_not_followed(tmp_path):
    link = tmp_path / "late-link"
    link.symlink_to(_secret(tmp_path / "ws"))
    with pytest.raises(BadInput, match="is a symbolic link"):
        _copy_hashing(link, io.BytesIO())
