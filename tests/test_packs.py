"""Trial packs: one folder per trial under rules/, how sets are found in them, and what ships.

A pack is a folder under ``rules/`` with a ``pack.yaml`` (name, title, registration, default set,
its sets) beside its criteria sets, value sets and expected flows (rules/README.md).
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import cli
import screening
from screening import audit, protocol
from screening.errors import RuleDefinitionError, RulesetNotFound
from screening.protocol import load_pack, load_ruleset, resolve, rules_dir

ROOT = Path(__file__).resolve().parent.parent
PACK = rules_dir() / "nlc-k2"
#: The stamps of release 1.0.0, fixed before the sets moved into the pack: moving (and archiving)
#: must not change them.
STAMPS = {
    "paper-2024": "c61edf9ae94b84c17f3fb3719d20a49f12d86f763ec0b565459675a5a84af9c6",
    "registry-2023": "3e209eb3fcfcfa32a0b110860a099414182f0fe539dd4180ec5ecce27d0ad037",
}
#: The stamps of the 1.1.0 releases (English only), archived when 1.2.0 added the Chinese texts.
STAMPS_1_1_0 = {
    "paper-2024": "02eb7d0affb4df98f92e9eebd38d06a337b44a2dca00129f0cb85695e3edb8c2",
    "registry-2023": "431567631bfed8b169f4492a11c5a8e5335e5679e98cfe664ff76d8257d85e0e",
}
#: The stamps of the 1.2.0 releases, archived when 1.3.0 settled the condition codes marked CHECK.
STAMPS_1_2_0 = {
    "paper-2024": "b32750ab447a0383918369c23ed8e477065706d44e077aff2f27bd3fd9c2fb18",
    "registry-2023": "e5c6143a71331a42613e597e28c10e06f6de710a64dd32b5ca38c55fa67755d6",
}
#: Every shipped set version, as `rules --list --format json` names them.
SPECS = ["mgo-nlc/roguin-2017@1.0.0", "mgo-nlc/roguin-2017@1.1.0",
         "nlc-k2/paper-2024@1.0.0", "nlc-k2/paper-2024@1.1.0", "nlc-k2/paper-2024@1.2.0", "nlc-k2/paper-2024@1.3.0",
         "nlc-k2/registry-2023@1.0.0", "nlc-k2/registry-2023@1.1.0", "nlc-k2/registry-2023@1.2.0",
         "nlc-k2/registry-2023@1.3.0"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _copy_pack(dest: Path, name: str = "nlc-k2") -> Path:
    """A copy of the shipped nlc-k2 pack in ``dest/name`` (its pack.yaml renamed to ``name``)."""
    folder = dest / name
    shutil.copytree(PACK, folder, ignore=shutil.ignore_patterns("archive"))
    meta = folder / "pack.yaml"
    meta.write_text(meta.read_text(encoding="utf-8").replace("name: nlc-k2", f"name: {name}", 1), encoding="utf-8")
    return folder


def _edit_pack_yaml(folder: Path, edit) -> Path:
    meta = folder / "pack.yaml"
    data = yaml.safe_load(meta.read_text(encoding="utf-8"))
    edit(data)
    meta.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return meta


# ---------------------------------------------------------------------------------------------
# The layout


def test_everything_trial_specific_lives_in_the_nlc_k2_pack() -> None:
    loose = sorted(p.name for p in rules_dir().iterdir() if p.is_file() and p.name != "README.md")
    assert loose == [], "only the README stays at rules/ level; trial files go into a pack folder"
    assert sorted(p.name for p in rules_dir().iterdir() if p.is_dir() and (p / "pack.yaml").is_file()) == [
        "mgo-nlc", "nlc-k2"]
    for name in ("pack.yaml", "paper-2024.yaml", "registry-2023.yaml", "fields.yaml", "facts.yaml",
                 "valuesets/drug-classes.yaml", "valuesets/tumor-sites.yaml", "valuesets/condition-codes.yaml",
                 "expectations/figure1.yaml", "archive/paper-2024-1.0.0/paper-2024.yaml"):
        assert (PACK / name).is_file(), name


def test_pack_yaml_describes_the_pack() -> None:
    pack = load_pack(PACK)
    assert pack.name == "nlc-k2"
    assert pack.registration == "NCT05547750"
    assert pack.default_set == "paper-2024"
    assert pack.sets == ("paper-2024", "registry-2023")
    assert pack.title
    assert [p.name for p in screening.protocol.available_packs()] == ["mgo-nlc", "nlc-k2"]


def test_moving_into_the_pack_keeps_every_stamp() -> None:
    for name, sha in STAMPS.items():
        rs = load_ruleset(f"{name}@1.0.0")
        assert (rs.name, rs.version, rs.sha256) == (name, "1.0.0", sha)
        assert rs.path == f"rules/nlc-k2/archive/{name}-1.0.0/{name}.yaml"
        assert rs.pack == "nlc-k2"
        current = load_ruleset(name)
        assert (current.version, current.path, current.pack) == ("1.3.0", f"rules/nlc-k2/{name}.yaml", "nlc-k2")
    assert "rules/nlc-k2/valuesets/drug-classes.yaml" in load_ruleset("paper-2024").files


# ---------------------------------------------------------------------------------------------
# Finding a set


@pytest.mark.parametrize("spec", ["paper-2024", "paper-2024@1.3.0", "nlc-k2/paper-2024", "nlc-k2/paper-2024@1.3.0",
                                  "nlc-k2", str(PACK), str(PACK / "paper-2024.yaml")])
def test_every_way_of_naming_paper_2024_finds_it(spec: str) -> None:
    assert resolve(spec) == PACK / "paper-2024.yaml"
    assert load_ruleset(spec).sha256 == load_ruleset("paper-2024").sha256
    assert load_ruleset(spec).version == "1.3.0"


@pytest.mark.parametrize("spec", ["paper-2024@1.0.0", "nlc-k2/paper-2024@1.0.0"])
def test_every_way_of_naming_paper_2024_1_0_0_finds_its_snapshot(spec: str) -> None:
    assert resolve(spec) == PACK / "archive" / "paper-2024-1.0.0" / "paper-2024.yaml"
    assert load_ruleset(spec).sha256 == STAMPS["paper-2024"]


def test_unknown_names_say_what_exists() -> None:
    with pytest.raises(RulesetNotFound, match=r"no criteria set named 'paper-2042'; did you mean 'paper-2024'.*"
                                              r"available: paper-2024, registry-2023"):
        resolve("paper-2042")
    with pytest.raises(RulesetNotFound, match=r"no trial pack named 'nlc-k3'; did you mean 'nlc-k2'.*available: mgo-nlc, nlc-k2"):
        resolve("nlc-k3/paper-2024")
    with pytest.raises(RulesetNotFound, match=r"pack 'nlc-k2' has no criteria set 'paper-2042'; did you mean "
                                              r"'paper-2024'.*available: paper-2024, registry-2023"):
        resolve("nlc-k2/paper-2042")
    with pytest.raises(RulesetNotFound, match=r"no version '9\.9\.9'; available: 1\.0\.0, 1\.1\.0"):
        resolve("nlc-k2/registry-2023@9.9.9")


def test_a_folder_without_pack_yaml_is_not_a_pack(tmp_path: Path) -> None:
    with pytest.raises(RulesetNotFound, match="no pack.yaml"):
        resolve(str(tmp_path))


@pytest.fixture
def two_packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A rules folder holding the nlc-k2 pack and a copy of it named nlc-k2-copy (same set names)."""
    _copy_pack(tmp_path, "nlc-k2")
    _copy_pack(tmp_path, "nlc-k2-copy")
    monkeypatch.setattr(protocol, "rules_dir", lambda: tmp_path)
    return tmp_path


