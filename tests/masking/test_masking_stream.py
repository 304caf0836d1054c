"""Streaming behaviour: chunking independence, hold-back, idle release, terminal awareness."""

from __future__ import annotations

import itertools
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from masking_corpus import B62, B64, Gen, build_corpus, leaked, terminal_traffic

from bastion.errors import BastionError
from bastion.masking import StreamMasker
from bastion.masking.engine import hyperscan_available

CORPUS = build_corpus(99)
ENGINES = ["python", *(["hyperscan"] if hyperscan_available() else [])]


def _github_token(seed: int = 1) -> bytes:
    return ("ghp_" + Gen(seed).s(B62, 36)).encode()


def _run(m: StreamMasker, chunks: list[bytes]) -> bytes:
    return b"".join(m.feed(c) for c in chunks) + m.flush()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.integers(0, len(CORPUS) - 1), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=40),
    pty=st.booleans(),
)
def test_any_chunking_gives_identical_output(picks: list[int], cuts: list[int],
                                             pty: bool) -> None:
    """Feeding any split of a corpus stream (no idle releases) yields the same bytes, both
    engines."""
    data = b"".join(CORPUS[i].text for i in picks)
    for engine in ENGINES:
        whole = _run(StreamMasker(pty=pty, engine=engine), [data])
        assert _run(StreamMasker(pty=pty, engine=engine), _split(data, cuts)) == whole


_ATOMS = [b"\x1b", b"[", b"]", b"0;", b"52;", b"8;;", b"\x07", b"\x1b\\", b"m", b"\n", b"\r",
          b"ghp_", b"==", b"AccountKey=", b"password=", b"-----BEGIN RSA PRIVATE KEY-----",
          b"-----END ", b"data:", b"  ", b"\xff\xfe", b"\xe2\x82\xac", b"x" * 30, b"+ASt",
          b"AbCdEf0123456789+/", b"eyJ", b".", b"Q~", b"://u:", b"@h", b"\t", b"\"value\": \"",
          b"\\", b"password: \"", b"\"private_key\": \""]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.one_of(st.sampled_from(_ATOMS), st.binary(max_size=12)), max_size=60),
    cuts=st.lists(st.integers(0, 1 << 16), max_size=30),
    pty=st.booleans(),
)
def test_any_chunking_of_hostile_bytes_gives_identical_output(parts: list[bytes],
                                                              cuts: list[int], pty: bool) -> None:
    """Escape fragments, invalid UTF-8, keyword pieces and long lines (small max_hold): any
    split gives the same output as one feed."""
    data = b"".join(parts)
    for engine in ENGINES:
        whole = _run(StreamMasker(pty=pty, engine=engine, max_hold=256), [data])
        split = _run(StreamMasker(pty=pty, engine=engine, max_hold=256), _split(data, cuts))
        assert split == whole


def test_one_byte_chunks_match_whole_feed(engine: str) -> None:
    """Byte-at-a-time feeding of the whole corpus equals feeding it in one piece."""
    data = b"".join(r.text for r in CORPUS[::3])
    whole = _run(StreamMasker(engine=engine), [data])
    assert _run(StreamMasker(engine=engine), [data[i:i + 1] for i in range(len(data))]) == whole


def test_complete_lines_are_released_at_once(engine: str) -> None:
    """A chunk ending in a newline is released in full, with nothing pending."""
    m = StreamMasker(engine=engine)
    assert m.feed(b"total 12\ndrwxr-xr-x 2 u u 4096 .\n") == b"total 12\ndrwxr-xr-x 2 u u 4096 .\n"
    assert not m.pending


def test_prompt_without_secret_prefix_is_not_held(engine: str) -> None:
    """A shell prompt (partial line ending in a space) goes out immediately."""
    m = StreamMasker(engine=engine)
    assert m.feed(b"azureuser@vm:~$ ") == b"azureuser@vm:~$ "
    assert not m.pending


def test_partial_line_holds_only_the_possible_secret_start(engine: str) -> None:
    """Of a partial line, text before a token that could still grow into a secret is released."""
    m = StreamMasker(engine=engine)
    assert m.feed(b"Downloading layer 3 of 7, ok ab12") == b"Downloading layer 3 of 7, ok "
    assert m.pending
    assert m.feed(b"cd\n") == b"ab12cd\n"


