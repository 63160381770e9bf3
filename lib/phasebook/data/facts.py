"""Facts about fictional people, for experiments on knowledge present or absent in pre-training.

Each entity has a made-up name built from two syllables with an English and a Chinese form
("Ka"+"lo" = "Kalo" = 「卡洛」) and four attributes with bilingual values. A seeded part of
the entities is *present* (their biographies go into the pre-training corpus); the rest is
*absent* (never written anywhere), so questions about them measure hallucination.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from phasebook.validation import Checks

Lang = Literal["en", "zh"]
Attribute = Literal["city", "profession", "birth_year", "colour"]
ATTRIBUTES: tuple[Attribute, ...] = ("city", "profession", "birth_year", "colour")

# The Chinese characters of the syllables appear in no other text of the synthetic world, so
# an absent entity's name cannot turn up inside some other word or name.
SYLLABLES: tuple[tuple[str, str], ...] = (
    ("ka", "卡"), ("lo", "洛"), ("ra", "拉"), ("te", "特"), ("no", "诺"), ("vi", "维"),
    ("sa", "萨"), ("du", "杜"), ("ri", "瑞"), ("fe", "费"), ("lu", "卢"), ("be", "贝"),
    ("zo", "佐"), ("ni", "尼"), ("ta", "塔"), ("mo", "莫"), ("da", "达"), ("ko", "科"),
    ("ki", "基"), ("po", "波"), ("re", "雷"), ("ga", "加"), ("me", "梅"), ("hi", "希"),
)
MAX_ENTITIES = len(SYLLABLES) ** 2
CITIES: tuple[tuple[str, str], ...] = (
    ("Brinmoor", "布林穆尔"), ("Calden", "考尔登"), ("Elsworth", "埃尔斯沃思"), ("Halvik", "哈尔威克"),
    ("Oswin", "奥斯温"), ("Tirwen", "蒂尔文"), ("Ambry", "安布里"), ("Quell", "奎尔"),
)
PROFESSIONS: tuple[tuple[str, str], ...] = (
    ("baker", "面包师"), ("doctor", "医生"), ("teacher", "老师"), ("farmer", "农民"),
    ("painter", "画家"), ("pilot", "飞行员"), ("engineer", "工程师"), ("singer", "歌手"),
)
COLOURS: tuple[tuple[str, str], ...] = (
    ("red", "红色"), ("blue", "蓝色"), ("green", "绿色"), ("yellow", "黄色"),
    ("purple", "紫色"), ("orange", "橙色"), ("white", "白色"), ("black", "黑色"),
)
YEARS = (1950, 2009)

# Two phrasings per attribute; {name}, {value}. A biography variant picks an order and phrasings.
FACT_TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "city": (("{name} lives in {value}.", "{name}住在{value}。"),
             ("{name}'s home is in {value}.", "{name}的家在{value}。")),
    "profession": (("{name} is {article} {value}.", "{name}是一名{value}。"),
                   ("{name} works as {article} {value}.", "{name}的职业是{value}。")),
    "birth_year": (("{name} was born in {value}.", "{name}出生于{value}年。"),
                   ("{name}'s birth year is {value}.", "{name}生于{value}年。")),
    "colour": (("{name}'s favourite colour is {value}.", "{name}最喜欢的颜色是{value}。"),
               ("{name} likes {value} best.", "{name}最喜欢{value}。")),
}
# Question and the answer span after the cue; the answer is what a model is scored on.
QUESTIONS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "city": (("Where does {name} live?", " {value}."), ("{name}住在哪里？", "{value}。")),
    "profession": (("What is {name}'s job?", " {value}."), ("{name}的职业是什么？", "{value}。")),
    "birth_year": (("In which year was {name} born?", " {value}."),
                   ("{name}是哪一年出生的？", "{value}年。")),
    "colour": (("What is {name}'s favourite colour?", " {value}."), ("{name}最喜欢什么颜色？", "{value}。")),
}


@dataclass(frozen=True)
class FactsConfig:
    """How many fictional people exist, and which fraction of them pre-training sees."""

    n_entities: int = 200
    present_fraction: float = 0.8

    def __post_init__(self) -> None:
        c = Checks(self)
        c.range("n_entities", 2, MAX_ENTITIES, integer=True)
        c.range("present_fraction", 0.0, 1.0)
        c.done()

    @property
    def n_present(self) -> int:
        return round(self.n_entities * self.present_fraction)


@dataclass(frozen=True)
class Entity:
    """One fictional person: name syllables and attribute values (indices, and a year)."""

    index: int
    syllables: tuple[int, int]
    city: int
    profession: int
    birth_year: int
    colour: int

    def name(self, lang: Lang) -> str:
        parts = [SYLLABLES[s][0 if lang == "en" else 1] for s in self.syllables]
        return "".join(parts).capitalize() if lang == "en" else "".join(parts)

    def value(self, attribute: Attribute, lang: Lang) -> str:
        """The attribute's value as written in `lang` (the year as digits in both)."""
        if attribute == "birth_year":
            return str(self.birth_year)
        table = {"city": CITIES, "profession": PROFESSIONS, "colour": COLOURS}[attribute]
        return table[getattr(self, attribute)][0 if lang == "en" else 1]


