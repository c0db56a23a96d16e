"""Vowel mouth shapes (visemes) from reply text: lip sync for a companion that has no audio.

Without TTS the text is all there is, so each syllable becomes the mouth shape of its vowel:
aa, ih, ou, ee, oh (VRM's vowel expressions), and "sil" (closed) at punctuation. Latin
letters (with accents) go by vowel group, a digraph choosing the shape ("oo" -> ou); Japanese
kana go by the vowel of each mora (か -> aa, きゃ -> aa, ん and っ close, ー holds); a kanji,
whose reading is unknown here, opens the mouth once. Other scripts' letters count as
consonants. Deliberately simple and deterministic: it is a mouth that moves like speech,
not phonetics.
"""

from __future__ import annotations

import unicodedata

from protocol.messages import VISEME_SILENCE

SIL = VISEME_SILENCE
LATIN = {"a": "aa", "e": "ee", "i": "ih", "o": "oh", "u": "ou", "y": "ih"}
DIGRAPHS = {"oo": "ou", "ee": "ee", "ea": "ee", "ou": "ou", "ow": "oh", "au": "oh", "ie": "ee",
            "ai": "ee", "ay": "ee", "oi": "oh", "oy": "oh", "ue": "ou", "ui": "ih"}
ROMAJI = {"A": "aa", "I": "ih", "U": "ou", "E": "ee", "O": "oh"}
PAUSE = frozenset(".,!?;:…。、！？")
# A piece longer than this is cut: one bus event never becomes an unbounded frame.
MAX_VISEMES = 256


def _base(ch: str) -> str:
    """A Latin letter without its accent, lowercased ("É" -> "e")."""
    return unicodedata.normalize("NFD", ch)[0].lower()


def _kana(ch: str) -> tuple[str, bool] | None:
    """(viseme, small) of a kana letter; None for anything else. Small ya/yu/yo/a.. change
    the vowel of the mora before them; small tsu (a stop) and n close the mouth."""
    name = unicodedata.name(ch, "")
    if not name.startswith(("HIRAGANA LETTER ", "KATAKANA LETTER ")):
        return None
    small = " SMALL " in name
    roman = name.rsplit(" ", 1)[1]
    if roman in ("N", "TU") and (roman == "N" or small):
        return SIL, False
    vowel = ROMAJI.get(roman[-1])
    return (vowel, small) if vowel else None


def visemes(text: str, mouth_open: bool = False) -> list[str]:
    """The mouth shapes of a piece of text, in order (at most MAX_VISEMES). `mouth_open`: the
    text before this piece ended on a sound, so a pause at its start closes the mouth."""
    out: list[str] = []
    group = ""  # the Latin vowel letters of the group being read
    prev_letter = ""

    def flush() -> None:
        nonlocal group
        if group:
            out.append(DIGRAPHS.get(group[:2]) or LATIN[group[0]])
            group = ""

    for ch in text:
        base = _base(ch) if ch.isalpha() else ""
        if base in LATIN and not (base == "y" and not prev_letter):  # y starts "yes": consonant
            group += base
            prev_letter = base
            continue
        flush()
        prev_letter = base if ch.isalpha() else ""
        kana = _kana(ch)
        if kana is not None:
            shape, small = kana
            if small and out and out[-1] != SIL:
                out[-1] = shape  # きゃ is one mora: kya
            else:
                out.append(shape)
        elif ch == "ー" and out:  # the prolonged sound mark holds the vowel
            out.append(out[-1])
        elif unicodedata.name(ch, "").startswith("CJK UNIFIED IDEOGRAPH"):
            out.append("aa")
        elif ch in PAUSE and (out[-1] != SIL if out else mouth_open):
            out.append(SIL)
    flush()
    return out[:MAX_VISEMES]


class VisemeStream:
    """The visemes of a reply that arrives in pieces, the same as of the whole text.

    A token may end inside a word ("bo" + "ok") or on a kana that a small kana in the next
    piece changes (き + ゃ): that tail waits for the next piece, so the word gives one mouth
    shape, not two. The wait is one token; `end` reads what is left.
    """

    def __init__(self) -> None:
        self.pending = ""
        self.mouth_open = False

    def feed(self, piece: str) -> list[str]:
        text = self.pending + piece
        cut = _readable(text)
        self.pending = text[cut:]
        return self._read(text[:cut])

    def end(self) -> list[str]:
        text, self.pending = self.pending, ""
        return self._read(text)

    def _read(self, text: str) -> list[str]:
        shapes = visemes(text, self.mouth_open) if text else []
        if shapes:
            self.mouth_open = shapes[-1] != SIL
        return shapes


def _readable(text: str) -> int:
    """How much of `text` can be read now: all but a Latin word still being spelled at its
    end, or its last mora (a small kana, きゃ, or the prolonged mark, カー, may follow)."""
    end = len(text)
    while end and text[end - 1].isalpha() and _base(text[end - 1]) in _LATIN_LETTERS:
        end -= 1
    if end < len(text):
        return end
    while end and (text[end - 1] == "ー" or " SMALL " in unicodedata.name(text[end - 1], "")):
        end -= 1
    return end - 1 if end and text[end - 1].isalpha() else end


_LATIN_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")