def test_split_secret_is_masked(engine: str) -> None:
    """A token split across chunks is masked once the line completes."""
    tok = _github_token()
    m = StreamMasker(engine=engine)
    out = m.feed(b"token " + tok[:10]) + m.feed(tok[10:] + b" ok\n")
    assert out == b"token [MASKED:github-token] ok\n"


def test_idle_release_masks_held_secret_prefix(engine: str) -> None:
    """A held fragment starting like a known secret format is masked, not leaked, on timeout."""
    tok = _github_token()
    m = StreamMasker(engine=engine)
    out = m.feed(b"export X=" + tok[:14])
    assert m.pending
    assert 0 < m.hold_timeout <= 0.05
    out += m.release_idle()
    assert not m.pending
    assert not leaked(tok[:14], out, run=8)
    assert b"[MASKED:" in out


def test_idle_release_lets_ordinary_text_through(engine: str) -> None:
    """An idle release of a harmless fragment (keystroke echo) returns it unchanged."""
    m = StreamMasker(engine=engine)
    assert m.feed(b"$ ls") == b"$ "
    assert m.release_idle() == b"ls"
    assert m.feed(b" -la\r\n") == b" -la\r\n"


def test_idle_release_masks_known_value_prefix(engine: str) -> None:
    """A held prefix of a configured known value is masked on idle release."""
    value = ("kv-" + Gen(3).s(B62, 20)).encode()
    m = StreamMasker(engine=engine, known_values=[value])
    out = m.feed(b"db password is " + value[:12]) + m.release_idle()
    assert value[:12] not in out
    assert b"[MASKED:known-value]" in out


def test_known_values_and_encodings_are_masked(engine: str) -> None:
    """An exact known value is masked, and so are its base64 and URL-encoded forms."""
    import base64
    from urllib.parse import quote

    value = ("p@ss/" + Gen(4).s(B62, 16)).encode()
    m = StreamMasker(engine=engine, known_values=[value])
    text = (b"a " + value + b"\nb " + base64.b64encode(value) + b"\nc "
            + quote(value, safe="").encode() + b"\n")
    out = m.feed(text) + m.flush()
    assert out == b"a [MASKED:known-value]\nb [MASKED:known-value]\nc [MASKED:known-value]\n"


def test_pem_block_masked_across_lines_keeping_markers(engine: str) -> None:
    """Every body line of a private key block is masked; BEGIN/END lines stay readable."""
    g = Gen(5)
    body = [g.s(B64, 64) for _ in range(4)]
    pem = "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *body,
                     "-----END OPENSSH PRIVATE KEY-----", "$ "]).encode()
    out = _run(StreamMasker(pty=True, engine=engine), [pem[i:i + 5] for i in range(0, len(pem), 5)])
    lines = out.split(b"\n")
    assert lines[0] == b"-----BEGIN OPENSSH PRIVATE KEY-----"
    assert lines[1:5] == [b"*" * 64] * 4
    assert lines[5] == b"-----END OPENSSH PRIVATE KEY-----"


def test_pty_masking_keeps_length_and_escapes(engine: str) -> None:
    """Same-length masking keeps byte length; colour codes inside a secret are preserved."""
    tok = _github_token(7)
    data = b"x \x1b[01;31m\x1b[K" + tok[:9] + b"\x1b[m\x1b[K" + tok[9:] + b" y\r\n"
    out = _run(StreamMasker(pty=True, engine=engine), [data])
    assert len(out) == len(data)
    assert out == data.replace(tok[:9], b"*" * 9).replace(tok[9:], b"*" * (len(tok) - 9))


def test_label_mode_names_the_rule(engine: str) -> None:
    """Non-PTY masking replaces the secret with a labelled marker and counts it."""
    key = Gen(8).key88().encode()
    m = StreamMasker(engine=engine)
    out = m.feed(b"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + key
                 + b";EndpointSuffix=core.windows.net\n")
    assert out == (b"DefaultEndpointsProtocol=https;AccountName=acct;"
                   b"AccountKey=[MASKED:azure-storage-key];EndpointSuffix=core.windows.net\n")
    assert m.counts == {"azure-storage-key": 1}


def test_counts_never_contain_the_secret(engine: str) -> None:
    """counts maps rule ids to integers only."""
    tok = _github_token(9)
    m = StreamMasker(engine=engine)
    m.feed(b"a " + tok + b"\nb " + tok + b"\n")
    assert m.counts == {"github-token": 2}
    assert all(tok not in k.encode() for k in m.counts)


