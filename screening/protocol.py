"""Find and load a criteria set from a trial pack in ``rules/`` (criteria, precedence, parameters, value sets).

A trial pack is a folder of ``rules/`` with a ``pack.yaml`` (:func:`load_pack`) beside its criteria
sets, value sets, expected flows and archived versions; :func:`resolve` turns ``SET``,
``PACK/SET``, ``…@VERSION``, a pack's name or folder (its default set) or a file into a set file.
A criteria set is a YAML file that a clinician can read (see ``rules/README.md``). Loading it checks
every criterion, condition, reason and value set against the record contract and the catalogue of
derived facts, and fails with a :class:`~screening.errors.RuleDefinitionError` that names the file,
the criterion and the field ("did you mean …"). The result is a frozen :class:`Ruleset` stamped with
its name, version and the sha256 of every file it loaded.

What is refused before validation (a rules file may come from anyone, through ``--rules PATH``):

* a file that is not a regular file (a FIFO, ``/dev/zero``, a directory), or larger than
  :data:`MAX_RULES_FILE_BYTES` (1 MiB): opened non-blocking, checked, read with a bounded read;
* YAML aliases (``*name``, the "billion laughs"), merge keys (``<<``), a duplicate key in any
  mapping (named with its line), a key that is not a plain scalar, nesting deeper than
  :data:`MAX_YAML_DEPTH` (see :func:`parse_yaml`);
* control characters in any key or text: C0 and C1 controls, DEL, the bidi controls (U+202A–202E,
  U+2066–2069, LRM, RLM, ALM) and the line and paragraph separators; a line break only in the prose
  fields ``description`` and ``note``. A title, label or reason is printed on one line: a line break
  would forge a line of a report, an escape would drive the terminal. Also values that YAML tags
  make (``!!binary``, ``!!set``, …).

What validation adds to the per-field checks:

* the type of every field before it is used: a text where a text belongs, a list of names where a
  list belongs (``categories: 5`` or ``ask: [[birth_date]]`` is an error naming the field, not a
  traceback);
* template expansion measured before anything is built: each expanded text at most
  :data:`MAX_TEMPLATE_TEXT` characters, all of a set's expansions at most
  :data:`MAX_TEMPLATE_TOTAL_CHARS` characters and :data:`MAX_TEMPLATE_TOTAL_VALUES` values; a ``$``
  that starts no variable, and two keys that expand alike, are refused;
* parameters as the pack's ``facts.yaml`` declares them: only declared names, every one that is
  not optional, whole numbers within their declared range (so that no date arithmetic on a valid
  record can overflow), choices among their values, dates, and the declared relations between
  them (``at_least``, ``with``, ``not_before``);
* the record (``fields.yaml``) and the derived facts (``facts.yaml``) the set names under
  ``record``: every field, derivation and argument; the catalogue of facts, quotable values and
  field lists that conditions, reasons and ``ask`` are checked against is made from them;
* what :mod:`screening.decision` needs to count every candidate in the right CONSORT box: at least
  one procedural criterion, whose rules surely fail (``not_met``) on consent ``declined`` and
  ``withdrawn`` and surely stay open on ``pending``, in a withdrawal box of its own (not
  ``consort.eligible``, ``eligible_pending`` or ``undetermined``, and not shared with an eligibility
  criterion); no eligibility criterion in those three boxes; ``consort.eligible`` distinct from the
  other two. Otherwise a declined candidate would be counted as randomized.

Example::

    ruleset = load_ruleset("paper-2024")  # or "nlc-k2/registry-2023", "paper-2024@1.0.0", "nlc-k2", a path
    ruleset.stamp  # {"name": "paper-2024", "version": "1.0.0", "sha256": "…"}
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .derivations import Catalogue, Declarations, FactType, Plan, check_parameters, read_declarations
from .errors import RuleDefinitionError, RulesetNotFound, did_you_mean
from .fields import RecordSpec, load_record_spec
from .i18n import DEFAULT_LANG, LANGUAGES, localized
from .matching import drug_classifier, words
from .text import UNSAFE, UNSAFE_CLASS

STATUSES = ("met", "not_met", "unknown", "review")
KINDS = ("inclusion", "exclusion", "procedural")
#: Within one criterion, the outcome that wins when several rules apply (criteria.md §1.1):
#: the failing finding, then unknown, then review; the passing outcome is the default.
RANKING = {
    "inclusion": ("not_met", "unknown", "review", "met"),
    "procedural": ("not_met", "unknown", "review", "met"),
    "exclusion": ("met", "unknown", "review", "not_met"),
}
OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "known")
NUMERIC_OPERATORS = ("lt", "le", "gt", "ge")
DEFAULT_RULESET = "paper-2024"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
#: The largest rules or value-set file read (the shipped ones are under 40 KiB; parsing 1 MiB of
#: YAML takes about a second and 160 MB, so a hostile file cannot stall start-up for long).
MAX_RULES_FILE_BYTES = 1 << 20
#: The deepest nesting of mappings and lists in a rules file (the shipped sets go 10 deep).
MAX_YAML_DEPTH = 32
# Condition tree: ("all", (cond, ...)) | ("any", (cond, ...)) | ("cmp", fact, op, value)
Condition = tuple[Any, ...]


@dataclass(frozen=True)
class Rule:
    """One way a criterion can come out other than its default."""

    status: str
    when: Condition
    reason: str
    ask: tuple[str, ...]
    #: the reason template by language (``en`` is ``reason``)
    reasons: Mapping[str, str] = field(default_factory=dict)
    #: what the investigator must decide and record, by language (every ``review`` rule has it)
    decide: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str
    reasons: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Criterion:
    id: str
    kind: str
    title: str
    protocol_text: str
    sources: tuple[str, ...]
    spec: str
    category: str
    subcategory: str | None
    ask: tuple[str, ...]
    default: Outcome
    rules: tuple[Rule, ...]
    #: the title by language (``en`` is ``title``)
    titles: Mapping[str, str] = field(default_factory=dict)

    def title_in(self, lang: str) -> str:
        """The title in ``lang`` (the English ``title`` when it has no translation)."""
        return self.title if lang == DEFAULT_LANG else self.titles.get(lang) or self.title

    def fails(self, status: str) -> bool:
        """Whether this status rules the candidate out (inclusion not met, exclusion met)."""
        return status == ("met" if self.kind == "exclusion" else "not_met")


@dataclass(frozen=True)
class DrugClass:
    name: str
    title: str
    atc: tuple[str, ...]
    atc_exclude: tuple[str, ...]
    rxnorm: frozenset[str]
    names: tuple[tuple[str, ...], ...]          # word sequences
    cjk_names: tuple[str, ...]                  # substrings
    names_exclude: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class SiteList:
    name: str
    title: str
    names: tuple[tuple[str, ...], ...]
    cjk_names: tuple[str, ...]


@dataclass(frozen=True)
class Ruleset:
    """A validated criteria set. Build it with :func:`load_ruleset`."""

    name: str
    version: str
    sha256: str
    title: str
    description: str
    path: str
    parameters: dict[str, Any]
    precedence: tuple[str, ...]
    criteria: dict[str, Criterion]
    sources: dict[str, str]
    consort: dict[str, Any]
    drug_classes: dict[str, DrugClass]
    site_lists: dict[str, SiteList]
    files: tuple[str, ...] = field(default=())
    #: the trial pack the set belongs to ("" for a set file outside any pack) and its folder
    pack: str = ""
    pack_dir: Path | None = None
    #: condition key (or record field) -> its validated code lists, for importers (FHIR, EHR)
    condition_codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the pack's record (fields.yaml): its field tree and strict model
    record: RecordSpec = field(default=None)  # type: ignore[assignment]
    #: the names rules may use (facts.yaml with the set's value sets and parameters)
    catalogue: Catalogue = field(default=None)  # type: ignore[assignment]
    #: the derivation of facts, compiled for this set's parameters and value sets
    plan: Plan = field(default=None, repr=False)  # type: ignore[assignment]
    #: the parameters the pack declares (facts.yaml): name -> {type, min, max, values, doc, …}
    parameter_declarations: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the parameters every decision row shows (facts.yaml ``stamp``), as text
    stamped_parameters: dict[str, Any] = field(default_factory=dict)
    #: the languages the set's texts are written in (``en`` first), and the review note of each
    #: translation (``translations`` in the set: e.g. a draft that needs a native speaker's review)
    languages: tuple[str, ...] = ("en",)
    translations: dict[str, str] = field(default_factory=dict)
    #: box -> its label, by language (``consort.labels`` holds the English)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def label(self, box: str, lang: str = "en") -> str:
        """A CONSORT box's label in ``lang`` (its English label, or its name, when it has none)."""
        english = str(self.consort.get("labels", {}).get(box, box))
        if lang == DEFAULT_LANG:
            return english
        return self.labels.get(box, {}).get(lang) or english

    def speaks(self, lang: str) -> bool:
        return lang in self.languages

    @property
    def stamp(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    @property
    def ordered(self) -> list[Criterion]:
        """Criteria in precedence order."""
        return [self.criteria[cid] for cid in self.precedence]

    @cached_property
    def rank(self) -> dict[str, int]:
        """Criterion id -> its place in the precedence order."""
        return {cid: i for i, cid in enumerate(self.precedence)}

    @cached_property
    def flat_rules(self) -> tuple[tuple[str, Rule], ...]:
        """Every rule of every criterion, in precedence order: the engine's rule numbers."""
        return tuple((c.id, rule) for c in self.ordered for rule in c.rules)

    def fact_types(self) -> dict[str, FactType]:
        return self.catalogue.facts


# ---------------------------------------------------------------------------------------------
# Finding criteria sets


def rules_dir() -> Path:
    """The folder the trial packs live in (``rules/`` in the repo, ``screening/rules`` installed)."""
    installed = Path(str(resources.files("screening"))) / "rules"
    if installed.is_dir():  # a wheel install: rules/ ships as screening/rules
        return installed
    return Path(__file__).resolve().parent.parent / "rules"  # a source checkout or editable install


#: The file that makes a folder a trial pack.
PACK_FILE = "pack.yaml"
_PACK_REQUIRED = {"name", "title", "default_set", "sets"}
_PACK_OPTIONAL = {"description", "registration", "criterion_ids"}


@dataclass(frozen=True)
class Pack:
    """A trial pack: a folder with a ``pack.yaml`` beside its criteria sets (``<set>.yaml``), value
    sets, expected flows (``expectations/``) and archived versions (``archive/``). Read it with
    :func:`load_pack`."""

    name: str
    title: str
    description: str
    registration: str
    default_set: str
    sets: tuple[str, ...]
    path: Path
    #: the id scheme of the pack's criteria (pattern, example), if it sets one
    criterion_ids: tuple[str, str] | None = None

    def set_file(self, name: str) -> Path:
        return self.path / f"{name}.yaml"

    def versions(self) -> dict[str, list[tuple[str, Path]]]:
        """Set name -> [(version, file), ...], oldest first: the pack's sets and every archived version
        (``archive/*.yaml``, or a snapshot folder ``archive/<set>-<version>/<set>.yaml``)."""
        found: dict[str, list[tuple[str, Path]]] = {name: [] for name in self.sets}
        archive = self.path / "archive"
        files = [self.set_file(name) for name in self.sets]
        files += sorted(archive.glob("*.yaml")) + sorted(archive.glob("*/*.yaml"))
        for path in files:
            head = _head(path)
            if "criteria" in head and head.get("name"):
                found.setdefault(head["name"], []).append((head.get("version", ""), path))
        for versions in found.values():
            versions.sort(key=lambda item: _version_key(item[0]))
        return found


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".")) if _VERSION_RE.match(version) else (0,)


