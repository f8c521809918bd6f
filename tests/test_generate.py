"""The synthetic candidate generator: deterministic, valid, and each record screens as intended."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest
from click.testing import CliRunner

import cli
import screening
from screening.generate import (
    DEFAULT_MIX,
    EXPECTED,
    OUTCOMES,
    generate,
    parse_mix,
    write_jsonl,
)
from screening.io import Item


def _text(n: int, seed: int, mix: str | None = None) -> str:
    out = io.StringIO()
    write_jsonl(out, n, seed=seed, mix=mix)
    return out.getvalue()


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert _text(300, 11) == _text(300, 11)
    assert _text(300, 11) != _text(300, 12)


def test_each_record_screens_to_its_intended_outcome(paper: screening.Ruleset) -> None:
    pairs = list(generate(3000, seed=3))
    rows = screening.screen_items((Item(f"line {i}", json.dumps(r)) for i, (_, r) in enumerate(pairs, 1)), paper)
    seen: Counter[str] = Counter()
    for (outcome, record), row in zip(pairs, rows, strict=True):
        decision, category = EXPECTED[outcome]
        assert row["decision"] == decision, (outcome, row)
        if category is not None:
            assert row["category"] == category, (outcome, row)
        seen[outcome] += 1
    assert set(seen) == set(OUTCOMES)  # the default mix reaches every outcome


def test_the_mix_controls_the_shares() -> None:
    counts = Counter(o for o, _ in generate(4000, seed=1, mix="eligible=3,undetermined=1"))
    assert set(counts) == {"eligible", "undetermined"}
    assert 0.70 < counts["eligible"] / 4000 < 0.80
    default = Counter(o for o, _ in generate(4000, seed=2))
    for outcome, share in DEFAULT_MIX.items():
        assert abs(default[outcome] / 4000 - share) < 0.03, outcome


def test_candidate_ids_are_unique() -> None:
    ids = [r["candidate_id"] for _, r in generate(5000, seed=4)]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("bad", ["eligble=1", "eligible=x", "eligible=-1", "eligible=0", "eligible"])
def test_a_bad_mix_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_mix(bad)


def test_generate_command(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli.main, ["generate", "--n", "50", "--seed", "9", "--mix", "withdrawal=1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 50 and result.output == _text(50, 9, "withdrawal=1")
    target = tmp_path / "c.jsonl"
    assert runner.invoke(cli.main, ["generate", "--n", "5", "-o", str(target)]).exit_code == 0
    assert len(target.read_text(encoding="utf-8").splitlines()) == 5
    bad = runner.invoke(cli.main, ["generate", "--n", "5", "--mix", "nope=1"])
    assert bad.exit_code == 2 and "--mix" in bad.output


def test_weights_too_large_to_add_up_are_a_usage_error() -> None:
    from click.testing import CliRunner

    import cli

    result = CliRunner().invoke(cli.main, ["generate", "--n", "3", "--mix", "eligible=1e308,error=1e308"])
    assert result.exit_code == 2 and "more than a number can hold" in result.output


def test_the_words_come_from_the_trial_pack(tmp_path) -> None:
    """Sites and medicines are the pack's generator.yaml: change it in a copy, the records follow."""
    import shutil

    import screening
    from screening.generate import generate

    pack = tmp_path / "pack"
    shutil.copytree(screening.load_ruleset().pack_dir, pack)
    vocab = (pack / "generator.yaml").read_text(encoding="utf-8")
    (pack / "generator.yaml").write_text(vocab.replace("Third People's Hospital of Chengdu", "Test Site A"),
                                         encoding="utf-8")
    ruleset = screening.load_ruleset(str(pack / "paper-2024.yaml"))
    sites = {record["site"] for _, record in generate(300, seed=1, ruleset=ruleset)}
    assert "Test Site A" in sites and "Third People's Hospital of Chengdu" not in sites
    (pack / "generator.yaml").write_text("sites: 5\n", encoding="utf-8")
    with pytest.raises(screening.RuleDefinitionError, match="generator.yaml"):
        list(generate(1, seed=1, ruleset=screening.load_ruleset(str(pack / "paper-2024.yaml"))))