def test_a_set_name_in_two_packs_needs_its_pack(two_packs: Path) -> None:
    tmp_path = two_packs
    with pytest.raises(RulesetNotFound, match=r"'paper-2024' is in more than one pack: nlc-k2/paper-2024, "
                                              r"nlc-k2-copy/paper-2024; name it as PACK/SET"):
        resolve("paper-2024")
    assert resolve("nlc-k2-copy/paper-2024") == tmp_path / "nlc-k2-copy" / "paper-2024.yaml"
    assert resolve("nlc-k2/paper-2024@1.3.0") == tmp_path / "nlc-k2" / "paper-2024.yaml"
    assert load_ruleset("nlc-k2-copy/registry-2023").pack == "nlc-k2-copy"


def test_two_packs_with_one_name_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _copy_pack(tmp_path, "nlc-k2")
    shutil.copytree(tmp_path / "nlc-k2", tmp_path / "other")
    monkeypatch.setattr(protocol, "rules_dir", lambda: tmp_path)
    with pytest.raises(RuleDefinitionError, match=r"pack name 'nlc-k2' is used twice"):
        resolve("paper-2024")


def test_archived_versions_live_in_their_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _copy_pack(tmp_path)
    (folder / "archive").mkdir()
    old = (folder / "paper-2024.yaml").read_text(encoding="utf-8")
    old = old.replace('version: "1.3.0"', 'version: "0.9.0"').replace(": valuesets/", ": ../valuesets/")
    old = old.replace("record: {fields: fields.yaml, facts: facts.yaml}",
                      "record: {fields: ../fields.yaml, facts: ../facts.yaml}")
    (folder / "archive" / "paper-2024-0.9.0.yaml").write_text(old, encoding="utf-8")
    monkeypatch.setattr(protocol, "rules_dir", lambda: tmp_path)
    assert resolve("paper-2024") == folder / "paper-2024.yaml"  # the newest version
    assert resolve("paper-2024@0.9.0") == folder / "archive" / "paper-2024-0.9.0.yaml"
    archived = load_ruleset("nlc-k2/paper-2024@0.9.0")
    assert (archived.version, archived.pack) == ("0.9.0", "nlc-k2")
    assert protocol.available_rulesets()["nlc-k2/paper-2024"] == [
        ("0.9.0", folder / "archive" / "paper-2024-0.9.0.yaml"), ("1.3.0", folder / "paper-2024.yaml")]