def test_window_title_and_hyperlink_payloads_are_masked(engine: str) -> None:
    """OSC 0 titles and OSC 8 link targets are scanned; the sequences stay well-formed."""
    tok = _github_token(10)
    data = (b"\x1b]0;git push https://u:" + tok + b"@github.com/o/r\x07"
            b"\x1b]8;;https://x.blob.core.windows.net/c?sv=2022-11-02&sig=abcdEFGH1234ijkl%2B"
            b"\x1b\\link\x1b]8;;\x1b\\\n")
    out = _run(StreamMasker(engine=engine), [data[i:i + 3] for i in range(0, len(data), 3)])
    assert tok not in out and b"abcdEFGH1234" not in out
    assert out.startswith(b"\x1b]0;git push https://u:[MASKED:") and b"\x07\x1b]8;;https://" in out
    assert out.endswith(b"\x1b\\link\x1b]8;;\x1b\\\n")


def test_clipboard_write_sequences_are_stripped(engine: str) -> None:
    """OSC 52 (clipboard write) disappears; surrounding text is untouched."""
    data = b"before\x1b]52;c;c2VjcmV0IHZhbHVl\x07after\n"
    assert _run(StreamMasker(engine=engine), [data[:9], data[9:]]) == b"beforeafter\n"


def test_long_line_is_cut_and_hold_is_bounded(engine: str) -> None:
    """A line with no newline never holds more than max_hold bytes, and a secret in it is
    masked."""
    tok = _github_token(11)
    m = StreamMasker(engine=engine, max_hold=4096)
    rnd = random.Random(1)
    filler = "".join(rnd.choice(string.ascii_lowercase + " ") for _ in range(50_000)).encode()
    out = bytearray()
    data = b"password=" + tok + b" " + filler + b" " + tok
    for i in range(0, len(data), 1000):
        out += m.feed(data[i:i + 1000])
        assert len(data[: i + 1000]) - len(out) <= 4096 + 200
    out += m.flush()
    assert tok not in out and out.count(b"[MASKED:") >= 2


def test_masker_is_reusable_after_flush(engine: str) -> None:
    """flush() releases everything and resets line and block state."""
    m = StreamMasker(engine=engine)
    assert m.feed(b"-----BEGIN RSA PRIVATE KEY-----\nabc") == b"-----BEGIN RSA PRIVATE KEY-----\n"
    assert m.flush() == b"[MASKED:pem-private-key]"
    assert m.feed(b"plain line\n") == b"plain line\n"


def test_engine_can_be_forced_by_argument_and_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """engine= and BASTION_MASK_ENGINE select the engine; an unknown name is a clear error."""
    assert StreamMasker(engine="python").engine == "python"
    monkeypatch.setenv("BASTION_MASK_ENGINE", "python")
    assert StreamMasker().engine == "python"
    with pytest.raises(BastionError, match="unknown masking engine"):
        StreamMasker(engine="re2")


def test_idle_release_masks_a_value_still_being_typed(engine: str) -> None:
    """A short value after a secret-named key is masked on idle release, not leaked."""
    m = StreamMasker(engine=engine)
    out = m.feed(b"$ export API_KEY=abc123") + m.release_idle()
    assert b"abc123" not in out and out.startswith(b"$ export API_KEY=[MASKED:")
    out = m.feed(b"def 1\n")
    assert out == b"[MASKED:held-fragment] 1\n"


def test_no_late_detection_when_fed_byte_by_byte(engine: str) -> None:
    """Byte-at-a-time feeding never releases a byte that a later match needs to mask."""
    for rec in CORPUS:
        m = StreamMasker(engine=engine)
        for i in range(len(rec.text)):
            m.feed(rec.text[i:i + 1])
        m.flush()
        assert m.late_detections == 0, rec.rule


def test_idle_releases_between_chunks_rarely_leak(engine: str) -> None:
    """With release_idle() after most chunks (1-40 bytes), at most 0.5% of positive records
    leak an 8-character run of a secret (the fail-closed masks catch the rest)."""
    rnd = random.Random(2)
    positives = [r for r in build_corpus(5) if r.kind == "pos"]
    leaks = 0
    for rec in positives:
        m = StreamMasker(engine=engine)
        out, i = bytearray(), 0
        while i < len(rec.text):
            n = rnd.randint(1, 40)
            out += m.feed(rec.text[i:i + n])
            i += n
            if rnd.random() < 0.7:
                out += m.release_idle()
        out += m.flush()
        leaks += any(leaked(s, bytes(out)) for s in rec.secrets)
    assert leaks <= 0.005 * len(positives)


