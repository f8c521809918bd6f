"""Synthetic candidate records for scale tests and the benchmark: realistic, varied, deterministic.

Each record is built for one intended outcome, drawn from a controllable mix::

    nlc-screen generate --n 100000 --seed 7 -o candidates.jsonl
    nlc-screen generate --n 1000 --mix eligible=0.5,undetermined=0.3,meeting_exclusion=0.2

Outcomes (the mix keys) and what screening under the paper-2024 criteria gives for them:

=========================  ==================================================================
``eligible``               decision ``eligible`` (consent signed: randomized; pending: pending)
``not_meeting_inclusion``  excluded, an inclusion criterion not met (age, diary, NLC assessment)
``meeting_exclusion``      excluded, one exclusion met (a listed condition, a malignant tumour,
                           a diuretic, a vitamin K antagonist or vitamin K2 taken ongoing)
``withdrawal``             excluded, consent declined or withdrawn
``undetermined``           undetermined: something is missing or needs the investigator
``error``                  the record cannot be read (a wrong type, a typo'd field, a missing
                           required field, dates that contradict each other): an ``error`` row
=========================  ==================================================================

Keys left out of ``--mix`` get weight 0; the weights are normalised, so ``eligible=3,error=1`` is
75 % / 25 %. Each record's outcome is drawn independently, so the counts follow the mix up to
sampling noise. The thresholds the records are built around (minimum age, diary window, minimum
episodes, enrollment offset, study window) are read from the ruleset's parameters, never written
here; exposures to excluding drugs are ongoing, so they fall inside any look-back.

Standard library only (plus the ruleset loader); the same ``(n, seed, mix)`` always gives the same
bytes. Reuses no code from fixtures/figure1/generate.py.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from typing import IO, Any

from .record import CONDITION_KEYS, DIFFERENTIAL_KEYS

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
_SITES = (("CD", "Third People's Hospital of Chengdu"), ("NC", "Affiliated Hospital of North Sichuan Medical College"),
          ("WH", "Wuhan Union Hospital"), ("GZ", "First Affiliated Hospital of Guangzhou Medical University"),
          ("SH", "Shanghai Sixth People's Hospital"))
_SITE_WEIGHTS = (0.34, 0.24, 0.16, 0.14, 0.12)
# Everyday medicines of older adults, none of them a diuretic, vitamin K antagonist or vitamin K:
# (English name, Chinese name, ATC, RxNorm ingredient or None).
_ROUTINE = (
    ("amlodipine besylate 5 mg", "苯磺酸氨氯地平片", "C08CA01", "17767"),
    ("nifedipine controlled-release 30 mg", "硝苯地平控释片", "C08CA05", None),
    ("losartan potassium 50 mg", "氯沙坦钾片", "C09CA01", "52175"),
    ("valsartan 80 mg", "缬沙坦胶囊", "C09CA03", None),
    ("metoprolol succinate 47.5 mg", "琥珀酸美托洛尔缓释片", "C07AB02", None),
    ("metformin hydrochloride 500 mg", "盐酸二甲双胍片", "A10BA02", "6809"),
    ("acarbose 50 mg", "阿卡波糖片", "A10BF01", None),
    ("empagliflozin 10 mg", "恩格列净片", "A10BK03", "1545653"),
    ("atorvastatin calcium 20 mg", "阿托伐他汀钙片", "C10AA05", "83367"),
    ("rosuvastatin calcium 10 mg", "瑞舒伐他汀钙片", "C10AA07", None),
    ("aspirin enteric-coated 100 mg", "阿司匹林肠溶片", "B01AC06", "1191"),
    ("apixaban 2.5 mg", "阿哌沙班片", "B01AF02", "1364430"),
    ("omeprazole 20 mg", "奥美拉唑肠溶胶囊", "A02BC01", None),
    ("calcium carbonate and vitamin D3", "碳酸钙D3片", "A12AX", None),
    ("celecoxib 200 mg", "塞来昔布胶囊", "M01AH01", None),
    ("mecobalamin 0.5 mg", "甲钴胺片", "B03BA05", None),
)
# Medicines that exclude (E13 diuretic, E14 vitamin K antagonist, E15 vitamin K2), as recorded in
# real notes: some with codes, some by name only.
_DIURETICS = (
    ("furosemide 20 mg", "C03CA01", "4603"), ("hydrochlorothiazide 25 mg", "C03AA03", None),
    ("spironolactone 20 mg", "C03DA01", "9997"), ("indapamide sustained-release 1.5 mg", None, None),
    ("螺内酯片", None, None), ("losartan/hydrochlorothiazide 50/12.5 mg", None, None),
)
_VKAS = (("warfarin sodium 2.5 mg", "B01AA03", "11289"), ("华法林钠片", None, None), ("acenocoumarol 1 mg", "B01AA07", None))
_K2 = (("Vitamin K2 (MK-7) 100 µg", None, None), ("menatetrenone 15 mg", "M05BX08", None), ("维生素K2软胶囊", None, None))
_EXPOSURE_KINDS = (_DIURETICS, _VKAS, _K2)
_SECONDARY = tuple(k for k in CONDITION_KEYS if k not in ("malignant_tumor", "peritoneal_dialysis"))
_ASSESSED = _SECONDARY + ("malignant_tumor",)  # a missing key leaves its criterion unknown
_TUMOUR_SITES = ("lung", "colorectal", "breast", "prostate", "gastric", "liver", "肺癌")


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
    def __init__(self, rng: random.Random, params: dict[str, Any], seed: int) -> None:
        self.rng = rng
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
            en, zh, atc, rx = _ROUTINE[rng.randrange(len(_ROUTINE))]
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
        code, site = _SITES[rng.choices(range(len(_SITES)), _SITE_WEIGHTS)[0]]
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
        record["nlc_assessment"] = {"confirmed": True, "differentials": dict.fromkeys(DIFFERENTIAL_KEYS, "absent")}
        conditions: dict[str, Any] = dict.fromkeys(CONDITION_KEYS, "absent")
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
                key = DIFFERENTIAL_KEYS[rng.randrange(len(DIFFERENTIAL_KEYS))]
                r["nlc_assessment"]["differentials"][key] = "explains_symptoms"
            return r
        if outcome == "meeting_exclusion":
            which = rng.randrange(6)
            if which <= 1:
                r["conditions"][_SECONDARY[rng.randrange(len(_SECONDARY))]] = "active"
            elif which == 2:
                r["conditions"]["malignant_tumor"] = "active"
                r["conditions"]["malignant_tumor_site"] = _TUMOUR_SITES[rng.randrange(len(_TUMOUR_SITES))]
            else:
                name, atc, rx = rng.choice(_EXPOSURE_KINDS[which - 3])
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
                del r["conditions"][_ASSESSED[rng.randrange(len(_ASSESSED))]]
            elif which == 4:
                r["conditions"][_SECONDARY[rng.randrange(len(_SECONDARY))]] = "history"
            elif which == 5:
                del r["medication_history_taken"]
            elif which == 6:
                key = DIFFERENTIAL_KEYS[rng.randrange(len(DIFFERENTIAL_KEYS))]
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
    builder = _Builder(rng, ruleset.parameters, seed)
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
