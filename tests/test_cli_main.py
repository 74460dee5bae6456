"""main(): how the CLI turns a broken verb table entry and an unexpected exception into one
line on stderr and exit 1 (with CLT_DEBUG, the exception itself)."""

from __future__ import annotations

import click
import pytest

from cl_toolkit.cli import COMMANDS, cli


@click.command("boom")
def boom():
    """A command that fails the way a bug does."""
    raise RuntimeError("the disk ate the adapter")


def test_a_verb_whose_module_is_missing_names_verb_and_module(clt, monkeypatch, empty_workspace):
    monkeypatch.delenv("CLT_DEBUG", raising=False)
    monkeypatch.setitem(COMMANDS, "ghost", ("cl_toolkit.cli.not_built_yet:cli", "A verb without its module."))
    code, out, err = clt("ghost", "--help")
    assert (code, out) == (1, "")
    assert err.splitlines() == ["error: verb 'ghost' is unavailable: its module cl_toolkit.cli.not_built_yet "
                                "is missing (from cl_toolkit.cli.not_built_yet:cli)"]


def test_a_verb_table_entry_naming_a_missing_attribute(clt, monkeypatch, empty_workspace):
    monkeypatch.delenv("CLT_DEBUG", raising=False)
    monkeypatch.setitem(COMMANDS, "ghost", ("cl_toolkit.cli.output:no_such_command", "A verb without its code."))
    code, _, err = clt("ghost")
    assert code == 1
    assert err.splitlines() == ["error: verb 'ghost' is unavailable: cl_toolkit.cli.output has no no_such_command"]


def test_a_missing_verb_module_raises_under_clt_debug(monkeypatch, empty_workspace):
    from cl_toolkit.cli import main

    monkeypatch.setenv("CLT_DEBUG", "1")
    monkeypatch.setitem(COMMANDS, "ghost", ("cl_toolkit.cli.not_built_yet:cli", "A verb without its module."))
    with pytest.raises(ModuleNotFoundError, match="cl_toolkit.cli.not_built_yet"):
        main(["ghost"])


def test_an_unexpected_exception_is_one_line_and_exit_1(clt, monkeypatch, empty_workspace):
    monkeypatch.delenv("CLT_DEBUG", raising=False)
    monkeypatch.setitem(cli.commands, "boom", boom)
    code, out, err = clt("boom")
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0] == ("error: unexpected failure: RuntimeError: the disk ate the adapter "
                        "(set CLT_DEBUG=1 for a traceback)")


def test_clt_debug_lets_the_unexpected_exception_through(monkeypatch, empty_workspace):
    from cl_toolkit.cli import main

    monkeypatch.setenv("CLT_DEBUG", "1")
    monkeypatch.setitem(cli.commands, "boom", boom)
    with pytest.raises(RuntimeError, match="the disk ate the adapter"):
        main(["boom"])