def test_an_archived_snapshot_keeps_its_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rules/README.md's recipe: the set, its value sets and the record files copied into
    archive/<set>-<version>/, then the set's version raised."""
    folder = _copy_pack(tmp_path)
    released = load_ruleset(folder / "paper-2024.yaml").sha256
    snapshot = folder / "archive" / "paper-2024-1.3.0"
    shutil.copytree(folder / "valuesets", snapshot / "valuesets")
    for name in ("paper-2024.yaml", "fields.yaml", "facts.yaml"):
        shutil.copy(folder / name, snapshot / name)
    current = folder / "paper-2024.yaml"
    current.write_text(current.read_text(encoding="utf-8").replace('version: "1.3.0"', 'version: "1.4.0"'),
                       encoding="utf-8")
    monkeypatch.setattr(protocol, "rules_dir", lambda: tmp_path)
    old = load_ruleset("paper-2024@1.3.0")
    assert (old.version, old.sha256, old.pack) == ("1.3.0", released, "nlc-k2")
    assert old.path == "rules/nlc-k2/archive/paper-2024-1.3.0/paper-2024.yaml"
    assert load_ruleset("paper-2024@1.4.0").sha256 != old.sha256
    assert [p.parent.name for p in protocol.resolve_all("nlc-k2")] == ["paper-2024-1.3.0", "nlc-k2", "nlc-k2"]


def test_a_loose_set_file_still_loads_and_belongs_to_no_pack(tmp_path: Path) -> None:
    shutil.copytree(PACK / "valuesets", tmp_path / "valuesets")
    for name in ("paper-2024.yaml", "fields.yaml", "facts.yaml"):
        shutil.copy(PACK / name, tmp_path / name)
    rs = load_ruleset(tmp_path / "paper-2024.yaml")
    assert rs.sha256 == load_ruleset("paper-2024").sha256  # the stamp hashes file names, not folders
    assert (rs.pack, rs.pack_dir) == ("", None)


# ---------------------------------------------------------------------------------------------
# pack.yaml is validated when it is read


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(defualt_set="x"), r"pack.yaml.*field 'defualt_set'.*unknown field"),
    (lambda d: d.pop("default_set"), r"field 'default_set'.*required field is missing"),
    (lambda d: d.update(default_set="paper-2025"), r"field 'default_set'.*not one of the pack's sets.*paper-2024"),
    (lambda d: d.update(sets=["paper-2024", "registry-2023", "paper-2099"]),
     r"field 'sets'.*'paper-2099' has no file paper-2099.yaml in the pack"),
    (lambda d: d.update(sets=["paper-2024"]), r"field 'sets'.*registry-2023.yaml is a criteria set the pack does not list"),
    (lambda d: d.update(sets=["paper-2024", "paper-2024", "registry-2023"]), r"field 'sets'.*listed twice"),
    (lambda d: d.update(name="NLC K2"), r"field 'name'.*lower-case name"),
    (lambda d: d.update(title=["x"]), r"field 'title'.*must be text"),
])
def test_a_bad_pack_yaml_is_refused(tmp_path: Path, edit, message: str) -> None:
    folder = _copy_pack(tmp_path)
    _edit_pack_yaml(folder, edit)
    with pytest.raises(RuleDefinitionError, match=message):
        load_ruleset(folder)


def test_a_set_whose_name_differs_from_its_file_is_refused(tmp_path: Path) -> None:
    folder = _copy_pack(tmp_path)
    path = folder / "registry-2023.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("name: registry-2023", "name: registry-2024"),
                    encoding="utf-8")
    with pytest.raises(RuleDefinitionError, match=r"registry-2023.yaml.*names itself 'registry-2024'"):
        load_pack(folder)