class _CountingPrefilter:
    """Wraps a prefilter and counts the bytes it is asked to scan."""

    def __init__(self, inner: object) -> None:
        self.inner, self.scanned, self.name = inner, 0, "counting"

    def first_hits(self, text: bytes) -> dict[int, int]:
        self.scanned += len(text)
        return self.inner.first_hits(text)  # type: ignore[attr-defined,no-any-return]

    def all_hits(self, text: bytes) -> list[tuple[int, int]]:
        self.scanned += len(text)
        return self.inner.all_hits(text)  # type: ignore[attr-defined,no-any-return]


def test_byte_wise_feed_of_long_line_scans_linearly(engine: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Feeding a 16 KiB keyword-dense line one byte at a time scans O(n) bytes, not O(n^2)."""
    m = StreamMasker(engine=engine)
    counter = _CountingPrefilter(m._det.prefilter)
    monkeypatch.setattr(m._det, "prefilter", counter)
    data = b"== " * 5000 + b"\n"
    for i in range(len(data)):
        m.feed(data[i:i + 1])
    m.flush()
    assert counter.scanned < 50 * len(data)


def test_colour_fast_path_matches_general_path(engine: str) -> None:
    """Coloured output masked via the one-pass colour strip equals the full tokenizer path."""
    from masking_corpus import terminal_traffic

    data = terminal_traffic(4, 200_000, secret_every=7, color=True)
    outs = []
    for disable in (False, True):
        m = StreamMasker(engine=engine)
        if disable:
            m._coloured_lines = lambda raw: None  # type: ignore[method-assign]
        out = b"".join(m.feed(data[i:i + 4096]) for i in range(0, len(data), 4096)) + m.flush()
        outs.append((out, m.counts))
    assert outs[0] == outs[1]
    assert outs[0][1]  # the traffic did contain secrets


def test_flush_after_early_release_resets_hold_state(engine: str) -> None:
    """A masker flushed mid-line behaves like a new one for the next stream."""
    data = b"plain words then more\n"
    m = StreamMasker(engine=engine)
    m.feed(b"x password= y")
    m.flush()
    fresh = StreamMasker(engine=engine)
    assert m.feed(data[:10]) == fresh.feed(data[:10])


def _block_end_reference(ctx_len: int, limit: int, vis: bytes, pos: int, end: int) -> int:
    """The straightforward line-by-line definition of StreamMasker._block_end."""
    p = pos
    for i, line in enumerate(vis[pos:end].splitlines(keepends=True)):
        if (ctx_len if i == 0 else 0) + len(line.rstrip(b"\r\n")) > limit:
            return p
        p += len(line)
    return end


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.tuples(st.integers(0, 700), st.sampled_from([b"\n", b"\r", b"\r\n"])),
                   min_size=1, max_size=12),
    ctx_len=st.integers(0, 300),
    lead=st.integers(0, 5),
    tail=st.binary(max_size=40),
)
def test_block_end_matches_line_by_line(lines: list[tuple[int, bytes]], ctx_len: int,
                                        lead: int, tail: bytes) -> None:
    """The sampled long-line check in _block_end agrees with measuring every line."""
    m = StreamMasker(engine="python", max_hold=256)
    m._ctx = b"c" * ctx_len
    body = b"".join(b"x" * n + nl for n, nl in lines)
    vis = b"\n" * lead + body + tail.replace(b"\n", b"").replace(b"\r", b"")
    pos, end = lead, lead + len(body)
    assert m._block_end(vis, pos, end) == _block_end_reference(ctx_len, 256, vis, pos, end)


@pytest.mark.parametrize("max_hold", [256, 4096])
def test_coloured_chunks_longer_than_max_hold_match_small_chunks(engine: str,
                                                                 max_hold: int) -> None:
    """Coloured output fed in chunks of several times max_hold (taken a few lines at a time
    by the colour fast path) gives the same bytes as small chunks, secrets masked."""
    data = terminal_traffic(3, 96 * 1024, secret_every=15, color=True)
    small = _run(StreamMasker(engine=engine, max_hold=max_hold),
                 [data[i:i + 97] for i in range(0, len(data), 97)])
    big = _run(StreamMasker(engine=engine, max_hold=max_hold),
               [data[i:i + 32768] for i in range(0, len(data), 32768)])
    assert big == small
    assert big != data  # secrets were masked