def display_path(path: Path) -> str:
    """A path as errors show it: ``rules/…`` for what ships, else as given."""
    try:
        return "rules/" + str(path.resolve().relative_to(rules_dir().resolve()))
    except ValueError:
        return str(path)


_TOP_KEY = re.compile(r'^(name|version|criteria):[ \t]*"?([^"#\n]*?)"?[ \t]*(?:#.*)?$', re.M)


def _head(path: Path) -> dict[str, str]:
    """The top-level ``name``, ``version`` and ``criteria`` keys of a rules file, without parsing it all."""
    try:
        text = read_rules_file(path)[0].decode("utf-8")
    except (OSError, UnicodeDecodeError, _Refused):
        return {}
    found: dict[str, str] = {}
    for match in _TOP_KEY.finditer(text):
        found.setdefault(match.group(1), match.group(2).strip())
    return found


def load_pack(folder: Path) -> Pack:
    """Read and validate a pack's ``pack.yaml``: only known keys; a lower-case ``name``; text
    ``title``, ``description`` and ``registration``; ``sets`` a list of distinct set names, each with
    its file ``<set>.yaml`` in the folder naming itself so; every criteria set in the folder listed;
    ``default_set`` one of ``sets``.

    :raises RuleDefinitionError: naming pack.yaml (or the set file) and the field.
    """
    shown = display_path(folder / PACK_FILE)
    data = read_yaml_file(folder / PACK_FILE, display=shown)

    def fail(message: str, field: str | None = None, file: str = shown) -> RuleDefinitionError:
        return RuleDefinitionError(message, file=file, field=field)

    if not isinstance(data, dict):
        raise fail("must be a mapping at the top level")
    for key in data:
        if key not in _PACK_REQUIRED | _PACK_OPTIONAL:
            shown_key = str(key)[:40]
            raise fail(f"unknown field{did_you_mean(shown_key, _PACK_REQUIRED | _PACK_OPTIONAL)}", shown_key)
    for key in sorted(_PACK_REQUIRED - set(data)):
        raise fail("required field is missing", key)
    if not isinstance(data["name"], str) or not _NAME_RE.match(data["name"]):
        raise fail("must be a lower-case name such as 'nlc-k2'", "name")
    for key in ("title", "description", "registration"):
        if key in data and not isinstance(data[key], str):
            raise fail("must be text", key)
    sets = data["sets"]
    if not isinstance(sets, list) or not sets or not all(isinstance(s, str) and _NAME_RE.match(s) for s in sets):
        raise fail("must be a non-empty list of criteria set names such as 'paper-2024'", "sets")
    for index, name in enumerate(sets):
        if name in sets[:index]:
            raise fail(f"{name!r} is listed twice", "sets")
        path = folder / f"{name}.yaml"
        if not path.is_file():
            raise fail(f"{name!r} has no file {name}.yaml in the pack", "sets")
        head = _head(path)
        if head.get("name") != name:
            raise fail(f"names itself {head.get('name', '')[:40]!r}, not {name!r} as its file name and "
                       f"pack.yaml say", "name", file=display_path(path))
    for path in sorted(folder.glob("*.yaml")):
        if path.name != PACK_FILE and path.stem not in sets and "criteria" in _head(path):
            raise fail(f"{path.name} is a criteria set the pack does not list", "sets")
    ids = data.get("criterion_ids")
    if ids is not None:
        if not isinstance(ids, dict) or set(ids) != {"pattern", "example"} or \
                not all(isinstance(v, str) and v.strip() for v in ids.values()):
            raise fail("must be {pattern: <regular expression>, example: <ids such as I1 or E12>}", "criterion_ids")
        try:
            re.compile(ids["pattern"])
        except re.error as exc:
            raise fail(f"not a regular expression ({exc})", "criterion_ids.pattern") from None
    default = data["default_set"]
    if default not in sets:
        raise fail(f"not one of the pack's sets{did_you_mean(str(default)[:40], sets)}; sets: {', '.join(sets)}",
                   "default_set")
    return Pack(name=data["name"], title=data["title"].strip(), description=str(data.get("description", "")).strip(),
                registration=str(data.get("registration", "")).strip(), default_set=default, sets=tuple(sets),
                path=folder, criterion_ids=(ids["pattern"], ids["example"]) if ids else None)


def available_packs() -> list[Pack]:
    """The shipped trial packs (every folder of :func:`rules_dir` with a ``pack.yaml``), by name.

    :raises RuleDefinitionError: a pack.yaml is invalid, or two packs share a name.
    """
    base = rules_dir()
    packs: dict[str, Pack] = {}
    for folder in sorted(base.iterdir() if base.is_dir() else []):
        if folder.is_dir() and (folder / PACK_FILE).is_file():
            pack = load_pack(folder)
            if pack.name in packs:
                raise RuleDefinitionError(f"pack name {pack.name!r} is used twice (also by "
                                          f"{display_path(packs[pack.name].path)})", file=display_path(folder / PACK_FILE),
                                          field="name")
            packs[pack.name] = pack
    return [packs[name] for name in sorted(packs)]


def pack_of(path: Path) -> Pack | None:
    """The pack a criteria set file belongs to: the folder holding it, or for an archived version
    (``archive/x.yaml``, ``archive/<snapshot>/x.yaml``) the folder holding ``archive/``; else None.

    :raises RuleDefinitionError: that pack's pack.yaml is invalid.
    """
    folder = path.resolve().parent
    for candidate, archived in ((folder, True), (folder.parent, folder.name == "archive"),
                                (folder.parent.parent, folder.parent.name == "archive")):
        if archived and (candidate / PACK_FILE).is_file():
            return load_pack(candidate)
    return None


def available_rulesets() -> dict[str, list[tuple[str, Path]]]:
    """Shipped criteria sets: ``PACK/SET`` -> [(version, path), ...], oldest first. Archived versions included."""
    return {f"{pack.name}/{name}": versions for pack in available_packs() for name, versions in pack.versions().items()}


def _pick(label: str, versions: list[tuple[str, Path]], version: str) -> Path:
    if not version:
        return versions[-1][1]
    for ver, path in versions:
        if ver == version:
            return path
    raise RulesetNotFound(f"criteria set {label!r} has no version {version!r}; "
                          f"available: {', '.join(v for v, _ in versions)}")