def test_pack_yaml_is_read_under_the_safe_yaml_rules(tmp_path: Path) -> None:
    folder = _copy_pack(tmp_path)
    meta = folder / "pack.yaml"
    meta.write_text(meta.read_text(encoding="utf-8") + "title: again\n", encoding="utf-8")
    with pytest.raises(RuleDefinitionError, match="duplicate key 'title'"):
        load_pack(folder)


# ---------------------------------------------------------------------------------------------
# Expected flows come from the pack of the set being counted


def test_an_expected_flow_is_found_in_the_sets_own_pack(tmp_path: Path) -> None:
    folder = _copy_pack(tmp_path)
    flow = folder / "expectations" / "figure1.yaml"
    flow.write_text(flow.read_text(encoding="utf-8").replace("assessed: 310", "assessed: 311"), encoding="utf-8")
    mine = load_ruleset(folder / "paper-2024.yaml")
    assert audit.load_expectation("figure1", mine)["counts"]["assessed"] == 311
    assert audit.load_expectation("figure1", load_ruleset("paper-2024"))["counts"]["assessed"] == 310
    assert audit.load_expectation("nlc-k2/figure1")["counts"]["assessed"] == 310  # no set: PACK/NAME
    with pytest.raises(RuleDefinitionError, match=r"'figure1' is in more than one pack: mgo-nlc/figure1, nlc-k2/figure1"):
        audit.load_expectation("figure1")  # two packs have a figure1: a bare name would guess


def test_a_loose_set_finds_expected_flows_in_any_pack(tmp_path: Path) -> None:
    shutil.copytree(PACK / "valuesets", tmp_path / "valuesets")
    shutil.copy(PACK / "paper-2024.yaml", tmp_path / "mine.yaml")
    for name in ("fields.yaml", "facts.yaml"):
        shutil.copy(PACK / name, tmp_path / name)
    loose = load_ruleset(tmp_path / "mine.yaml")
    assert audit.load_expectation("nlc-k2/figure1", loose)["counts"]["assessed"] == 310
    with pytest.raises(RuleDefinitionError, match="more than one pack"):
        audit.load_expectation("figure1", loose)


def test_an_unknown_expected_flow_lists_the_names_there_are() -> None:
    with pytest.raises(RuleDefinitionError, match=r"no expected flow named 'figure2'; did you mean 'figure1'.*"
                                                  r"available: figure1"):
        audit.load_expectation("figure2", load_ruleset("paper-2024"))


def test_a_flow_in_two_other_packs_needs_its_pack(two_packs: Path) -> None:
    with pytest.raises(RuleDefinitionError, match=r"'figure1' is in more than one pack: nlc-k2/figure1, "
                                                  r"nlc-k2-copy/figure1; name it as PACK/NAME"):
        audit.load_expectation("figure1")
    own = load_ruleset("nlc-k2-copy/paper-2024")
    assert audit.load_expectation("figure1", own)["counts"]["assessed"] == 310  # its own pack first
    assert audit.load_expectation("nlc-k2/figure1")["name"] == "figure1"


# ---------------------------------------------------------------------------------------------
# The rules command


def test_rules_list_shows_packs_and_their_sets(runner: CliRunner) -> None:
    text = runner.invoke(cli.main, ["rules", "--list"], catch_exceptions=False).output
    lines = text.splitlines()
    assert lines[0].startswith("mgo-nlc: ") and "rules/mgo-nlc" in lines[0]
    assert "  roguin-2017: 1.0.0, 1.1.0 (default)" in lines
    nlc = next(line for line in lines if line.startswith("nlc-k2: "))
    assert "NCT05547750" in nlc and "rules/nlc-k2" in nlc
    assert "  paper-2024: 1.0.0, 1.1.0, 1.2.0, 1.3.0 (default)" in lines
    assert "  registry-2023: 1.0.0, 1.1.0, 1.2.0, 1.3.0" in lines
    listed = json.loads(runner.invoke(cli.main, ["rules", "--list", "--format", "json"]).output)
    assert [p["name"] for p in listed["packs"]] == ["mgo-nlc", "nlc-k2"]
    sets = listed["packs"][1]["sets"]
    assert [(s["name"], s["versions"], s["default"]) for s in sets] == [
        ("paper-2024", ["1.0.0", "1.1.0", "1.2.0", "1.3.0"], True),
        ("registry-2023", ["1.0.0", "1.1.0", "1.2.0", "1.3.0"], False)]
    assert [s["spec"] for s in listed["sets"]] == SPECS