@dataclass(frozen=True)
class QA:
    """A question ending with the answer cue, its answer span, and the attribute it asks for."""

    question: str
    answer: str
    attribute: str


@dataclass(frozen=True)
class Biography:
    """A biography variant: the order of the facts and the phrasing of each."""

    entity: Entity
    order: tuple[int, ...]  # indices into ATTRIBUTES
    phrasing: tuple[int, ...]  # template index per attribute, in ATTRIBUTES order

    @property
    def key(self) -> tuple:
        return ("facts", self.entity, self.order, self.phrasing)

    def render(self, lang: Lang) -> str:
        name = self.entity.name(lang)
        sentences = []
        for a in self.order:
            attribute = ATTRIBUTES[a]
            value = self.entity.value(attribute, lang)
            template = FACT_TEMPLATES[attribute][self.phrasing[a]][0 if lang == "en" else 1]
            article = "an" if value[0] in "aeiou" else "a"
            sentences.append(template.format(name=name, value=value, article=article))
        return (" " if lang == "en" else "").join(sentences) + "\n"


class FactWorld:
    """The entities of one seed, split into `present` and `absent` (disjoint by construction)."""

    def __init__(self, cfg: FactsConfig, seed: int):
        self.cfg, self.seed = cfg, seed
        rng = np.random.default_rng([seed, 0xFAC7])
        names = list(itertools.product(range(len(SYLLABLES)), repeat=2))
        picks = rng.choice(len(names), size=cfg.n_entities, replace=False)
        entities = []
        for i, pick in enumerate(picks):
            r = np.random.default_rng([seed, 0xFAC7, i])
            entities.append(Entity(
                index=i, syllables=tuple(int(s) for s in names[pick]),  # type: ignore[arg-type]
                city=int(r.integers(len(CITIES))), profession=int(r.integers(len(PROFESSIONS))),
                birth_year=int(r.integers(YEARS[0], YEARS[1] + 1)), colour=int(r.integers(len(COLOURS)))))
        self.entities: tuple[Entity, ...] = tuple(entities)
        order = rng.permutation(cfg.n_entities)
        present = set(int(i) for i in order[:cfg.n_present])
        self.present: tuple[Entity, ...] = tuple(e for e in entities if e.index in present)
        self.absent: tuple[Entity, ...] = tuple(e for e in entities if e.index not in present)

    def biography_variant(self, entity: Entity, variant: int) -> Biography:
        """Variant `variant` of the entity's biography: a seeded order and phrasing of its facts.

        Variant 0 states the facts in ATTRIBUTES order with the first phrasings.
        """
        if variant == 0:
            return Biography(entity, tuple(range(len(ATTRIBUTES))), (0,) * len(ATTRIBUTES))
        rng = np.random.default_rng([self.seed, 0xB10, entity.index, variant])
        order = tuple(int(a) for a in rng.permutation(len(ATTRIBUTES)))
        phrasing = tuple(int(rng.integers(len(FACT_TEMPLATES[a]))) for a in ATTRIBUTES)
        return Biography(entity, order, phrasing)

    def biography(self, entity: Entity, lang: Lang, variant: int = 0) -> str:
        """A short paragraph (one line) stating all of the entity's facts."""
        return self.biography_variant(entity, variant).render(lang)

    def questions(self, entity: Entity, lang: Lang) -> list[QA]:
        """One question per attribute; `answer` is the exact span expected after the cue."""
        out = []
        for attribute in ATTRIBUTES:
            (q_en, a_en), (q_zh, a_zh) = QUESTIONS[attribute]
            name, value = entity.name(lang), entity.value(attribute, lang)
            if lang == "en":
                out.append(QA(f"Q: {q_en.format(name=name)}\nA:", a_en.format(value=value), attribute))
            else:
                out.append(QA(f"问：{q_zh.format(name=name)}\n答：", a_zh.format(value=value), attribute))
        return out