def resolve(spec: str) -> Path:
    """Turn a spec into the file of a criteria set:

    * ``SET`` or ``SET@VERSION``: a set of any shipped pack (the name is unique across packs);
    * ``PACK/SET`` or ``PACK/SET@VERSION``: a set of the pack named (always accepted);
    * ``PACK``: the pack's default set;
    * a path: a set file (inside a pack folder or loose), or a pack folder (its default set).

    :raises RulesetNotFound: with the names that do exist.
    :raises RuleDefinitionError: a pack.yaml it had to read is invalid.
    """
    candidate = Path(spec)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            if not (candidate / PACK_FILE).is_file():
                raise RulesetNotFound(f"folder {spec!r} is not a trial pack (no {PACK_FILE}) and not a criteria set file")
            pack = load_pack(candidate)
            return pack.set_file(pack.default_set)
        if candidate.exists():
            raise RulesetNotFound(f"criteria set file {spec!r} is not a regular file")
        raise RulesetNotFound(f"criteria set file {spec!r} does not exist")
    name, _, version = spec.partition("@")
    packs = {pack.name: pack for pack in available_packs()}
    if "/" in name:
        pack_name, _, set_name = name.partition("/")
        if pack_name not in packs:
            raise RulesetNotFound(f"no trial pack named {pack_name!r}{did_you_mean(pack_name, packs)}; "
                                  f"available: {', '.join(sorted(packs))}")
        sets = packs[pack_name].versions()
        if set_name not in sets:
            raise RulesetNotFound(f"pack {pack_name!r} has no criteria set {set_name!r}"
                                  f"{did_you_mean(set_name, sets)}; available: {', '.join(sorted(sets))}")
        return _pick(name, sets[set_name], version)
    found = [(pack, versions[name]) for pack in packs.values()
             for versions in [pack.versions()] if name in versions]
    if len(found) > 1:
        raise RulesetNotFound(f"criteria set {name!r} is in more than one pack: "
                              f"{', '.join(f'{pack.name}/{name}' for pack, _ in found)}; name it as PACK/SET")
    if found:
        return _pick(name, found[0][1], version)
    if name in packs:  # a pack's name: its default set
        pack = packs[name]
        return _pick(f"{name}/{pack.default_set}", pack.versions()[pack.default_set], version)
    names = sorted({set_name for pack in packs.values() for set_name in pack.versions()})
    raise RulesetNotFound(f"no criteria set named {name!r}{did_you_mean(name, names)}; "
                          f"available: {', '.join(names)}")


def resolve_all(spec: str) -> list[Path]:
    """Every file ``spec`` stands for: for a pack (its name or folder) every version of every set it
    holds, archived ones included; otherwise the one file :func:`resolve` finds."""
    candidate = Path(spec)
    pack: Pack | None = None
    if candidate.is_dir() and (candidate / PACK_FILE).is_file():
        pack = load_pack(candidate)
    elif "/" not in spec and "@" not in spec and not candidate.exists() and candidate.suffix not in (".yaml", ".yml"):
        packs = {p.name: p for p in available_packs()}
        sets = {name for p in packs.values() for name in p.versions()}
        if spec in packs and spec not in sets:
            pack = packs[spec]
    if pack is None:
        return [resolve(spec)]
    return [path for versions in pack.versions().values() for _, path in versions]


#: resolved path of a set -> (the set, the (path, inode, size, mtime) of every file it read)
_CACHE: dict[str, tuple[Ruleset, tuple[tuple[str, int, int, int], ...]]] = {}
#: PyYAML's C loader when it was built with libyaml (six times faster at start-up), else the pure one.
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _unchanged(stamps: tuple[tuple[str, int, int, int], ...]) -> bool:
    for name, ino, size, mtime in stamps:
        try:
            st = os.stat(name)
        except OSError:
            return False
        if (st.st_ino, st.st_size, st.st_mtime_ns) != (ino, size, mtime):
            return False
    return True


def load_ruleset(spec: str | Path = DEFAULT_RULESET) -> Ruleset:
    """Load and validate a criteria set by name, ``name@version`` or path.

    Loaded sets are kept per process; an edit to the set or to any value set it read loads it afresh.

    :raises RulesetNotFound: nothing matches ``spec``.
    :raises RuleDefinitionError: the set or one of its value sets is invalid; names file, criterion, field.
    """
    path = resolve(str(spec))
    key = str(path.resolve())
    hit = _CACHE.get(key)
    if hit is not None and _unchanged(hit[1]):
        return hit[0]
    loader = _Loader(path)
    ruleset = loader.load()
    _CACHE[key] = (ruleset, tuple(loader.stamps))
    return ruleset


# ---------------------------------------------------------------------------------------------
# Reading rules files: regular files of bounded size, YAML without aliases or duplicate keys


class _Refused(Exception):
    """A rules file is refused before validation; ``field`` is where in it, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
    return f"is not a regular file ({kind})"


def read_rules_file(path: Path, limit: int = MAX_RULES_FILE_BYTES) -> tuple[bytes, os.stat_result]:
    """The bytes of a rules file, and its status: only a regular file, of at most ``limit`` bytes.

    A FIFO, a device (``/dev/zero``), a directory or a socket is refused before it is read (opened
    non-blocking, checked again on the open file); the read stops one byte past ``limit``.

    :raises OSError: the file cannot be opened or read.
    :raises _Refused: not a regular file, or too large.
    """
    problem = _not_regular(os.stat(path).st_mode)  # before opening: opening some devices does things
    if problem:
        raise _Refused(problem)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        problem = _not_regular(st.st_mode)
        if problem:
            raise _Refused(problem)
        too_large = _Refused(f"is larger than {limit} bytes; a rules file is a few KiB")
        if st.st_size > limit:
            raise too_large
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 16, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large
        return b"".join(chunks), st
    finally:
        os.close(fd)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _show(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "…"


def _path(where: Any) -> str | None:
    """A field path such as ``criteria[3].title`` from the walk's (parent, key) chain."""
    parts: list[str] = []
    while where is not None:
        where, key = where
        parts.append(f"[{key}]" if isinstance(key, int) and not isinstance(key, bool) else f".{key}")
    return "".join(reversed(parts)).lstrip(".") or None


def parse_yaml(text: str) -> Any:
    """A YAML document as Python data, refusing what a rules file never needs and an attacker uses.

    Refused: aliases (``*name``: a "billion laughs" expands a few lines into gigabytes; an anchor
    that is never used again is harmless), merge keys (``<<``: a merged key and an explicit one
    silently override each other), a duplicate key in any mapping (YAML would let the last one win
    silently), a key that is not a plain scalar, and nesting deeper than :data:`MAX_YAML_DEPTH`.
    The tree is checked before it is turned into Python objects, so nothing is expanded first.

    :raises yaml.YAMLError: not valid YAML.
    :raises _Refused: naming the line, and the field where known.
    """
    loader = _YamlLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        seen: set[int] = set()
        # (node, where: None at the top or (where of the parent, key or index), depth); the field
        # path is spelt out only for an error.
        stack: list[tuple[yaml.Node, Any, int]] = [(root, None, 0)]
        mapping, sequence, plain = yaml.MappingNode, yaml.SequenceNode, "tag:yaml.org,2002:str"
        while stack:
            node, where, depth = stack.pop()
            if id(node) in seen:
                raise _Refused(f"a YAML alias repeats the node anchored at line {node.start_mark.line + 1}; "
                               f"aliases (*name) are not allowed in rules files: write the value out", _path(where))
            seen.add(id(node))
            if node.__class__ is mapping:
                if depth >= MAX_YAML_DEPTH:
                    raise _Refused(f"line {node.start_mark.line + 1}: nested deeper than {MAX_YAML_DEPTH} levels",
                                   _path(where))
                keys: dict[Any, yaml.Node] = {}
                children: list[tuple[yaml.Node, Any, int]] = []
                for key_node, value_node in node.value:
                    if key_node.tag == plain and key_node.__class__ is yaml.ScalarNode:
                        key = key_node.value
                    elif key_node.tag == _MERGE_TAG:
                        raise _Refused(f"line {key_node.start_mark.line + 1}: merge keys (<<) are not allowed in "
                                       f"rules files; write the keys out", _path(where))
                    elif isinstance(key_node, yaml.ScalarNode):
                        key = loader.construct_object(key_node)
                    else:
                        raise _Refused(f"line {key_node.start_mark.line + 1}: a key must be a plain word, not a "
                                       f"list or a mapping", _path(where))
                    if id(key_node) in seen:
                        raise _Refused(f"line {key_node.start_mark.line + 1}: a key must not be an alias",
                                       _path(where))
                    seen.add(id(key_node))
                    first = keys.get(key)
                    if first is not None:
                        raise _Refused(f"duplicate key {_show(key)} at line {key_node.start_mark.line + 1} (first at "
                                       f"line {first.start_mark.line + 1}); YAML would silently keep only the last",
                                       _path((where, key)))
                    keys[key] = key_node
                    children.append((value_node, (where, key), depth + 1))
                stack.extend(reversed(children))  # document order, so an alias is found where it is used
            elif node.__class__ is sequence:
                if depth >= MAX_YAML_DEPTH:
                    raise _Refused(f"line {node.start_mark.line + 1}: nested deeper than {MAX_YAML_DEPTH} levels",
                                   _path(where))
                stack.extend((child, (where, i), depth + 1) for i, child in reversed(list(enumerate(node.value))))
        return loader.construct_document(root)
    finally:
        loader.dispose()


def read_yaml_file(path: Path, *, display: str | None = None) -> Any:
    """Any YAML file that ships beside the rules (e.g. ``rules/expectations/*.yaml``), read under the
    same limits as a criteria set: a regular file of at most 1 MiB, no aliases, no duplicate keys.

    :raises RuleDefinitionError: naming the file (``display``, else the path) and, where known, the field.
    """
    shown = display or str(path)
    try:
        raw, _ = read_rules_file(path)
        return parse_yaml(raw.decode("utf-8"))
    except _Refused as exc:
        raise RuleDefinitionError(str(exc) if exc.field else f"{shown} {exc}", file=shown, field=exc.field) from None
    except OSError as exc:
        raise RuleDefinitionError(f"cannot read: {exc.strerror}", file=shown) from None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: bad UTF-8, an integer over 4,300 digits
        raise RuleDefinitionError(f"not valid YAML: {exc}", file=shown) from None


# ---------------------------------------------------------------------------------------------
# Validation