@pytest.mark.parametrize("args", [["--check", "rules/nlc-k2"], ["--check", "--rules", "rules/nlc-k2"],
                                  ["--check", "nlc-k2"]])
def test_rules_check_on_a_pack_checks_every_set(runner: CliRunner, args: list[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = runner.invoke(cli.main, ["rules", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    paper, registry = load_ruleset("paper-2024").sha256, load_ruleset("registry-2023").sha256
    assert result.output.splitlines() == [
        f"rules/nlc-k2/archive/paper-2024-1.0.0/paper-2024.yaml: paper-2024 1.0.0 is valid (19 criteria, 62 rules, "
        f"sha256 {STAMPS['paper-2024']})",
        f"rules/nlc-k2/archive/paper-2024-1.1.0/paper-2024.yaml: paper-2024 1.1.0 is valid (19 criteria, 62 rules, "
        f"sha256 {STAMPS_1_1_0['paper-2024']})",
        f"rules/nlc-k2/archive/paper-2024-1.2.0/paper-2024.yaml: paper-2024 1.2.0 is valid (19 criteria, 62 rules, "
        f"sha256 {STAMPS_1_2_0['paper-2024']})",
        f"rules/nlc-k2/paper-2024.yaml: paper-2024 1.3.0 is valid (19 criteria, 62 rules, sha256 {paper})",
        f"rules/nlc-k2/archive/registry-2023-1.0.0/registry-2023.yaml: registry-2023 1.0.0 is valid (19 criteria, "
        f"45 rules, sha256 {STAMPS['registry-2023']})",
        f"rules/nlc-k2/archive/registry-2023-1.1.0/registry-2023.yaml: registry-2023 1.1.0 is valid (19 criteria, "
        f"45 rules, sha256 {STAMPS_1_1_0['registry-2023']})",
        f"rules/nlc-k2/archive/registry-2023-1.2.0/registry-2023.yaml: registry-2023 1.2.0 is valid (19 criteria, "
        f"45 rules, sha256 {STAMPS_1_2_0['registry-2023']})",
        f"rules/nlc-k2/registry-2023.yaml: registry-2023 1.3.0 is valid (19 criteria, 45 rules, sha256 {registry})",
    ]


def test_rules_check_on_a_pack_fails_on_its_first_bad_set(runner: CliRunner, tmp_path: Path) -> None:
    folder = _copy_pack(tmp_path)
    path = folder / "registry-2023.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("min_age_years: 65", "min_age_years: 650"),
                    encoding="utf-8")
    result = runner.invoke(cli.main, ["rules", "--check", str(folder)])
    assert result.exit_code == 1
    assert "paper-2024 1.3.0 is valid" in result.output
    assert "registry-2023.yaml" in result.output and "min_age_years" in result.output


def test_rules_takes_a_set_either_way_but_not_both(runner: CliRunner) -> None:
    result = runner.invoke(cli.main, ["rules", "--check", "paper-2024", "--rules", "registry-2023"])
    assert result.exit_code == 2 and "either" in result.output


# ---------------------------------------------------------------------------------------------
# Packaging: every file of every pack ships


def _shipped_patterns() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert config["package-dir"]["screening.rules"] == "rules"
    return list(config["package-data"]["screening.rules"])


def test_every_pack_file_is_package_data() -> None:
    """Every tracked file under rules/ matches a package-data glob, expanded as setuptools does
    (``glob(rules/<pattern>, recursive=True)``)."""
    rules = ROOT / "rules"
    shipped = {str(Path(p).relative_to(rules)) for pattern in _shipped_patterns()
               for p in glob.glob(str(rules / pattern), recursive=True) if Path(p).is_file()}
    tracked = subprocess.run(["git", "ls-files", "rules"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = {line.removeprefix("rules/") for line in tracked.stdout.splitlines()} | {"nlc-k2/pack.yaml"}
    assert "nlc-k2/valuesets/drug-classes.yaml" in files and "README.md" in files
    assert files <= shipped, sorted(files - shipped)
    assert "screening.rules" in _packages() and all("nlc-k2" not in p for p in _packages())


def _packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    return list(config["packages"])


def test_ci_loads_every_shipped_set_from_another_directory() -> None:
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "rules --list --format json" in text and "cd /tmp" in text


def test_sys_executable_can_list_from_elsewhere(tmp_path: Path) -> None:
    """From another directory the source checkout still finds its packs (editable install)."""
    out = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "rules", "--list", "--format", "json"],
                         cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert [s["spec"] for s in json.loads(out.stdout)["sets"]] == [
        *SPECS]
