"""General text: short bilingual stories from a small grammar, so the corpus is not all tasks.

Sentences about people, places, animals, objects, activities, times and the weather; a
document is three to five of them. The vocabulary is small on purpose: a tiny model can learn
its regularities in minutes, and the loss on it shows what "learning a language" looks like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from phasebook.data.arithmetic import NAMES

Lang = Literal["en", "zh"]

# slot -> (English, Chinese, Chinese measure word); the measure word is "" where none is used.
VOCABULARY: dict[str, tuple[tuple[str, str, str], ...]] = {
    "name": tuple((en, zh, "") for en, zh, _ in NAMES),
    "place": (("park", "公园", ""), ("zoo", "动物园", ""), ("library", "图书馆", ""),
              ("market", "市场", ""), ("station", "车站", ""), ("beach", "海边", "")),
    "time": (("In the morning", "早上", ""), ("At noon", "中午", ""), ("In the evening", "晚上", ""),
             ("Yesterday", "昨天", ""), ("On Monday", "星期一", ""), ("On Sunday", "星期天", "")),
    "animal": (("cat", "猫", "只"), ("dog", "狗", "只"), ("bird", "鸟", "只"), ("horse", "马", "匹"),
               ("fish", "鱼", "条")),
    "activity": (("read", "看书", ""), ("sing", "唱歌", ""), ("draw", "画画", ""), ("swim", "游泳", ""),
                 ("cook", "做饭", ""), ("play football", "踢足球", "")),
    "object": (("cup", "杯子", "个"), ("bag", "包", "个"), ("key", "钥匙", "把"), ("hat", "帽子", "顶")),
    "position": (("on the table", "桌子上", ""), ("under the bed", "床底下", ""),
                 ("by the door", "门边", ""), ("on the chair", "椅子上", "")),
    "weather": (("sunny", "晴朗", ""), ("cold", "冷", ""), ("warm", "暖和", ""), ("hot", "热", "")),
}
# (English, Chinese, slots); {slot} is the word, {slot_mw} its Chinese measure word; "name2" is a
# second person, always different from "name".
SENTENCES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("{time}, {name} went to the {place}.", "{time}{name}去了{place}。", ("time", "name", "place")),
    ("{name} saw a {animal} at the {place}.", "{name}在{place}看到了一{animal_mw}{animal}。",
     ("name", "animal", "place")),
    ("{name} likes to {activity}.", "{name}喜欢{activity}。", ("name", "activity")),
    ("{name} and {name2} went to the {place} together.", "{name}和{name2}一起去了{place}。",
     ("name", "name2", "place")),
    ("The {object} is {position}.", "{object}在{position}。", ("object", "position")),
    ("{name} bought a {object} at the {place}.", "{name}在{place}买了一{object_mw}{object}。",
     ("name", "object", "place")),
    ("{time}, the weather was {weather}.", "{time}天气很{weather}。", ("time", "weather")),
)


@dataclass(frozen=True)
class GeneralDocument:
    """A few sentences, each (sentence kind, one word index per slot)."""

    sentences: tuple[tuple[int, ...], ...]

    @property
    def key(self) -> tuple:
        return ("general", self.sentences)

    def render(self, lang: Lang) -> str:
        column = 0 if lang == "en" else 1
        out = []
        for kind, *words in self.sentences:
            en, zh, slots = SENTENCES[kind]
            fill = {}
            for slot, w in zip(slots, words, strict=True):
                entry = VOCABULARY["name" if slot == "name2" else slot][w]
                fill[slot], fill[f"{slot}_mw"] = entry[column], entry[2]
            out.append((en if lang == "en" else zh).format(**fill))
        return (" " if lang == "en" else "").join(out) + "\n"


def general_item(seed: int, index: int) -> GeneralDocument:
    """Document `index` of stream `seed`: three to five random sentences."""
    rng = np.random.default_rng([seed, index])
    sentences = []
    for _ in range(int(rng.integers(3, 6))):
        kind = int(rng.integers(len(SENTENCES)))
        words = []
        for slot in SENTENCES[kind][2]:
            w = int(rng.integers(len(VOCABULARY["name" if slot == "name2" else slot])))
            if slot == "name2" and w == words[0]:
                w = (w + 1) % len(NAMES)
            words.append(w)
        sentences.append((kind, *words))
    return GeneralDocument(tuple(sentences))


def general_document(seed: int, index: int, lang: Lang) -> str:
    """Document `index` of stream `seed` in `lang`; both languages tell the same story."""
    return general_item(seed, index).render(lang)
