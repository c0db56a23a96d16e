"""Lip sync from the reply text: vowel visemes derived by the bridge and streamed to clients.

The derivation is pure (unity_bridge/visemes.py); the end-to-end test runs the real stack
with the embedded model and reads the viseme stream as a TCP avatar client while the chat
streams.
"""

from __future__ import annotations

import itertools

import pytest

from protocol.messages import EXPRESSIONS, REGISTRY, VISEME_SILENCE, VISEMES, validate_data
from supervisor.harness import Stack
from tests.helpers.bridge import connect
from unity_bridge.avatar import Avatar, CommandError, normalize
from unity_bridge.visemes import MAX_VISEMES, VisemeStream, visemes


@pytest.mark.parametrize("text,shapes", [
    ("Hello there!", ["ee", "oh", "ee", "ee", "sil"]),
    ("book", ["ou"]),  # a digraph picks the shape
    ("yes, my boy.", ["ee", "sil", "ih", "oh", "sil"]),  # y: consonant first, vowel after
    ("Été", ["ee", "ee"]),  # accents
    ("hmm", []),
    ("...", []),  # no shape yet: nothing to close
    ("か き く け こ", ["aa", "ih", "ou", "ee", "oh"]),
    ("きゃ", ["aa"]),  # small ya: one mora, kya
    ("こんにちは", ["oh", "sil", "ih", "ih", "aa"]),  # ん closes the mouth
    ("カード", ["aa", "aa", "oh"]),  # ー holds the vowel
    ("日本", ["aa", "aa"]),  # no reading for kanji: one opening each
])
def test_visemes_of_text(text: str, shapes: list[str]) -> None:
    assert visemes(text) == shapes


STREAMED = ["Hello there! How are you, my boy? The book is good.", "Yes... you, yes.",
            "こんにちは、きゃりーさん。カードです！", "Éte, naïve café. 日本", "a, e. i!"]


@pytest.mark.parametrize("text", STREAMED)
def test_a_reply_in_pieces_gives_the_visemes_of_the_whole_text(text: str) -> None:
    """Tokens cut words ("bo" + "ok"), kana pairs (き + ゃ) and pauses anywhere: the shapes
    streamed are those of the whole text, at every cut and at every pair of cuts."""
    whole = visemes(text)
    cuts = [(i,) for i in range(len(text) + 1)] + [
        (i, j) for i in range(0, len(text) + 1, 3) for j in range(i, len(text) + 1, 2)]
    for cut in cuts:
        bounds = [0, *cut, len(text)]
        stream = VisemeStream()
        shapes = [s for a, b in itertools.pairwise(bounds) for s in stream.feed(text[a:b])]
        assert shapes + stream.end() == whole, (text, cut)


def test_visemes_are_bounded_and_from_the_registry() -> None:
    many = visemes("a " * 1000)
    assert len(many) == MAX_VISEMES
    assert set(visemes("The quick brown fox, jumps over; the lazy dog! いろはにほへと")) <= {
        *VISEMES, VISEME_SILENCE}
    vowels = {e.wire for e in EXPRESSIONS if e.vrm0 in ("A", "I", "U", "E", "O")}
    assert vowels == set(VISEMES)  # each viseme is an expression of the one table


def test_a_piece_becomes_a_viseme_message_and_mouth_stays() -> None:
    avatar = Avatar()
    avatar.on_event("chat_started", {"request_id": 3})
    out = avatar.on_event("chat_delta", {"request_id": 3, "text": "Hi yo", "index": 0})
    types = [t for t, _ in out]
    assert types == ["avatar_state", "speech", "viseme", "mouth"]
    data = dict(out)["viseme"]
    assert data == {"request_id": 3, "visemes": ["ih"]}  # "yo" may go on: it waits
    assert validate_data(REGISTRY["viseme"], data) is None
    out = avatar.on_event("chat_delta", {"request_id": 3, "text": "u 42", "index": 1})
    assert dict(out)["viseme"]["visemes"] == ["ou"]  # "you": one shape, not "yo" + "u"
    # A piece without a vowel sends no viseme (the mouth value still follows it).
    assert [t for t, _ in avatar.on_event("chat_delta", {"request_id": 3, "text": " 7",
                                                         "index": 2})] == ["speech", "mouth"]
    # The end reads what waited, before the final speech frame.
    avatar.on_event("chat_delta", {"request_id": 3, "text": " ok", "index": 3})
    out = avatar.on_event("chat_ended", {"request_id": 3, "text": "Hi you 42 7 ok"})
    assert [t for t, _ in out][:2] == ["viseme", "speech"]
    assert dict(out)["viseme"]["visemes"] == ["oh"]


@pytest.mark.parametrize("name,wire", [("A", "aa"), ("happy", "joy"), ("blinkLeft", "blink_l"),
                                       ("Blink_R", "blink_r"), ("Surprised", "surprised"),
                                       ("MyOwn", "myown")])
def test_the_bridge_takes_any_spelling_of_the_table(name: str, wire: str) -> None:
    assert normalize("set_expression", {"name": name, "value": 0.5})["name"] == wire


def test_table_names_are_never_refused_past_the_custom_limit() -> None:
    avatar = Avatar(max_expressions=1)
    avatar.command("set_expression", {"name": "custom1", "value": 1})
    with pytest.raises(CommandError):
        avatar.command("set_expression", {"name": "custom2", "value": 1})
    for e in EXPRESSIONS:
        avatar.command("set_expression", {"name": e.vrm10, "value": 1})
    assert set(avatar.state.expressions) == {"custom1", *(e.wire for e in EXPRESSIONS)}


def warm_up(stack: Stack, avatar) -> None:
    """Short chats until one reaches the client as speech: the bridge subscribes to the
    per-token events when its first client comes, and a subscription takes a moment to reach
    the publisher. Then everything of the warm-up is read, up to idle."""
    for _ in range(20):
        stack.client.request("chat", {"text": "Hi", "max_tokens": 2, "conversation": "warm"},
                             timeout=120)
        try:
            avatar.wait_for("speech", lambda e: not e.data["done"], 5)  # a per-token piece
        except TimeoutError:
            continue
        avatar.wait_for("avatar_state", lambda e: e.data["state"] == "idle", 10)
        return
    raise AssertionError("no chat reached the avatar client")


def test_a_tcp_client_gets_the_visemes_of_a_real_chat(make_stack) -> None:
    stack: Stack = make_stack(unity_bridge={"port": 0}).start()
    avatar = connect(stack, "avatar")
    try:
        stack.wait_state("inference", "RUNNING", 120)
        warm_up(stack, avatar)
        reply = stack.client.request("chat", {"text": "Say hello to Ana, please.",
                                              "max_tokens": 24}, timeout=120)
        rid = None
        pieces: list[str] = []
        shapes: list[str] = []
        first_viseme_before_done = None
        while True:
            env = avatar.recv(timeout=60)
            if env.type == "speech" and (rid is None or env.data["request_id"] == rid):
                rid = env.data["request_id"]
                if env.data["done"]:
                    break
                pieces.append(env.data["delta"])
            elif env.type == "viseme":
                assert env.data["request_id"] == rid  # after its piece's speech frame
                shapes += env.data["visemes"]
                if first_viseme_before_done is None:
                    first_viseme_before_done = True
        assert "".join(pieces) == reply.data["text"]
        assert shapes == visemes(reply.data["text"]) and shapes, (reply.data["text"], shapes)
        assert first_viseme_before_done  # streamed with the text, not after it
        assert set(shapes) <= {*VISEMES, VISEME_SILENCE}
    finally:
        avatar.close()
