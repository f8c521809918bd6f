"""The README's examples are real output: every line it shows is what the command prints.

Each ```console block holds one ``$ command`` (pipes and ``printf`` included, run by bash from the
repository root with this virtualenv's ``nlc-screen`` first on PATH) and its output. The output is
compared whole, line by line, with two elision marks that nlc-screen itself never prints:

* a line holding only ``⋮`` stands for any number of lines (none included);
* ``⋯`` inside a line stands for any text within that line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import cli

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLES = re.findall(r"```console\n\$ ([^\n]*)\n(.*?)```", README, re.S)
SKIP_LINES, SKIP_TEXT = "⋮", "⋯"


def shown_pattern(shown: str) -> re.Pattern[str]:
    """The regular expression a shown output stands for (see the module docstring)."""
    parts = []
    for line in shown.splitlines():
        if line.strip() == SKIP_LINES:
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split(SKIP_TEXT)) + r"\n")
    return re.compile("".join(parts))


def run_shell(command: str) -> str:
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
               COLUMNS="200")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    return done.stdout


def test_the_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("command, shown", EXAMPLES, ids=[c[:60] for c, _ in EXAMPLES])
def test_readme_example_output_is_real(command: str, shown: str) -> None:
    printed = run_shell(command)
    assert SKIP_LINES not in printed and SKIP_TEXT not in printed, "the output uses an elision mark"
    pattern = shown_pattern(shown)
    if pattern.fullmatch(printed) is None:
        # find the first shown line that does not match, for a readable failure
        assert printed == shown, f"README example differs from the real output of: {command}"


def test_the_comparison_can_fail() -> None:
    printed = "Randomized   199   ok\nnext\n"
    assert shown_pattern("Randomized   199   ok\n⋮\n").fullmatch(printed)
    assert not shown_pattern("Randomized   999   ok\n⋮\n").fullmatch(printed)
    assert not shown_pattern("Randomized ⋯ ok\n").fullmatch(printed)  # a line left out is a difference
    assert shown_pattern("Randomized ⋯ ok\nnext\n").fullmatch(printed)


def test_every_command_is_in_the_readme() -> None:
    for name in cli.main.commands:
        assert f"nlc-screen {name}" in README, name