#: What the procedural criteria must make of each consent value (record contract, shared/intake-record.md):
#: declined and withdrawn candidates leave before randomisation; pending ones are not randomized yet.
_CONSENT_NEEDS: dict[str, tuple[str, ...]] = {
    "declined": ("not_met",),
    "withdrawn": ("not_met",),
    "pending": ("not_met", "unknown", "review"),
}


def _surely(cond: Condition, fact: str, values: tuple[str, ...]) -> set[str]:
    """The values of an enum ``fact`` for which ``cond`` holds whatever the other facts are."""
    kind = cond[0]
    if kind in ("all", "any"):
        parts = [_surely(c, fact, values) for c in cond[1]]
        return set.intersection(*parts) if kind == "all" else set.union(*parts)
    _, name, op, operand = cond
    if name != fact:
        return set()
    if op == "eq":
        return {v for v in values if v == operand}
    if op == "ne":
        return {v for v in values if v != operand}
    if op == "in":
        return {v for v in values if v in operand}
    if op == "not_in":
        return {v for v in values if v not in operand}
    return set()


#: Box names a criteria set may not use: the error rows' category and the decision values.
RESERVED_BOXES = frozenset({"error", "eligible", "excluded", "undetermined"})
#: The most tests one rule's condition may hold, and the most alternatives it may spread into (an
#: ``any`` adds its branches' alternatives, an ``all`` multiplies them, ``in`` is one test a value):
#: the engine compiles a condition into one network node per test, and a condition of some
#: hundreds of tests made it spin for minutes in C code, deaf to Ctrl-C. The shipped sets use 2.
MAX_CONDITION_TESTS = 64


def condition_size(cond: Condition) -> tuple[int, int]:
    """(tests, alternatives) of a condition tree (see :data:`MAX_CONDITION_TESTS`); capped, never huge."""
    kind = cond[0]
    if kind in ("all", "any"):
        sizes = [condition_size(c) for c in cond[1]]
        tests = sum(t for t, _ in sizes)
        if kind == "any":
            return tests, sum(a for _, a in sizes)
        alternatives = 1
        for _, a in sizes:
            alternatives = min(alternatives * a, 1 << 20)
        return tests, alternatives
    _, _, op, operand = cond
    width = len(operand) if op in ("in", "not_in") else 1
    return width, width if op == "in" else 1


def _possibly(cond: Condition, fact: str, value: str) -> bool:
    """Whether ``cond`` may hold when the enum ``fact`` is ``value`` (for some values of the other facts)."""
    kind = cond[0]
    if kind in ("all", "any"):
        parts = [_possibly(c, fact, value) for c in cond[1]]
        return all(parts) if kind == "all" else any(parts)
    _, name, op, operand = cond
    if name != fact:
        return True
    return bool(_surely(cond, fact, (value,)))


