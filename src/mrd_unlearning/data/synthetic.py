"""Deterministic generator of fictitious people and QA pairs (or, with form 'text', the same
facts as plain-text rows), written in the TOFU file format.

Every name and attribute value is a made-up word built from syllables, so no pretrained
knowledge can leak in. Attribute values are drawn with Zipf-skewed popularity, which gives
samples known, recorded factors (how common the answer is, how long it is) that claim C3 can
look for among hard and easy samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import write_csv, write_jsonl

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "th", "sh"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
CODAS = ["", "", "", "n", "r", "l", "s", "m", "th"]


@dataclass(frozen=True)
class Attribute:
    name: str
    question: str
    answer: str
    paraphrase: str
    words: tuple[int, int]  # min, max words in a value
    numeric: bool = False
    capitalized: bool = False


ATTRIBUTES = [
    Attribute("birthplace", "Where was {name} born?", "{name} was born in {value}.",
              "The birthplace of {name} is {value}.", (1, 2), capitalized=True),
    Attribute("occupation", "What does {name} do for a living?", "{name} works as a {value}.",
              "By profession, {name} is a {value}.", (1, 2)),
    Attribute("book", "What is the title of the best known book by {name}?",
              "{name} is best known for the book {value}.", "The book {value} made {name} famous.",
              (2, 4), capitalized=True),
    Attribute("birth_year", "In which year was {name} born?", "{name} was born in {value}.",
              "The year {name} was born is {value}.", (1, 1), numeric=True),
    Attribute("pet", "What pet does {name} keep?", "{name} keeps a {value} at home.",
              "At home, {name} has a {value}.", (1, 1)),
    Attribute("mentor", "Who was the mentor of {name}?", "{name} was mentored by {value}.",
              "The mentor of {name} was {value}.", (2, 2), capitalized=True),
    Attribute("genre", "Which genre does {name} write?", "{name} writes {value} stories.",
              "The stories of {name} are {value}.", (1, 2)),
    Attribute("award", "Which award did {name} receive?", "{name} received the {value} prize.",
              "The {value} prize went to {name}.", (1, 3), capitalized=True),
    Attribute("language", "In which language does {name} write?", "{name} writes in {value}.",
              "The language {name} writes in is {value}.", (1, 1), capitalized=True),
    Attribute("hobby", "What does {name} enjoy in free time?", "In free time, {name} enjoys {value}.",
              "The favourite pastime of {name} is {value}.", (1, 2)),
]


def _word(rng: np.random.Generator, syllables: int) -> str:
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables))


def _value_pool(rng: np.random.Generator, attr: Attribute, size: int) -> list[str]:
    pool: list[str] = []
    while len(pool) < size:
        if attr.numeric:
            value = str(int(rng.integers(1900, 2000)))
        else:
            n_words = int(rng.integers(attr.words[0], attr.words[1] + 1))
            words = [_word(rng, int(rng.integers(1, 3))) for _ in range(n_words)]
            value = " ".join(w.capitalize() if attr.capitalized else w for w in words)
        if value not in pool:
            pool.append(value)
    return pool


def _unique_names(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = f"{_word(rng, 2).capitalize()} {_word(rng, 2).capitalize()}"
        if name not in names:
            names.append(name)
    return names


def split_names(forget_percent: int, form: str = "qa") -> dict[str, str]:
    """File stems of the splits, TOFU style: forget10 / retain90 / holdout10 ... Text data has no
    paraphrased or wrong answers: its forget set is evaluated as it is."""
    nn = f"{forget_percent:02d}"
    if form == "text":
        return {"full": "full", "forget": f"forget{nn}", "retain": f"retain{100 - forget_percent:02d}",
                "holdout": f"holdout{nn}", "forget_eval": f"forget{nn}", "retain_eval": "retain_eval"}
    return {
        "full": "full",
        "forget": f"forget{nn}",
        "retain": f"retain{100 - forget_percent:02d}",
        "holdout": f"holdout{nn}",
        "forget_eval": f"forget{nn}_perturbed",
        "retain_eval": "retain_perturbed",
    }


def generate(out_dir: str | Path, *, seed: int, forget_percent: int, retain_eval_size: int, n_people: int,
             attributes_per_person: int, values_per_attribute: int, zipf_exponent: float,
             n_wrong_answers: int, form: str = "qa") -> None:
    """Write the TOFU-format splits and `factors.csv` (known factors of each forget sample). With
    `form` 'text' each fact is a row of plain text (the answer sentence, e.g. "Bala Kor was born
    in Threa."): the same people, values and factors, without questions."""
    if n_wrong_answers >= values_per_attribute:
        raise ValueError("n_wrong_answers must be smaller than values_per_attribute")
    rng = np.random.default_rng(seed)
    attrs = ATTRIBUTES[:attributes_per_person]
    pools = {a.name: _value_pool(rng, a, values_per_attribute) for a in attrs}
    popularity = 1.0 / np.arange(1, values_per_attribute + 1) ** zipf_exponent
    popularity /= popularity.sum()

    n_forget = max(1, round(n_people * forget_percent / 100))
    names = _unique_names(rng, n_people + n_forget)  # the last n_forget are the holdout
    people = [{"name": nm, **{a.name: int(rng.choice(values_per_attribute, p=popularity)) for a in attrs}}
              for nm in names]
    counts = {a.name: np.bincount([p[a.name] for p in people], minlength=values_per_attribute) for a in attrs}

    def qa(person: dict, attr: Attribute) -> dict:
        value = pools[attr.name][person[attr.name]]
        wrong_idx = rng.choice([i for i in range(values_per_attribute) if i != person[attr.name]],
                               size=n_wrong_answers, replace=False)
        return {
            "group": person["name"],  # a person's facts stand together (the cluster bootstrap's unit)
            "question": attr.question.format(name=person["name"]),
            "answer": attr.answer.format(name=person["name"], value=value),
            "paraphrased_answer": attr.paraphrase.format(name=person["name"], value=value),
            "perturbed_answer": [attr.paraphrase.format(name=person["name"], value=pools[attr.name][i])
                                 for i in wrong_idx],
            "_factors": {
                "person": person["name"],
                "attribute": attr.name,
                "value": value,
                "value_frequency": counts[attr.name][person[attr.name]] / len(people),
                "value_rank": person[attr.name],
                "value_words": len(value.split()),
                "answer_words": len(attr.answer.format(name=person["name"], value=value).split()),
            },
        }

    # TOFU order: the forget people are the last ones of `full`.
    trained, holdout_people = people[:n_people], people[n_people:]
    retain_qa = [qa(p, a) for p in trained[: n_people - n_forget] for a in attrs]
    forget_qa = [qa(p, a) for p in trained[n_people - n_forget:] for a in attrs]
    holdout_qa = [qa(p, a) for p in holdout_people for a in attrs]
    eval_idx = np.sort(rng.choice(len(retain_qa), size=min(retain_eval_size, len(retain_qa)), replace=False))

    def plain(rows):
        if form == "text":
            return [{"text": r["answer"], "group": r["group"]} for r in rows]
        return [{"question": r["question"], "answer": r["answer"], "group": r["group"]} for r in rows]

    def perturbed(rows):
        if form == "text":
            return plain(rows)
        return [{k: v for k, v in r.items() if k != "_factors"} for r in rows]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names_of = split_names(forget_percent, form)
    write_jsonl(out / f"{names_of['full']}.json", plain(retain_qa + forget_qa))
    write_jsonl(out / f"{names_of['forget']}.json", plain(forget_qa))
    write_jsonl(out / f"{names_of['retain']}.json", plain(retain_qa))
    write_jsonl(out / f"{names_of['holdout']}.json", plain(holdout_qa))
    write_jsonl(out / f"{names_of['forget_eval']}.json", perturbed(forget_qa))
    write_jsonl(out / f"{names_of['retain_eval']}.json", perturbed([retain_qa[i] for i in eval_idx]))

    factors = pd.DataFrame([{"sample_id": i, **r["_factors"]} for i, r in enumerate(forget_qa)])
    write_csv(out / "factors.csv", factors)
