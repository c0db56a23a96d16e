"""The emotion of a reply, as a VRM expression preset with an intensity.

Weighted keywords in English and French, as the ancestor did: cheap, predictable, and good
enough to make the avatar smile at a joke. Intensity grows with the weight found, capped at 1.
"""

from __future__ import annotations

import re
import unicodedata

from protocol.messages import EMOTIONS

# preset -> {keyword: weight}. Keywords are accent-free lowercase; matching folds accents.
LEXICON: dict[str, dict[str, float]] = {
    "joy": {"happy": 1.0, "glad": 1.0, "great": 0.6, "wonderful": 1.0, "love": 0.8,
            "yay": 1.0, "awesome": 0.8, "delighted": 1.0, "nice": 0.5, "thank": 0.5,
            "content": 0.6, "heureux": 1.0, "heureuse": 1.0, "joie": 1.0, "genial": 0.8,
            "super": 0.6, "merci": 0.5, "adore": 0.8, "ravi": 1.0, "ravie": 1.0},
    "fun": {"haha": 1.0, "lol": 1.0, "funny": 1.0, "joke": 0.8, "fun": 0.8, "hehe": 1.0,
            "amusing": 0.8, "drole": 1.0, "rigolo": 1.0, "blague": 0.8, "mdr": 1.0,
            "amusant": 0.8, ":)": 0.6, ";)": 0.6},
    "sorrow": {"sad": 1.0, "sorry": 0.7, "unfortunately": 0.6, "miss": 0.5, "cry": 1.0,
               "lonely": 1.0, "triste": 1.0, "desole": 0.7, "desolee": 0.7,
               "malheureusement": 0.6, "pleurer": 1.0, "seul": 0.5, ":(": 0.8},
    "angry": {"angry": 1.0, "annoying": 0.8, "hate": 1.0, "furious": 1.0, "mad": 0.7,
              "unfair": 0.6, "colere": 1.0, "enerve": 0.8, "deteste": 1.0, "furieux": 1.0},
    "surprised": {"wow": 1.0, "really": 0.4, "amazing": 0.8, "surprise": 1.0, "whoa": 1.0,
                  "incredible": 0.8, "unexpected": 0.8, "oh": 0.3, "vraiment": 0.4,
                  "incroyable": 0.8, "etonnant": 0.8, "surpris": 1.0, "surprise!": 1.0},
}
# What detect() can return: the registry's presets (the bridge drives the same ones) + neutral.
PRESETS = (*EMOTIONS, "neutral")
_WORD = re.compile(r"[a-z]+!?|[:;][()]")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def detect(text: str) -> tuple[str, float]:
    """(preset, intensity in 0..1); ('neutral', 0.0) when nothing stands out."""
    words = _WORD.findall(_fold(text))
    if not words:
        return "neutral", 0.0
    scores = {name: 0.0 for name in LEXICON}
    for w in words:
        for name, table in LEXICON.items():
            weight = table.get(w) or table.get(w.rstrip("!"))
            if weight:
                scores[name] += weight * (1.25 if w.endswith("!") else 1.0)
    name = max(scores, key=lambda n: scores[n])
    score = scores[name]
    if score < 0.5:
        return "neutral", 0.0
    return name, round(min(1.0, 0.3 + 0.35 * score), 3)