def _has_cjk(text: str) -> bool:
    return any("\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text)


#: Refused in every text of a rules file, keys included: C0 and C1 controls, DEL, the invisible
#: bidirectional controls (ALM, LRM, RLM, LRE … RLO, LRI … PDI) and the line and paragraph
#: separators. A title, label or reason is printed on one line of a report or a terminal: a newline
#: would forge a line, ESC/OSC/BEL would drive the terminal, an override would reorder what is read.
_CONTROL = UNSAFE
#: The same, but allowing the line break: for :data:`_MULTILINE_FIELDS`.
_CONTROL_BUT_NEWLINE = re.compile(f"(?!\n)[{UNSAFE_CLASS}]")
#: Prose that may run over several lines (a folded ``>`` block ends with a line break).
_MULTILINE_FIELDS = frozenset({"description", "note"})
#: The values a YAML file may hold (no !!binary, !!set, !!omap, …).
_PLAIN_TYPES = (str, bool, int, float, dt.date)
#: Criterion ids when the pack says nothing (pack.yaml ``criterion_ids``): a letter or two and a number.
_CID_DEFAULT = (re.compile(r"^[A-Z]{1,3}[0-9]+$"), "I1 or E12")


def _criterion_ids(pack: Pack | None) -> tuple[re.Pattern[str], str]:
    """The pack's criterion id scheme (a pattern and an example), or the default."""
    if pack is None or pack.criterion_ids is None:
        return _CID_DEFAULT
    return re.compile(pack.criterion_ids[0]), pack.criterion_ids[1]
#: CONSORT boxes (categories and subcategories), drug classes and site lists.
_BOX_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: The longest text one template expansion may produce (the longest shipped is under 300 characters).
MAX_TEMPLATE_TEXT = 64 * 1024
#: What all the template expansions of a set may produce together: characters, and values (each
#: text, number, list and mapping). The shipped sets use under 1 % of either.
MAX_TEMPLATE_TOTAL_CHARS = 4 << 20
MAX_TEMPLATE_TOTAL_VALUES = 200_000


def _short(key: Any) -> str:
    """A key as shown in a field path: at most 40 characters."""
    text = str(key)
    return text if len(text) <= 40 else text[:39] + "…"


def _suggest(word: Any, choices: Any) -> str:
    """:func:`did_you_mean` for any value and choices (only text is compared, and only its start)."""
    return did_you_mean(str(word)[:60], [c for c in choices if isinstance(c, str)])


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = self._display(path)
        self.blobs: list[tuple[str, bytes]] = []
        self.stamps: list[tuple[str, int, int, int]] = []
        self.expanded_chars = 0
        self.expanded_values = 0
        self.pack = pack_of(path)
        self.cid_re, self.cid_example = _criterion_ids(self.pack)

    @staticmethod
    def _display(path: Path) -> str:
        return display_path(path)

    def fail(self, message: str, *, criterion: str | None = None, field: str | None = None,
             file: str | None = None) -> RuleDefinitionError:
        return RuleDefinitionError(message, file=file or self.file, criterion=criterion, field=field)

    def _read_yaml(self, path: Path, display: str, *, field: str | None = None, hashed: bool = True) -> dict[str, Any]:
        """A rules or value-set file as a mapping (``field``: where the set names it, for errors;
        ``hashed``: whether its bytes enter the set's sha256)."""
        try:
            raw, st = read_rules_file(path)
        except _Refused as exc:
            raise self.fail(f"{display} {exc}", file=display, field=field) from None
        except OSError as exc:
            raise self.fail(f"cannot read: {exc.strerror}", file=display, field=field) from None
        if hashed:
            self.blobs.append((display, raw))
        self.stamps.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
        try:
            data = parse_yaml(raw.decode("utf-8"))
        except _Refused as exc:
            raise self.fail(str(exc), file=display, field=exc.field) from None
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: bad UTF-8, an integer over 4,300 digits
            raise self.fail(f"not valid YAML: {exc}", file=display) from None
        if not isinstance(data, dict):
            raise self.fail("must be a mapping at the top level", file=display)
        self._check_texts(data, display)
        return data

    def _check_texts(self, data: dict[str, Any], display: str) -> None:
        """Refuse control characters in any key or text (a line break only in :data:`_MULTILINE_FIELDS`),
        and values of a type YAML tags make (``!!binary``, ``!!set``, …); named by criterion and field."""
        stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
        while stack:
            node, at = stack.pop()
            if isinstance(node, dict):
                for key in node:
                    found = _CONTROL.search(key) if isinstance(key, str) else None
                    if found:
                        raise self._text_fail(data, at, display, f"a key contains a control character "
                                              f"(U+{ord(found.group()):04X}); keys are plain words")
                stack.extend((value, at + (key,)) for key, value in reversed(node.items()))
            elif isinstance(node, list):
                stack.extend((value, at + (i,)) for i, value in reversed(list(enumerate(node))))
            elif isinstance(node, str):
                multiline = bool(at) and at[-1] in _MULTILINE_FIELDS
                found = (_CONTROL_BUT_NEWLINE if multiline else _CONTROL).search(node)
                if found:
                    allowed = ("only a line break is allowed in this text" if multiline else
                               "a one-line text cannot hold line breaks, tabs, terminal escapes or bidi controls")
                    raise self._text_fail(data, at, display, f"contains a control character "
                                          f"(U+{ord(found.group()):04X}); {allowed}")
            elif node is not None and not isinstance(node, _PLAIN_TYPES):
                raise self._text_fail(data, at, display, f"a YAML {type(node).__name__} value (a !! tag) is not "
                                      f"allowed in rules files; write text, a number, a list or a mapping")

    def _text_fail(self, data: dict[str, Any], at: tuple[Any, ...], display: str, message: str) -> RuleDefinitionError:
        criterion = None
        if len(at) >= 2 and at[0] == "criteria" and isinstance(at[1], int) and display == self.file:
            raw = data["criteria"][at[1]]
            cid = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(cid, str) and self.cid_re.match(cid) and at[2:] != ("id",):
                criterion, at = cid, at[2:]
        parts = [f"[{key}]" if isinstance(key, int) and not isinstance(key, bool) else f".{_short(key)}" for key in at]
        return self.fail(message, criterion=criterion, field="".join(parts).lstrip(".") or None, file=display)

    def _keys(self, data: dict[str, Any], required: set[str], optional: set[str], *,
              where: str, criterion: str | None = None, file: str | None = None) -> None:
        for key in data:
            if key not in required | optional:
                raise self.fail(f"unknown field {_show(key)}{_suggest(key, required | optional)}",
                                criterion=criterion, field=where + _short(key) if where else _short(key), file=file)
        for key in sorted(required - set(data)):
            raise self.fail("required field is missing", criterion=criterion,
                            field=where + key if where else key, file=file)

    def _text(self, value: Any, *, field: str, criterion: str | None = None, file: str | None = None,
              empty: bool = False) -> str:
        """``value`` if it is text (non-blank unless ``empty``)."""
        if not isinstance(value, str) or not (empty or value.strip()):
            raise self.fail("must be text" if empty else "must be text, not blank", criterion=criterion,
                            field=field, file=file)
        return value

    def _names(self, value: Any, *, field: str, what: str, criterion: str | None = None, file: str | None = None,
               pattern: re.Pattern[str] | None = None, empty: bool = False) -> list[str]:
        """``value`` if it is a list of distinct names (non-empty unless ``empty``)."""
        if not isinstance(value, list) or not (empty or value):
            raise self.fail(f"must be a {'' if empty else 'non-empty '}list of {what}", criterion=criterion,
                            field=field, file=file)
        seen: set[str] = set()
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip() or (pattern is not None and not pattern.match(item)):
                raise self.fail(f"must be a list of {what} (item {i} is not)", criterion=criterion, field=field,
                                file=file)
            if item in seen:
                raise self.fail(f"{_show(item)} is listed twice", criterion=criterion, field=field, file=file)
            seen.add(item)
        return value

    # -- the set --------------------------------------------------------------------------------

    def load(self) -> Ruleset:
        data = self._read_yaml(self.path, self.file)
        self._keys(data, {"name", "version", "parameters", "precedence", "criteria", "consort", "sources"},
                   {"title", "description", "value_sets", "templates", "record", "translations"}, where="")
        self.translations = self._translations(data.get("translations"))
        self.languages = (DEFAULT_LANG, *self.translations)
        name, version = data["name"], data["version"]
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise self.fail("must be a lower-case name such as 'paper-2024'", field="name")
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise self.fail("must be a quoted version string such as \"1.0.0\"", field="version")
        title = self._text(data.get("title", name), field="title")
        self.labels: dict[str, dict[str, str]] = {}
        description = self._text(data.get("description", ""), field="description", empty=True)
        pack = self.pack
        record, declarations = self._record(data.get("record"))
        self.record = record
        params = check_parameters(data["parameters"], declarations.parameters,
                                  lambda message, where: self.fail(message, field=where), STATUSES)
        sources = data["sources"]
        if not isinstance(sources, dict):
            raise self.fail("must map source tags to citations", field="sources")
        for tag, citation in sources.items():
            if not isinstance(tag, str) or not tag.strip():
                raise self.fail("a source tag is a word such as methods_2024", field="sources")
            self._text(citation, field=f"sources.{_short(tag)}")
        self.field_paths = set(record.paths)
        value_sets = data.get("value_sets")
        drug_classes, site_lists, condition_codes = self._value_sets({} if value_sets is None else value_sets)
        consort = self._consort(data["consort"])
        facts_file = self.facts_file

        def fail_facts(message: str, where: str) -> RuleDefinitionError:
            return self.fail(message, field=where, file=facts_file)
        self.catalogue, entries = declarations.catalogue(record, params, drug_classes, site_lists, fail_facts)
        self.fact_types = self.catalogue.facts
        self.context = set(self.catalogue.quotes)
        self.params = params
        templates = data.get("templates")
        templates = {} if templates is None else templates
        if not isinstance(templates, dict):
            raise self.fail("must be a mapping of template name to template", field="templates")
        for tname, template in templates.items():
            if not isinstance(tname, str) or not _BOX_RE.match(tname):
                raise self.fail("template names are lower_case_with_underscores", field="templates")
            if not isinstance(template, dict):
                raise self.fail("must be a mapping {ask, default, rules}", field=f"templates.{tname}")
        criteria: dict[str, Criterion] = {}
        raw_criteria = data["criteria"]
        if not isinstance(raw_criteria, list) or not raw_criteria:
            raise self.fail("must be a non-empty list", field="criteria")
        for index, raw in enumerate(raw_criteria):
            crit = self._criterion(raw, index, templates, sources, consort)
            if crit.id in criteria:
                raise self.fail("criterion id used twice", criterion=crit.id, field="id")
            criteria[crit.id] = crit
        precedence = data["precedence"]
        if not isinstance(precedence, list) or not all(isinstance(cid, str) for cid in precedence):
            raise self.fail("must be a list of criterion ids such as [I1, E1, …]", field="precedence")
        if sorted(precedence) != sorted(criteria) or len(set(precedence)) != len(precedence):
            missing = sorted(set(criteria) - set(precedence))
            extra = sorted(_show(cid) for cid in set(precedence) - set(criteria))
            raise self.fail(f"must list every criterion exactly once (missing: {missing or 'none'}, "
                            f"unknown: {extra or 'none'})", field="precedence")
        self._decision_needs(criteria, consort)
        digest = hashlib.sha256()
        for display, raw in sorted(self.blobs):  # the same set hashes the same, whatever the read order
            digest.update(display.split("/")[-1].encode() + b"\0" + raw + b"\0")
        sha256 = digest.hexdigest()
        classifier = drug_classifier(sha256, drug_classes) if drug_classes else None
        plan = declarations.compile(record, params, drug_classes, site_lists, classifier, entries, fail_facts)
        if pack is not None:  # reloaded when pack.yaml changes, but not part of the sha256
            st = os.stat(pack.path / PACK_FILE)
            self.stamps.append((str(pack.path / PACK_FILE), st.st_ino, st.st_size, st.st_mtime_ns))
        return Ruleset(
            name=name, version=version, sha256=sha256,
            title=title, description=description.strip(),
            path=self.file, parameters=params, precedence=tuple(precedence), criteria=criteria,
            sources=dict(sources), consort=consort, drug_classes=drug_classes, site_lists=site_lists,
            files=tuple(d for d, _ in self.blobs), condition_codes=condition_codes,
            pack=pack.name if pack else "", pack_dir=pack.path if pack else None,
            record=record, catalogue=self.catalogue, plan=plan,
            parameter_declarations=declarations.parameters,
            stamped_parameters=declarations.stamp_values(params, fail_facts),
            languages=self.languages, translations=self.translations, labels=self.labels,
        )

    def _translations(self, raw: Any) -> dict[str, str]:
        """``translations: {zh: <its review note>}``: the languages besides English that every title,
        reason, ``decide`` and box label of the set is written in."""
        if raw is None:
            return {}
        others = [lang for lang in LANGUAGES if lang != DEFAULT_LANG]
        if not isinstance(raw, dict) or not raw:
            raise self.fail(f"must map a language ({', '.join(others)}) to a note on its review", field="translations")
        for lang, note in raw.items():
            if lang not in others:
                raise self.fail(f"unknown language {_show(lang)}: one of {', '.join(others)}", field="translations")
            self._text(note, field=f"translations.{lang}")
        return dict(raw)

    def _localized(self, raw: Any, *, field: str, criterion: str | None = None,
                   check: Callable[[str, str], str] | None = None) -> dict[str, str]:
        """A text of the set in its languages: plain text when the set has no ``translations``;
        ``{en: ..., zh: ...}`` (every language) when it has."""
        if len(self.languages) > 1 and isinstance(raw, str):
            raise self.fail(f"the set has translations ({', '.join(self.translations)}): write this text in "
                            f"every language, {{{', '.join(f'{lang}: …' for lang in self.languages)}}}",
                            criterion=criterion, field=field)
        if len(self.languages) == 1 and isinstance(raw, dict):
            raise self.fail("a text in several languages needs the set's `translations` (e.g. "
                            "translations: {zh: <review note>})", criterion=criterion, field=field)
        return localized(raw, field, lambda message, where: self.fail(message, criterion=criterion, field=where),
                         check=check)

    def _record(self, ref: Any) -> tuple[RecordSpec, Declarations]:
        """The record (fields.yaml) and derived facts (facts.yaml) the set names under ``record``.

        A set of format 1.0 (released before packs declared their records) names neither: it reads
        ``fields.yaml`` and ``facts.yaml`` beside it without hashing them, so that it keeps the
        sha256 it was stamped with; such sets live only in archive snapshots, which never change.
        """
        if ref is None:
            if "archive" not in self.path.parts[:-1]:
                raise self.fail("required field is missing: record: {fields: fields.yaml, facts: facts.yaml} "
                                "(only an archived set released before packs declared records may leave it out)",
                                field="record")
            paths = {"fields": self.path.parent / "fields.yaml", "facts": self.path.parent / "facts.yaml"}
            hashed = False
        else:
            if not isinstance(ref, dict):
                raise self.fail("must be {fields: fields.yaml, facts: facts.yaml}", field="record")
            self._keys(ref, {"fields", "facts"}, set(), where="record.")
            for key in ("fields", "facts"):
                if not isinstance(ref[key], str) or not ref[key].strip():
                    raise self.fail("must be the path of a file, relative to the criteria set", field=f"record.{key}")
            paths = {key: self.path.parent / ref[key] for key in ("fields", "facts")}
            hashed = True
        shown = {key: self._display(path) for key, path in paths.items()}
        if not paths["fields"].exists() and ref is None:
            raise self.fail("names no record: add record: {fields: fields.yaml, facts: facts.yaml}", field="record")
        fields_data = self._read_yaml(paths["fields"], shown["fields"], field="record.fields", hashed=hashed)
        record = load_record_spec(fields_data, lambda message, where: self.fail(message, field=where,
                                                                              file=shown["fields"]))
        facts_data = self._read_yaml(paths["facts"], shown["facts"], field="record.facts", hashed=hashed)
        self.facts_file = shown["facts"]
        declarations = read_declarations(facts_data, record, lambda message, where: self.fail(
            message, field=where, file=shown["facts"]))
        for path, check in record.date_checks():
            if check.plus_param is None:
                continue
            declared = declarations.parameters.get(check.plus_param)
            if not isinstance(declared, dict) or declared.get("type") != "int" or declared.get("optional") or \
                    not 0 <= declared.get("min", -1) <= declared.get("max", -1) <= 3660:
                raise self.fail(f"plus_days reads {check.plus_param!r}, which the pack's facts.yaml must declare as a "
                                f"whole-number parameter every set gives, within 0 … 3660", field=f"fields.{path}",
                                file=shown["fields"])
        return record, declarations

    def _decision_needs(self, criteria: dict[str, Criterion], consort: dict[str, Any]) -> None:
        """What screening.decision needs to put every candidate in the right CONSORT box.

        An eligible candidate is counted in ``consort.eligible`` (randomized) only when every
        procedural criterion is met. So a set needs a procedural criterion that surely fails when
        consent is declined or withdrawn (counted in its own withdrawal box) and surely stays open
        while consent is pending; and no box may be shared between a failing criterion and the
        eligible or open candidates. Without these, declined candidates would be counted as randomized.
        """
        eligible = consort["eligible"]
        for key in ("eligible_pending", "undetermined"):
            if consort[key] == eligible:
                raise self.fail(f"must differ from consort.eligible ({eligible!r}): candidates still open "
                                f"would be counted with the randomized", field=f"consort.{key}")
        open_boxes = {eligible, consort["eligible_pending"], consort["undetermined"]}
        eligibility = [c for c in criteria.values() if c.kind != "procedural"]
        procedural = [c for c in criteria.values() if c.kind == "procedural"]
        for crit in eligibility:
            if crit.category in open_boxes:
                raise self.fail(f"category {crit.category!r} is a box of consort.eligible, eligible_pending or "
                                f"undetermined: candidates this criterion excludes would be counted there",
                                criterion=crit.id, field="category")
        if not procedural:
            raise self.fail("a criteria set needs a procedural criterion (kind: procedural, e.g. written "
                            "informed consent) that fails when consent is declined or withdrawn; without one, "
                            "declined candidates would be counted as randomized", field="criteria")
        shared = {c.category for c in eligibility}
        for crit in procedural:
            if crit.category in open_boxes:
                raise self.fail(f"a procedural criterion's category is the withdrawal box where candidates who "
                                f"decline are counted; it cannot be {crit.category!r} (consort.eligible, "
                                f"eligible_pending or undetermined)", criterion=crit.id, field="category")
            if crit.category in shared:
                users = ", ".join(c.id for c in eligibility if c.category == crit.category)
                raise self.fail(f"category {crit.category!r} is also the category of eligibility criteria "
                                f"({users}): withdrawals would be counted with them; use a withdrawal box",
                                criterion=crit.id, field="category")
        if "consent" not in self.fact_types:
            raise self.fail("a procedural criterion tests the fact 'consent'; the pack's facts.yaml declares none",
                            field="criteria")
        values = self.fact_types["consent"].values
        covered: dict[str, set[str]] = {value: set() for value in values}
        for crit in procedural:
            for rule in crit.rules:
                for value in _surely(rule.when, "consent", values):
                    covered[value].add(rule.status)
        for crit in procedural:
            for i, rule in enumerate(crit.rules):
                if _possibly(rule.when, "consent", "signed"):
                    raise self.fail("this rule may apply when consent is 'signed': candidates who consented "
                                    "would be counted as withdrawn; a procedural rule must exclude signed consent "
                                    "(test {consent: {in: [...]}} in it)", criterion=crit.id,
                                    field=f"rules[{i}].when")
        for value, statuses in _CONSENT_NEEDS.items():
            if not covered[value] & set(statuses):
                what = "fails (not_met)" if statuses == ("not_met",) else "stays open (unknown, review or not_met)"
                raise self.fail(f"no rule of a procedural criterion surely {what} when consent is {value!r} "
                                f"(test {{consent: {{in: [...]}}}} alone, or inside any:); such candidates would "
                                f"be counted as randomized", criterion=procedural[0].id, field="rules")


    def _consort(self, consort: Any) -> dict[str, Any]:
        if not isinstance(consort, dict):
            raise self.fail("must be a mapping", field="consort")
        self._keys(consort, {"categories", "subcategories", "eligible", "eligible_pending", "undetermined"},
                   {"labels"}, where="consort.")
        cats = self._names(consort["categories"], field="consort.categories", pattern=_BOX_RE,
                           what="box names written lower_case_with_underscores, such as [not_meeting_inclusion, …]")
        for key in ("eligible", "eligible_pending", "undetermined"):
            if not isinstance(consort[key], str) or consort[key] not in cats:
                raise self.fail(f"must be one of consort.categories{_suggest(consort[key], cats)}",
                                field=f"consort.{key}")
        subcategories = consort["subcategories"]
        if not isinstance(subcategories, dict):
            raise self.fail("must map a category to the list of its subcategories", field="consort.subcategories")
        boxes = set(cats)
        for cat, subs in subcategories.items():
            if not isinstance(cat, str) or cat not in cats:
                raise self.fail(f"unknown category {_show(cat)}{_suggest(cat, cats)}", field="consort.subcategories")
            where = f"consort.subcategories.{cat}"
            for sub in self._names(subs, field=where, pattern=_BOX_RE,
                                   what="subcategory names written lower_case_with_underscores"):
                if sub in boxes:
                    raise self.fail(f"{sub!r} is already the name of a category or subcategory; every box needs a "
                                    f"name of its own (labels and counts are looked up by name)", field=where)
                boxes.add(sub)
        for box in sorted(boxes & RESERVED_BOXES):
            where = "consort.categories" if box in cats else "consort.subcategories"
            raise self.fail(f"{box!r} is reserved: rows for records that cannot be read carry category 'error', "
                            f"and decisions are eligible, excluded or undetermined; name the box otherwise",
                            field=where)
        labels = consort.get("labels", {})
        if not isinstance(labels, dict):
            raise self.fail("must map a category or subcategory to its label", field="consort.labels")
        for box, label in labels.items():
            if not isinstance(box, str) or box not in boxes:
                raise self.fail(f"not a category or subcategory{_suggest(box, boxes)}",
                                field=f"consort.labels.{_short(box)}")
            self.labels[box] = self._localized(label, field=f"consort.labels.{box}",
                                               check=lambda text, where: self._text(text, field=where))
        return {**consort, "labels": {box: texts[DEFAULT_LANG] for box, texts in self.labels.items()}}

    # -- value sets -----------------------------------------------------------------------------

    def _value_sets(self, refs: Any) -> tuple[dict[str, DrugClass], dict[str, SiteList], dict[str, dict[str, Any]]]:
        if not isinstance(refs, dict):
            raise self.fail("must map value-set kinds to files", field="value_sets")
        self._keys(refs, set(), {"drug_classes", "tumor_sites", "condition_codes"}, where="value_sets.")
        drug_classes = {name: self._drug_class(name, raw, display)
                        for name, raw, display in self._value_set(refs, "drug_classes", "classes")}
        site_lists = {name: self._site_list(name, raw, display)
                      for name, raw, display in self._value_set(refs, "tumor_sites", "sites")}
        condition_codes = {key: self._condition_codes(key, raw, display)
                           for key, raw, display in self._value_set(refs, "condition_codes", "conditions",
                                                                    optional={"other"})}
        return drug_classes, site_lists, condition_codes

    def _value_set(self, refs: dict[str, Any], kind: str, body: str,
                   optional: frozenset[str] | set[str] = frozenset()) -> list[tuple[str, Any, str]]:
        """The entries of the value-set file ``refs[kind]`` (none if the set names no such file):
        (entry name, its raw mapping, the file as shown in errors)."""
        if kind not in refs:
            return []
        if not isinstance(refs[kind], str) or not refs[kind].strip():
            raise self.fail("must be the path of a value-set file, relative to the criteria set",
                            field=f"value_sets.{kind}")
        path = self.path.parent / refs[kind]
        display = self._display(path)
        data = self._read_yaml(path, display, field=f"value_sets.{kind}")
        self._keys(data, {"name", "version", body}, {"description"} | set(optional), where="", file=display)
        for key in ("name", "version"):
            self._text(data[key], field=key, file=display)
        self._text(data.get("description", ""), field="description", file=display, empty=True)
        for key in optional:
            if not isinstance(data.get(key, {}), dict):
                raise self.fail("must be a mapping", field=key, file=display)
        entries = data[body]
        entries = {} if entries is None else entries
        if not isinstance(entries, dict):
            raise self.fail("must map each name to its entry", field=body, file=display)
        for name in entries:
            if not isinstance(name, str) or not _BOX_RE.match(name):
                raise self.fail("names are lower_case_with_underscores", field=f"{body}.{_short(name)}", file=display)
        return [(name, raw, display) for name, raw in entries.items()]

    def _site_list(self, name: str, raw: Any, display: str) -> SiteList:
        if not isinstance(raw, dict):
            raise self.fail("must be a mapping", field=f"sites.{name}", file=display)
        self._keys(raw, {"names"}, {"title", "spec"}, where=f"sites.{name}.", file=display)
        title = self._text(raw.get("title", name), field=f"sites.{name}.title", file=display)
        self._text(raw.get("spec", ""), field=f"sites.{name}.spec", file=display, empty=True)
        latin, cjk = self._terms(raw["names"], f"sites.{name}.names", display)
        return SiteList(name, title, latin, cjk)

    def _condition_codes(self, key: str, entry: Any, display: str) -> dict[str, Any]:
        where = f"conditions.{key}"
        if not isinstance(entry, dict):
            raise self.fail("must be a mapping", field=where, file=display)
        self._keys(entry, {"record_field"}, {"criterion", "note", "snomed", "icd10", "procedures", "not_evidence"},
                   where=where + ".", file=display)
        record_field = entry["record_field"]
        if not isinstance(record_field, str) or record_field not in self.field_paths:
            raise self.fail(f"unknown record field {_show(record_field)}{_suggest(record_field, self.field_paths)}",
                            field=f"{where}.record_field", file=display)
        for text in ("criterion", "note"):
            self._text(entry.get(text, ""), field=f"{where}.{text}", file=display, empty=True)
        for group in ("snomed", "icd10", "procedures", "not_evidence"):
            codes = entry.get(group)
            if codes is None:
                continue
            if not isinstance(codes, list):
                raise self.fail("must be a list of codes", field=f"{where}.{group}", file=display)
            for i, code in enumerate(codes):
                at = f"{where}.{group}[{i}]"
                if not isinstance(code, dict) or not isinstance(code.get("code"), str) or not code["code"].strip():
                    raise self.fail("each code is {code: \"…\", display: …} with the code as a string", field=at, file=display)
                if group != "not_evidence" and code.get("maps_to") not in ("active", "history", "screener"):
                    raise self.fail("maps_to must be active, history or screener", field=at, file=display)
                if group == "icd10" and code.get("match", "exact") not in ("exact", "prefix"):
                    raise self.fail("match must be exact or prefix", field=at, file=display)
                if group in ("procedures", "not_evidence") and code.get("system") not in ("snomed", "icd10"):
                    raise self.fail("system must be snomed or icd10", field=at, file=display)
        return entry

    def _terms(self, terms: Any, where: str, display: str) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
        if not isinstance(terms, list) or not all(isinstance(t, str) and t.strip() for t in terms):
            raise self.fail("must be a list of non-empty strings", field=where, file=display)
        latin = tuple(words(t) for t in terms if not _has_cjk(t))
        cjk = tuple(t.lower() for t in terms if _has_cjk(t))
        if any(not w for w in latin):
            raise self.fail("a term has no letters or digits", field=where, file=display)
        return latin, cjk

    def _codes(self, raw: dict[str, Any], key: str, where: str, display: str) -> list[str]:
        """A list of codes written as text (none when absent)."""
        codes = raw.get(key)
        if codes is None:
            return []
        if not isinstance(codes, list) or not all(isinstance(code, str) for code in codes):
            raise self.fail('must be a list of codes written as text, such as ["C03CA01"] or ["4603"]',
                            field=f"{where}.{key}", file=display)
        return codes

    def _drug_class(self, cname: str, raw: Any, display: str) -> DrugClass:
        where = f"classes.{cname}"
        if not isinstance(raw, dict):
            raise self.fail("must be a mapping", field=where, file=display)
        self._keys(raw, {"names"}, {"title", "spec", "atc", "atc_exclude", "rxnorm", "names_exclude", "description"},
                   where=where + ".", file=display)
        title = self._text(raw.get("title", cname), field=f"{where}.title", file=display)
        for text in ("spec", "description"):
            self._text(raw.get(text, ""), field=f"{where}.{text}", file=display, empty=True)
        atc = [a.upper() for a in self._codes(raw, "atc", where, display)]
        atc_ex = [a.upper() for a in self._codes(raw, "atc_exclude", where, display)]
        for key, codes in (("atc", atc), ("atc_exclude", atc_ex)):
            for code in codes:
                if not re.match(r"^[A-Z][0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?$", code):
                    raise self.fail(f"{_show(code)} is not an ATC code or prefix", field=f"{where}.{key}", file=display)
        rx = self._codes(raw, "rxnorm", where, display)
        for code in rx:
            if not (code.isascii() and code.isdigit()):
                raise self.fail(f"{_show(code)} is not an RxCUI (digits)", field=f"{where}.rxnorm", file=display)
        latin, cjk = self._terms(raw["names"], f"{where}.names", display)
        excl, _ = self._terms(raw["names_exclude"], f"{where}.names_exclude", display) \
            if raw.get("names_exclude") is not None and raw.get("names_exclude") != [] else ((), ())
        return DrugClass(cname, title, tuple(atc), tuple(atc_ex), frozenset(rx), latin, cjk, excl)

    # -- criteria -------------------------------------------------------------------------------

    def _criterion(self, raw: Any, index: int, templates: dict[str, Any], sources: dict[str, str],
                   consort: dict[str, Any]) -> Criterion:
        if not isinstance(raw, dict):
            raise self.fail("must be a mapping", field=f"criteria[{index}]")
        given = raw.get("id")
        cid = given if isinstance(given, str) and self.cid_re.match(given) else f"criteria[{index}]"
        required = {"id", "kind", "title", "protocol_text", "sources", "spec", "category"}
        optional = {"subcategory", "ask", "default", "rules", "template", "extra_rules"}
        self._keys(raw, required, optional, where="", criterion=cid)
        if cid != given:
            raise self.fail(f"ids look like {self.cid_example}", criterion=cid, field="id")
        kind = raw["kind"]
        if not isinstance(kind, str) or kind not in KINDS:
            raise self.fail(f"must be one of {', '.join(KINDS)}{_suggest(kind, KINDS)}", criterion=cid, field="kind")
        titles = self._localized(raw["title"], criterion=cid, field="title",
                                 check=lambda text, where: self._text(text, criterion=cid, field=where))
        title = titles[DEFAULT_LANG]
        protocol_text = self._text(raw["protocol_text"], criterion=cid, field="protocol_text")
        spec = self._text(raw["spec"], criterion=cid, field="spec")
        tags = self._names(raw["sources"], criterion=cid, field="sources", what="source tags")
        for tag in tags:
            if tag not in sources:
                raise self.fail(f"unknown source tag {_show(tag)}{_suggest(tag, sources)}", criterion=cid,
                                field="sources")
        category = raw["category"]
        if not isinstance(category, str) or category not in consort["categories"]:
            raise self.fail(f"unknown category {_show(category)}{_suggest(category, consort['categories'])}",
                            criterion=cid, field="category")
        subcategory = raw.get("subcategory")
        allowed_sub = consort["subcategories"].get(category, [])
        if subcategory is not None and (not isinstance(subcategory, str) or subcategory not in allowed_sub):
            raise self.fail(f"unknown subcategory {_show(subcategory)} for {category}"
                            f"{_suggest(subcategory, allowed_sub)}", criterion=cid, field="subcategory")
        if allowed_sub and subcategory is None:
            raise self.fail(f"category {category} needs a subcategory ({', '.join(allowed_sub)})",
                            criterion=cid, field="subcategory")

        body: dict[str, Any] = {}
        if "template" in raw:
            body = self._expand_template(raw["template"], templates, cid)
        for key in ("ask", "default", "rules"):
            if key in raw:
                body[key] = raw[key]
        rules_raw: list[Any] = []
        for key, source in (("rules", body), ("extra_rules", raw)):
            listed = source.get(key)
            if listed is not None and not isinstance(listed, list):
                raise self.fail("must be a list of rules {status, when, reason}", criterion=cid,
                                field=key if key in raw else f"template.{key}")
            rules_raw += listed or []
        if "default" not in body:
            raise self.fail("required field is missing (or give a template)", criterion=cid, field="default")
        default = self._outcome(body["default"], cid, "default")
        passing = RANKING[kind][-1]
        if default.status != passing:
            raise self.fail(f"the default of an {kind} criterion must be {passing!r} (the outcome when no rule "
                            f"applies); write the other outcomes as rules", criterion=cid, field="default.status")
        rules = tuple(self._rule(r, cid, f"rules[{i}]") for i, r in enumerate(rules_raw))
        for i, rule in enumerate(rules):
            if rule.status == passing:
                raise self.fail(f"a rule cannot give the default outcome {passing!r}", criterion=cid,
                                field=f"rules[{i}].status")
        asked = body.get("ask")
        ask = self._ask([] if asked is None else asked, cid, "ask")
        return Criterion(cid, kind, title, protocol_text, tuple(tags), spec, category, subcategory, ask, default,
                         rules, titles)

    def _expand_template(self, ref: Any, templates: dict[str, Any], cid: str) -> dict[str, Any]:
        """The template ``ref`` names, its variables substituted. What it expands to is measured before
        anything is built: each text at most :data:`MAX_TEMPLATE_TEXT` characters, and all the
        expansions of the set together at most :data:`MAX_TEMPLATE_TOTAL_CHARS` characters and
        :data:`MAX_TEMPLATE_TOTAL_VALUES` values (a few KiB of YAML could otherwise ask for gigabytes)."""
        if not isinstance(ref, dict) or "name" not in ref:
            raise self.fail("must be {name: <template>, <variable>: <value>, ...}", criterion=cid, field="template")
        tname = ref["name"]
        if not isinstance(tname, str):
            raise self.fail("must be the name of a template (text)", criterion=cid, field="template.name")
        if tname not in templates:
            raise self.fail(f"unknown template {_show(tname)}{_suggest(tname, templates)}", criterion=cid,
                            field="template.name")
        values: dict[str, str] = {}
        for key, value in ref.items():
            if key == "name":
                continue
            if not isinstance(key, str) or not _VARIABLE_RE.match(key):
                raise self.fail(f"template variables are words such as key or label, not {_show(key)}",
                                criterion=cid, field="template")
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise self.fail("must be text or a whole number", criterion=cid, field=f"template.{key}")
            values[key] = str(value)

        def fail(message: str) -> RuleDefinitionError:
            return self.fail(f"template {tname!r} {message}", criterion=cid, field="template")

        def spend(chars: int) -> None:
            self.expanded_chars += chars
            self.expanded_values += 1
            if self.expanded_chars > MAX_TEMPLATE_TOTAL_CHARS or self.expanded_values > MAX_TEMPLATE_TOTAL_VALUES:
                raise fail(f"would make the set's templates expand to more than {MAX_TEMPLATE_TOTAL_CHARS} characters "
                           f"or {MAX_TEMPLATE_TOTAL_VALUES} values in all; write long or repeated rules out")

        def subst(node: Any) -> Any:
            if isinstance(node, str):
                size = len(node)
                for match in _PLACEHOLDER.finditer(node):
                    variable = match.group("named") or match.group("braced")
                    if variable is not None:
                        if variable not in values:
                            raise fail(f"needs the variable {variable!r}")
                        size += len(values[variable]) - len(match.group())
                    elif match.group("escaped") is not None:
                        size -= 1
                    else:
                        raise fail("has a $ that starts no ${variable}; write $$ for a dollar sign")
                if size > MAX_TEMPLATE_TEXT:
                    raise fail(f"would expand a text to {size} characters (at most {MAX_TEMPLATE_TEXT})")
                spend(size)
                return string.Template(node).substitute(values) if "$" in node else node
            spend(0)
            if isinstance(node, list):
                return [subst(n) for n in node]
            if isinstance(node, dict):
                out: dict[Any, Any] = {}
                for key, value in node.items():
                    expanded_key = subst(key)
                    if expanded_key in out:
                        raise fail(f"makes two keys of one mapping the same ({_show(expanded_key)}); one would "
                                   f"silently replace the other")
                    out[expanded_key] = subst(value)
                return out
            return node

        expanded: dict[str, Any] = subst(templates[tname])  # a mapping: load() checked every template
        self._keys(expanded, set(), {"ask", "default", "rules"}, where=f"templates.{tname}.", criterion=cid)
        return expanded

    def _param(self, value: Any, cid: str, where: str) -> Any:
        """The value of ``{param: name}``."""
        pname = value["param"]
        if not isinstance(pname, str):
            raise self.fail("{param: …} takes the name of a parameter (text)", criterion=cid, field=where)
        if pname not in self.params:
            raise self.fail(f"unknown parameter {_show(pname)}{_suggest(pname, self.params)}",
                            criterion=cid, field=where)
        return self.params[pname]

    def _status(self, value: Any, cid: str, where: str) -> str:
        if isinstance(value, dict) and set(value) == {"param"}:
            value = self._param(value, cid, where)
        if not isinstance(value, str) or value not in STATUSES:
            raise self.fail(f"must be one of {', '.join(STATUSES)}{_suggest(value, STATUSES)}",
                            criterion=cid, field=where)
        return value

    def _outcome(self, raw: Any, cid: str, where: str) -> Outcome:
        if not isinstance(raw, dict):
            raise self.fail("must be {status: …, reason: …}", criterion=cid, field=where)
        self._keys(raw, {"status", "reason"}, set(), where=where + ".", criterion=cid)
        reasons = self._reasons(raw["reason"], cid, f"{where}.reason")
        return Outcome(self._status(raw["status"], cid, f"{where}.status"), reasons[DEFAULT_LANG], reasons)

    def _rule(self, raw: Any, cid: str, where: str) -> Rule:
        if not isinstance(raw, dict):
            raise self.fail("must be {status, when, reason}", criterion=cid, field=where)
        self._keys(raw, {"status", "when", "reason"}, {"ask", "decide"}, where=where + ".", criterion=cid)
        asked = raw.get("ask")
        when = self._condition(raw["when"], cid, f"{where}.when")
        tests, alternatives = condition_size(when)
        if tests > MAX_CONDITION_TESTS or alternatives > MAX_CONDITION_TESTS:
            raise self.fail(f"this condition is too large for the rules engine ({tests} tests, {alternatives} "
                            f"alternatives once any/in are spread out; at most {MAX_CONDITION_TESTS} each): "
                            f"split it into several rules", criterion=cid, field=f"{where}.when")
        reasons = self._reasons(raw["reason"], cid, f"{where}.reason")
        decide = {} if raw.get("decide") is None else self._reasons(raw["decide"], cid, f"{where}.decide")
        return Rule(self._status(raw["status"], cid, f"{where}.status"), when, reasons[DEFAULT_LANG],
                    self._ask([] if asked is None else asked, cid, f"{where}.ask"), reasons, decide)

    def _reasons(self, raw: Any, cid: str, where: str) -> dict[str, str]:
        """A reason template (or a ``decide`` text) in every language of the set, each checked."""
        return self._localized(raw, criterion=cid, field=where, check=lambda text, at: self._reason(text, cid, at))

    def _ask(self, items: Any, cid: str, where: str) -> tuple[str, ...]:
        if not isinstance(items, list):
            raise self.fail("must be a list of record field paths", criterion=cid, field=where)
        for item in items:
            if not isinstance(item, str):
                raise self.fail("must be a list of record field paths (text such as birth_date)", criterion=cid,
                                field=where)
            if item.startswith("@"):
                if item[1:] not in self.catalogue.lists:
                    raise self.fail(f"unknown field list {_show(item)}"
                                    f"{_suggest(item[1:], self.catalogue.lists)}", criterion=cid, field=where)
            elif item not in self.field_paths:
                raise self.fail(f"unknown record field {_show(item)}{_suggest(item, self.field_paths)}",
                                criterion=cid, field=where)
        return tuple(items)

    def _reason(self, text: Any, cid: str, where: str) -> str:
        if not isinstance(text, str) or not text.strip():
            raise self.fail("must be a sentence", criterion=cid, field=where)
        known = set(self.fact_types) | self.context
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise self.fail(f"bad placeholder: {exc}", criterion=cid, field=where) from None
        for _, name, spec, conv in parsed:
            if name is None:
                continue
            if not name or spec or conv or name not in known:
                raise self.fail(f"unknown placeholder {{{_short(name)}}}{_suggest(name, known)}",
                                criterion=cid, field=where)
        return text

    def _condition(self, node: Any, cid: str, where: str) -> Condition:
        if not isinstance(node, dict) or len(node) != 1:
            raise self.fail("a condition is one of {all: [...]}, {any: [...]} or {fact: {op: value}}",
                            criterion=cid, field=where)
        (key, value), = node.items()
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise self.fail(f"{key} takes a non-empty list", criterion=cid, field=f"{where}.{key}")
            return (key, tuple(self._condition(v, cid, f"{where}.{key}[{i}]") for i, v in enumerate(value)))
        if not isinstance(key, str) or key not in self.fact_types:
            raise self.fail(f"unknown fact {_show(key)}{_suggest(key, self.fact_types)}", criterion=cid,
                            field=where)
        ftype = self.fact_types[key]
        if not isinstance(value, dict) or len(value) != 1:
            raise self.fail("write a test as {fact: {op: value}}", criterion=cid, field=f"{where}.{key}")
        (op, operand), = value.items()
        if not isinstance(op, str) or op not in OPERATORS:
            raise self.fail(f"unknown operator {_show(op)}{_suggest(op, OPERATORS)}", criterion=cid,
                            field=f"{where}.{key}")
        if isinstance(operand, dict) and set(operand) == {"param"}:
            operand = self._param(operand, cid, f"{where}.{key}.{op}")
        if op == "known":
            if not isinstance(operand, bool):
                raise self.fail("known takes true or false", criterion=cid, field=f"{where}.{key}.known")
            if ftype.kind == "enum":
                raise self.fail(f"{key} is never absent (it says 'unknown'); test {{eq: unknown}}",
                                criterion=cid, field=f"{where}.{key}.known")
            return ("cmp", key, op, operand)
        if op in NUMERIC_OPERATORS and ftype.kind != "int":
            raise self.fail(f"{op} needs a number fact; {key} is one of {', '.join(ftype.values)}",
                            criterion=cid, field=f"{where}.{key}.{op}")
        operands = operand if op in ("in", "not_in") else [operand]
        if op in ("in", "not_in") and (not isinstance(operand, list) or not operand):
            raise self.fail(f"{op} takes a non-empty list", criterion=cid, field=f"{where}.{key}.{op}")
        for item in operands:
            if ftype.kind == "int" and (not isinstance(item, int) or isinstance(item, bool)):
                raise self.fail(f"{key} is a number; {_show(item)} is not", criterion=cid, field=f"{where}.{key}.{op}")
            if ftype.kind == "enum" and (not isinstance(item, str) or item not in ftype.values):
                raise self.fail(f"{_show(item)} is not a value of {key} ({', '.join(ftype.values)})"
                                f"{_suggest(item, ftype.values)}", criterion=cid, field=f"{where}.{key}.{op}")
        return ("cmp", key, op, tuple(operand) if op in ("in", "not_in") else operand)


#: ``$$``, ``$name``, ``${name}`` and a ``$`` that starts none of these, as string.Template reads them.
_PLACEHOLDER: re.Pattern[str] = string.Template.pattern
