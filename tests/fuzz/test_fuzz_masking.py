"""Fuzz the stream masker: arbitrary bytes never crash it, chunking never changes it, held state
stays bounded, and a known secret never leaks whatever the chunking or interleaved escapes."""

from __future__ import annotations

import itertools

from fuzz_support import cpu_bounded, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from bastion.masking import StreamMasker
from bastion.masking.ansi import MAX_SEQUENCE

MAX_HOLD = 1024  # small, so the bound is exercised with small examples
# Documented cap on held raw bytes: 4 x max_hold + 4 KiB (docs/masking.md, "Hold-back").
HELD_CAP = 4 * MAX_HOLD + MAX_SEQUENCE

ESCAPES = [
    b"\x1b[31m", b"\x1b[0m", b"\x1b[1;32;40m", b"\x1b[2K", b"\x1b[?25l", b"\x1b]0;title\x07",
    b"\x1b]8;;http://x\x1b\\", b"\x1b]52;c;Zm9v\x07", b"\x1bP+q\x1b\\", b"\x1b(B", b"\x1b",
    b"\x1b[", b"\x1b]", b"\x1b]0;unterminated", b"\x1bP", b"\x1b[999999999999m", b"\r", b"\n",
    b"\r\n", b"\x00", b"\xff", b"\xc3", b"\xe2\x82", b"\x07", b"\t",
]
WORDS = [b"password=", b"token: ", b"Authorization: Bearer ", b"AKIA", b"ghp_", b"-----BEGIN ",
         b"PRIVATE KEY-----", b"eyJ", b"api_key", b"secret", b"=", b" ", b"x" * 40]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def _run(masker: StreamMasker, chunks: list[bytes]) -> bytes:
    out = b"".join(masker.feed(c) for c in chunks)
    return out + masker.flush()


@st.composite
def hostile_output(draw: st.DrawFn) -> bytes:
    """Random bytes mixed with broken/unterminated escapes, secret-looking keywords and runs."""
    parts = draw(st.lists(st.sampled_from(ESCAPES) | st.sampled_from(WORDS)
                          | st.binary(max_size=40), max_size=40))
    data = b"".join(parts)
    if draw(st.integers(0, 9)) == 0:  # now and then a huge line or escape flood
        filler = draw(st.sampled_from([b"a", b"ab ", b"\x1b[1m", b"\x1b]0;", b"A" * 7 + b"="]))
        data += filler * draw(st.integers(100, 3000))
    return data


@fuzz_settings(150)
@given(data=hostile_output(), cuts=st.lists(st.integers(0, 1 << 20), max_size=30),
       pty=st.booleans())
def test_fuzz_masker_is_total_chunk_independent_and_bounded(
    data: bytes, cuts: list[int], pty: bool
) -> None:
    """Any bytes, split anywhere: no exception, the same output as one feed, and the held raw
    bytes never exceed 4 x max_hold + 4 KiB after a feed."""
    whole = _run(StreamMasker(pty=pty, max_hold=MAX_HOLD), [data])
    masker = StreamMasker(pty=pty, max_hold=MAX_HOLD)
    out = b""
    for chunk in _split(data, cuts):
        out += cpu_bounded(2.0, lambda c=chunk: masker.feed(c), "feed")  # type: ignore[misc]
        assert len(masker._raw) <= HELD_CAP
    out += masker.flush()
    assert out == whole


@fuzz_settings(100)
@given(data=hostile_output(), cuts=st.lists(st.integers(0, 1 << 20), max_size=20),
       idle_at=st.sets(st.integers(0, 30), max_size=10))
def test_fuzz_masker_idle_release_never_raises(
    data: bytes, cuts: list[int], idle_at: set[int]
) -> None:
    """Idle releases between any chunks never raise and flush leaves nothing held."""
    masker = StreamMasker(max_hold=MAX_HOLD)
    for i, chunk in enumerate(_split(data, cuts)):
        masker.feed(chunk)
        if i in idle_at:
            masker.release_idle()
        assert len(masker._raw) <= HELD_CAP
    masker.flush()
    assert not masker.pending and masker._raw == b""


def test_one_mib_line_and_unterminated_osc_stay_bounded() -> None:
    """A 1 MiB line without newline and a 1 MiB unterminated OSC keep the hold under the cap."""
    for data in (b"x" * (1 << 20), b"\x1b]0;" + b"y" * (1 << 20), b"\x1b[" * (1 << 19)):
        masker = StreamMasker(max_hold=MAX_HOLD)
        out = b""
        for i in range(0, len(data), 4096):
            out += masker.feed(data[i:i + 4096])
            assert len(masker._raw) <= HELD_CAP
        out += masker.flush()
        assert len(out) >= len(data) // 2  # released, not swallowed


SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _runs(secret: bytes, n: int = 8) -> set[bytes]:
    return {secret[i:i + n] for i in range(len(secret) - n + 1)}


@fuzz_settings(150)
@given(
    secret=st.text(SECRET_ALPHABET, min_size=12, max_size=48).map(str.encode),
    before=st.binary(max_size=30).filter(lambda b: b"\x1b" not in b),
    after=st.binary(max_size=30).filter(lambda b: b"\x1b" not in b),
    colour_at=st.sets(st.integers(0, 48), max_size=6),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=20),
    idle_at=st.sets(st.integers(0, 20), max_size=5),
    pty=st.booleans(),
)
def test_fuzz_known_secret_never_leaks_as_an_8_char_run(
    secret: bytes, before: bytes, after: bytes, colour_at: set[int], cuts: list[int],
    idle_at: set[int], pty: bool,
) -> None:
    """A known value, split by colour codes, fed in any chunks with idle releases anywhere,
    never shows 8 of its characters in a row in the visible output."""
    masker = StreamMasker(pty=pty, known_values=[secret], max_hold=MAX_HOLD)
    shown = b"".join(
        secret[i:i + 1] + (b"\x1b[3%dm" % (i % 8) if i in colour_at else b"")
        for i in range(len(secret))
    )
    data = before + shown + after + b"\n"
    out = b""
    for i, chunk in enumerate(_split(data, cuts)):
        out += masker.feed(chunk)
        if i in idle_at:
            out += masker.release_idle()
    out += masker.flush()
    visible = out
    for seq in (b"\x1b[3%dm" % k for k in range(8)):
        visible = visible.replace(seq, b"")
    leaked = [r for r in _runs(secret) if r in visible]
    assert not leaked, (secret, data, out)
