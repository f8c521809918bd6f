"""The README's examples are real output: every line it shows (but elisions) is what the command prints."""

from __future__ import annotations

import re
import shlex

import pytest
from click.testing import CliRunner

import cli

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLES = re.findall(r"```console\n\$ (nlc-screen [^\n|]*)\n(.*?)```", README, re.S)


@pytest.mark.parametrize("command, shown", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_readme_example_output_is_real(command: str, shown: str) -> None:
    args = shlex.split(command)[1:]
    result = CliRunner().invoke(cli.main, args, catch_exceptions=False)
    printed = result.output.splitlines()
    for line in shown.splitlines():
        if "…" in line or not line.strip():
            continue  # elided in the README
        assert line in printed, line


def test_every_command_is_in_the_readme() -> None:
    for name in cli.main.commands:
        assert f"nlc-screen {name}" in README, name
