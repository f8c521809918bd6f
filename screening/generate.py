"""Synthetic candidate records for scale tests and the benchmark: realistic, varied, deterministic.

Each record is built for one intended outcome, drawn from a controllable mix::

    nlc-screen generate --n 100000 --seed 7 -o candidates.jsonl
    nlc-screen generate --n 1000 --mix eligible=0.5,undetermined=0.3,meeting_exclusion=0.2

Outcomes (the mix keys) and what screening under the pack's default criteria set gives for them:

=========================  ==================================================================
``eligible``               decision ``eligible`` (consent signed: randomized; pending: pending)
``not_meeting_inclusion``  excluded, an inclusion criterion not met (age, diary, NLC assessment)
``meeting_exclusion``      excluded, one exclusion met (a listed condition, a malignancy,
                           or a medicine of an excluding class taken ongoing)
``withdrawal``             excluded, consent declined or withdrawn
``undetermined``           undetermined: something is missing or needs the investigator
``error``                  the record cannot be read (a wrong type, a typo'd field, a missing
                           required field, dates that contradict each other): an ``error`` row
=========================  ==================================================================

Keys left out of ``--mix`` get weight 0; the weights are normalised, so ``eligible=3,error=1`` is
75 % / 25 %. Each record's outcome is drawn independently, so the counts follow the mix up to
sampling noise. The thresholds the records are built around (minimum age, diary window, minimum
episodes, enrollment offset, study window) are read from the ruleset's parameters, never written
here; exposures to excluding drugs are ongoing, so they fall inside any look-back. The words — sites,
medicines, conditions — come from the trial pack's ``generator.yaml`` (:func:`load_vocabulary`).

Standard library only (plus the ruleset loader); the same ``(n, seed, mix)`` always gives the same
bytes. Reuses no code from fixtures/figure1/generate.py.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from .errors import RuleDefinitionError

OUTCOMES = ("eligible", "not_meeting_inclusion", "meeting_exclusion", "withdrawal", "undetermined", "error")
#: Close to a real screening log: most candidates eligible, a share still open, a few unreadable.
DEFAULT_MIX: dict[str, float] = {"eligible": 0.58, "not_meeting_inclusion": 0.16, "meeting_exclusion": 0.12,
                                 "withdrawal": 0.04, "undetermined": 0.09, "error": 0.01}
#: What ``screen`` gives for each outcome: (decision, category or None for any).
EXPECTED: dict[str, tuple[str, str | None]] = {
    "eligible": ("eligible", None),
    "not_meeting_inclusion": ("excluded", "not_meeting_inclusion"),
    "meeting_exclusion": ("excluded", "meeting_exclusion"),
    "withdrawal": ("excluded", "withdrawal"),
    "undetermined": ("undetermined", None),
    "error": ("error", "error"),
}

_DAY = dt.timedelta(days=1)
#: The file of a trial pack that holds its synthetic candidates' vocabulary.
VOCABULARY_FILE = "generator.yaml"


@dataclass(frozen=True)
class Vocabulary:
    """What synthetic candidates of one trial are made of (its pack's ``generator.yaml``)."""

    sites: tuple[tuple[str, str], ...]                       # (id prefix, site name)
    site_weights: tuple[float, ...]
    routine: tuple[tuple[str, str, str, str | None], ...]    # (name, Chinese name, ATC, RxNorm): exclude no one
    excluding: tuple[tuple[tuple[str, str | None, str | None], ...], ...]  # per look-back exclusion: (name, ATC, RxNorm)
    secondary: tuple[str, ...]                               # condition keys that exclude as a secondary cause
    tumour_field: str
    tumour_site_field: str
    tumour_sites: tuple[str, ...]
    condition_keys: tuple[str, ...] = ()                     # the enum fields of the record's conditions
    differential_keys: tuple[str, ...] = ()                  # and of its differential diagnoses


def load_vocabulary(ruleset: Any) -> Vocabulary:
    """The vocabulary in the pack of ``ruleset`` (a loose set uses the default set's pack).

    :raises RuleDefinitionError: the file is missing or malformed (names the file and field).
    """
    from .protocol import load_ruleset, read_yaml_file

    folder = getattr(ruleset, "pack_dir", None) or load_ruleset().pack_dir
    if folder is None:
        raise RuleDefinitionError("the criteria set belongs to no trial pack with a synthetic-candidate vocabulary")
    path = folder / VOCABULARY_FILE
    shown = str(path)
    if not path.is_file():
        raise RuleDefinitionError("the trial pack has no synthetic-candidate vocabulary", file=shown)
    data = read_yaml_file(path, display=shown)
    record = (ruleset if getattr(ruleset, "record", None) is not None else load_ruleset()).record
    try:
        tumour = data["tumour"]
        answered = []
        for object_path in data["answered"]:
            spec = record.get(str(object_path))
            if spec is None:
                raise ValueError(f"{object_path} is no field of the pack's record")
            answered.append(tuple(k for k, f in spec.fields.items() if f.type == "enum"))
        return Vocabulary(
            sites=tuple((str(s["code"]), str(s["name"])) for s in data["sites"]),
            site_weights=tuple(float(s["weight"]) for s in data["sites"]),
            routine=tuple((str(m["name"]), str(m["name_zh"]), str(m["atc"]),
                           str(m["rxnorm"]) if m.get("rxnorm") else None) for m in data["routine_medicines"]),
            excluding=tuple(tuple((str(m["name"]), m.get("atc"), m.get("rxnorm")) for m in kind)
                            for kind in data["excluding_medicines"]),
            secondary=tuple(str(k) for k in data["secondary_conditions"]),
            tumour_field=str(tumour["status_field"]),
            tumour_site_field=str(tumour["site_field"]),
            tumour_sites=tuple(str(t) for t in tumour["sites"]),
            condition_keys=answered[0],
            differential_keys=answered[1],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RuleDefinitionError(f"not a synthetic-candidate vocabulary ({type(exc).__name__}: {exc})",
                                  file=shown) from None


def parse_mix(text: str | None) -> dict[str, float]:
    """``"eligible=0.6,error=0.1"`` -> normalised weights over :data:`OUTCOMES`.

    :raises ValueError: an unknown outcome, a bad number, or no positive weight.
    """
    if not text:
        return dict(DEFAULT_MIX)
    weights = dict.fromkeys(OUTCOMES, 0.0)
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in OUTCOMES:
            raise ValueError(f"{part.strip()!r}: write OUTCOME=WEIGHT with OUTCOME one of {', '.join(OUTCOMES)}")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"{part.strip()!r}: {value.strip()!r} is not a number") from None
        if not weight >= 0 or weight == float("inf"):
            raise ValueError(f"{part.strip()!r}: a weight is a finite number ≥ 0")
        weights[key] = weight
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the mix needs at least one positive weight")
    if total == float("inf"):
        raise ValueError("the weights add up to more than a number can hold; use weights such as 0.6")
    return {k: v / total for k, v in weights.items()}


class _Builder:
    def __init__(self, rng: random.Random, params: dict[str, Any], seed: int, vocabulary: Vocabulary) -> None:
        self.rng = rng
        self.vocab = vocabulary
        self.min_age = int(params["min_age_years"])
        self.window = int(params["diary_window_nights"])
        self.min_episodes = int(params["min_episodes"])
        self.offset = int(params["enrollment_offset_days"])
        lo = params.get("study_window_start") or dt.date(2022, 10, 1)
        hi = params.get("study_window_end") or dt.date(2023, 12, 31)
        self.first_d0 = lo.toordinal()
        self.last_d0 = max(self.first_d0, (hi - dt.timedelta(days=self.window + self.offset)).toordinal())
        self.prefix = f"S{seed % 1000:03d}"

    # -- pieces ---------------------------------------------------------------------------------

    def birth(self, d0: dt.date, age: int) -> str:
        """A birth date giving completed ``age`` years on D0 and for two months after (no birthday near D0)."""
        last = d0 - self.rng.randint(30, 290) * _DAY  # the latest birthday, 30-290 days before D0
        year = last.year - age
        day = 28 if (last.month, last.day) == (2, 29) else last.day
        return dt.date(year, last.month, day).isoformat()

    def episodes(self, d0: dt.date, count: int, nights: int) -> list[dict[str, Any]]:
        rng = self.rng
        offsets = sorted(rng.sample(range(max(nights, count)), count)) if count else []
        out = []
        for k in offsets:
            ep: dict[str, Any] = {"night_of": (d0 + k * _DAY).isoformat(),
                                  "duration_min": round(0.3 + rng.random() * 2.5, 1),
                                  "severity": rng.randint(1, 8)}
            if rng.random() < 0.8:
                ep["leg"] = ("left", "right", "both")[rng.randrange(3)]
                ep["muscle"] = ("calf", "calf", "calf", "foot", "thigh", "other")[rng.randrange(6)]
            out.append(ep)
        if rng.random() < 0.1:  # an episode before D0 is ignored, never counted
            out.insert(0, {"night_of": (d0 - rng.randint(1, 20) * _DAY).isoformat(),
                           "duration_min": 1.0, "severity": 3})
        return out

    def routine(self, d0: dt.date) -> list[dict[str, Any]]:
        rng = self.rng
        chinese = rng.random() < 0.3
        meds = []
        for _ in range(min(6, int(rng.expovariate(1 / 2.2)))):
            routine = self.vocab.routine
            en, zh, atc, rx = routine[rng.randrange(len(routine))]
            med: dict[str, Any] = {"name": zh if chinese else en}
            if rng.random() < 0.85:
                med["atc"] = atc
            if rx and rng.random() < 0.5:
                med["rxnorm"] = rx
            start = d0 - rng.randint(60, 3000) * _DAY
            med["start_date"] = start.isoformat()
            if rng.random() < 0.1:
                med["stop_date"] = (start + rng.randint(10, (d0 - start).days) * _DAY).isoformat()
            else:
                med["ongoing"] = True
            meds.append(med)
        return meds

    def clean(self, index: int) -> dict[str, Any]:
        """A candidate who meets every criterion (consent signed or pending)."""
        rng = self.rng
        d0 = dt.date.fromordinal(rng.randint(self.first_d0, self.last_d0))
        sites = self.vocab.sites
        code, site = sites[rng.choices(range(len(sites)), self.vocab.site_weights)[0]]
        age = self.min_age + min(int(rng.gammavariate(1.9, 4.1)), 30)
        count = self.min_episodes + min(int(rng.expovariate(1 / 3.5)), self.window - self.min_episodes)
        record: dict[str, Any] = {
            "candidate_id": f"{code}-{self.prefix}-{index:07d}",
            "site": site,
            "screening_start": d0.isoformat(),
        }
        if rng.random() < 0.15:
            record["enrollment_date"] = (d0 + (self.offset + rng.randint(0, 10)) * _DAY).isoformat()
        record["birth_date"] = self.birth(d0, age)
        record["sex"] = "female" if rng.random() < 0.54 else "male"
        record["diary"] = {"nights_recorded": self.window, "episodes": self.episodes(d0, count, self.window)}
        record["nlc_assessment"] = {"confirmed": True, "differentials": dict.fromkeys(self.vocab.differential_keys, "absent")}
        conditions: dict[str, Any] = dict.fromkeys(self.vocab.condition_keys, "absent")
        record["conditions"] = conditions
        record["medication_history_taken"] = True
        record["medications"] = self.routine(d0)
        record["consent"] = "signed" if rng.random() < 0.75 else "pending"
        if rng.random() < 0.1:
            del record["sex"]
        return record

    # -- outcomes -------------------------------------------------------------------------------

    def build(self, outcome: str, index: int) -> dict[str, Any]:
        rng = self.rng
        r = self.clean(index)
        d0 = dt.date.fromisoformat(r["screening_start"])
        if outcome == "eligible":
            return r
        if outcome == "not_meeting_inclusion":
            which = rng.randrange(4)
            if which == 0:
                r["birth_date"] = self.birth(d0, self.min_age - rng.randint(2, 15))
            elif which == 1:
                r["diary"] = {"nights_recorded": self.window,
                              "episodes": self.episodes(d0, rng.randint(0, self.min_episodes - 1), self.window)}
            elif which == 2:
                r["nlc_assessment"]["confirmed"] = False
            else:
                key = self.vocab.differential_keys[rng.randrange(len(self.vocab.differential_keys))]
                r["nlc_assessment"]["differentials"][key] = "explains_symptoms"
            return r
        if outcome == "meeting_exclusion":
            which = rng.randrange(6)
            vocab = self.vocab
            if which <= 1:
                r["conditions"][vocab.secondary[rng.randrange(len(vocab.secondary))]] = "active"
            elif which == 2:
                r["conditions"][vocab.tumour_field] = "active"
                r["conditions"][vocab.tumour_site_field] = vocab.tumour_sites[rng.randrange(len(vocab.tumour_sites))]
            else:
                name, atc, rx = rng.choice(vocab.excluding[which - 3])
                med: dict[str, Any] = {"name": name}
                if atc:
                    med["atc"] = atc
                if rx:
                    med["rxnorm"] = rx
                med["start_date"] = (d0 - rng.randint(30, 2000) * _DAY).isoformat()
                med["ongoing"] = True
                r["medications"].insert(rng.randint(0, len(r["medications"])), med)
            return r
        if outcome == "withdrawal":
            r["consent"] = "declined" if rng.random() < 0.6 else "withdrawn"
            if rng.random() < 0.3:  # withdrew before the diary was complete
                r["diary"]["nights_recorded"] = rng.randint(3, self.window - 1)
                r["diary"]["episodes"] = r["diary"]["episodes"][:1]
            return r
        if outcome == "undetermined":
            which = rng.randrange(8)
            if which == 0:
                del r["birth_date"]
            elif which == 1:
                del r["diary"]
            elif which == 2:
                r["diary"] = {"nights_recorded": rng.randint(2, self.window - 1),
                              "episodes": self.episodes(d0, rng.randint(0, self.min_episodes - 1),
                                                        self.window - 1)}
            elif which == 3:
                assessed = self.vocab.secondary + (self.vocab.tumour_field,)  # a missing key leaves it unknown
                del r["conditions"][assessed[rng.randrange(len(assessed))]]
            elif which == 4:
                r["conditions"][self.vocab.secondary[rng.randrange(len(self.vocab.secondary))]] = "history"
            elif which == 5:
                del r["medication_history_taken"]
            elif which == 6:
                key = self.vocab.differential_keys[rng.randrange(len(self.vocab.differential_keys))]
                r["nlc_assessment"]["differentials"][key] = ("not_assessed", "coexisting")[rng.randrange(2)]
            else:
                del r["nlc_assessment"]["confirmed"]
            return r
        if outcome == "error":
            which = rng.randrange(5)
            if which == 0:
                r["diary"]["nights_recorded"] = str(self.window)  # "14" is not an integer
            elif which == 1:
                r["concent"] = r.pop("consent")  # a typo'd field name
            elif which == 2:
                del r["screening_start"]
            elif which == 3:
                r["birth_date"] = r["birth_date"].replace("-", "/")
            else:  # enrollment before the end of the diary window
                r["enrollment_date"] = (d0 + rng.randint(0, self.offset - 1) * _DAY).isoformat()
            return r
        raise ValueError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")


def generate(n: int, *, seed: int = 0, mix: dict[str, float] | str | None = None,
             ruleset: Any = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``n`` pairs (intended outcome, record dict), deterministic for ``(seed, mix, ruleset)``.

    :param ruleset: whose parameters the records are built around (default: paper-2024).
    """
    weights = parse_mix(mix) if not isinstance(mix, dict) else parse_mix(",".join(f"{k}={v}" for k, v in mix.items()))
    if ruleset is None:
        from .protocol import load_ruleset
        ruleset = load_ruleset()
    rng = random.Random(seed)
    builder = _Builder(rng, ruleset.parameters, seed, load_vocabulary(ruleset))
    outcomes = [k for k in OUTCOMES if weights[k] > 0]
    cumulative: list[float] = []
    total = 0.0
    for k in outcomes:
        total += weights[k]
        cumulative.append(total)
    for index in range(1, n + 1):
        x = rng.random() * total
        outcome = outcomes[-1]
        for k, edge in zip(outcomes, cumulative):
            if x < edge:
                outcome = k
                break
        yield outcome, builder.build(outcome, index)


def write_jsonl(out: IO[str], n: int, *, seed: int = 0, mix: dict[str, float] | str | None = None,
                ruleset: Any = None) -> dict[str, int]:
    """Write ``n`` records as JSON Lines; return how many of each outcome were written."""
    counts = dict.fromkeys(OUTCOMES, 0)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    batch: list[str] = []
    for outcome, record in generate(n, seed=seed, mix=mix, ruleset=ruleset):
        counts[outcome] += 1
        batch.append(dumps(record))
        if len(batch) >= 1000:
            out.write("\n".join(batch) + "\n")
            batch.clear()
    if batch:
        out.write("\n".join(batch) + "\n")
    return counts
