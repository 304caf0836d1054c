"""Binary output (random bytes, zeros, no line ends): secrets embedded in it are masked however
the stream is chunked, the output does not depend on the chunking, and bytes without a secret
pass unchanged (the binary fast paths in ansi.py and detect.decoded_spans must not change a
result)."""

from __future__ import annotations

import itertools
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from masking_corpus import B62, Gen, leaked

from bastion.masking import StreamMasker
from bastion.masking.engine import hyperscan_available

ENGINES = ["python", *(["hyperscan"] if hyperscan_available() else [])]


def _run(m: StreamMasker, chunks: list[bytes]) -> bytes:
    return b"".join(m.feed(c) for c in chunks) + m.flush()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]


def _secrets(seed: int) -> list[tuple[bytes, bytes]]:
    """(line, secret value) pairs."""
    g = Gen(seed)
    tok, key, pw1, pw2 = "ghp_" + g.s(B62, 36), g.ident88("+ASt"), g.password(), g.password()
    pairs = [
        (tok, tok),
        ("AccountKey=" + key, key),
        ('{\\"password\\": \\"' + pw1 + '\\"}', pw1),  # escaped JSON inside binary
        ("password%3D" + pw2, pw2),  # percent-encoded
    ]
    return [(a.encode(), b.encode()) for a, b in pairs]


def _binary_with_secrets(seed: int, size: int) -> tuple[bytes, list[bytes]]:
    """Random bytes (ESC, backslash, %, CR, LF every ~256 bytes each) with secrets on lines of
    their own between them."""
    rnd = random.Random(seed)
    pairs = _secrets(seed)
    parts: list[bytes] = []
    for line, _ in pairs:
        parts += [rnd.randbytes(rnd.randrange(size + 1)), b"\n", line, b"\n"]
    parts.append(rnd.randbytes(rnd.randrange(size + 1)))
    return b"".join(parts), [v for _, v in pairs]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1 << 30), size=st.integers(0, 20000),
       cuts=st.lists(st.integers(0, 1 << 20), max_size=40), pty=st.booleans())
def test_random_binary_with_secrets_any_chunking(seed: int, size: int, cuts: list[int],
                                                 pty: bool) -> None:
    data, secrets = _binary_with_secrets(seed, size)
    for engine in ENGINES:
        whole = _run(StreamMasker(pty=pty, engine=engine), [data])
        assert _run(StreamMasker(pty=pty, engine=engine), _split(data, cuts)) == whole
        for s in secrets:
            assert not leaked(s, whole), engine


def test_bulk_binary_in_32k_chunks_is_unchanged_and_masked() -> None:
    """1 MiB of random bytes in relay-sized chunks: secret-free stretches come out unchanged
    and the embedded secrets are masked, as with one feed."""
    rnd = random.Random(7)
    blob = rnd.randbytes(1 << 20)
    pairs = _secrets(7)
    data = blob[:300000] + b"\n" + b"\n".join(line for line, _ in pairs) + b"\n" + blob[300000:]
    for engine in ENGINES:
        chunks = [data[i:i + 32768] for i in range(0, len(data), 32768)]
        out = _run(StreamMasker(engine=engine), chunks)
        assert out == _run(StreamMasker(engine=engine), [data])
        assert out.startswith(blob[:300000]) and out.endswith(blob[300000:])
        for _, s in pairs:
            assert not leaked(s, out), engine


def test_newline_free_output_passes_unchanged() -> None:
    """Zeros and a base64 stream without line ends (``head -c``, ``base64 -w0``) are released
    whole, in order."""
    rnd = random.Random(3)
    b64 = bytes(rnd.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                for _ in range(200000))
    for engine in ENGINES:
        for data in (bytes(1 << 20), b64):
            chunks = [data[i:i + 32768] for i in range(0, len(data), 32768)]
            assert _run(StreamMasker(engine=engine), chunks) == data


_ESC_ATOMS = [b"\x1b", b"\x1b[", b"\x1b]", b"\x1b]0;", b"\x1b]52;c;", b"\x1bP", b"\x1b_", b"\x07",
              b"\x1b\\", b"m", b"1;31m", b"\n", b"\r", b"ghp_", b"password=", b"1" * 20,
              b";" * 20, b" " * 20, b"\\", b"%41", b"\xff"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.one_of(st.sampled_from(_ESC_ATOMS), st.binary(max_size=40)),
                      max_size=80),
       secret=st.booleans(), pty=st.booleans())
def test_one_pass_strip_equals_tokenizer_on_binary(parts: list[bytes], secret: bool,
                                                    pty: bool) -> None:
    """The one-pass escape strip (lone ESCs, string sequences without line ends) gives what the
    full tokenizer gives, OSC 52 and masked OSC payloads included (it must decline those)."""
    data = b"".join(parts)
    if secret:
        data += b"\x1b]0;ghp_" + Gen(5).s(B62, 36).encode() + b"\x07\n" + data
    for engine in ENGINES:
        outs = []
        for disable in (False, True):
            m = StreamMasker(engine=engine, pty=pty, max_hold=256)
            if disable:
                m._coloured_lines = lambda raw: None  # type: ignore[method-assign]
            outs.append((_run(m, [data]), m.counts))
        assert outs[0] == outs[1]


def test_sequence_over_a_line_end_is_tokenized_alone() -> None:
    """An OSC holding a line end (the tokenizer's case) between lines the one-pass strip
    takes: the lines around it are masked as by the tokenizer alone, however chunked."""
    tok = ("ghp_" + Gen(9).s(B62, 36)).encode()
    rnd = random.Random(4)
    data = b"".join([
        rnd.randbytes(3000).replace(b"\x1b", b"."), b"\n\x1b[31mred\x1b[0m\n",
        b"before \x1b]0;title\nwith a line end\x07 after ", tok, b"\n",
        b"\x1b[1m", tok, b"\x1b[0m\n", rnd.randbytes(3000), b"\n",
    ])
    for engine in ENGINES:
        outs = []
        for disable in (False, True):
            m = StreamMasker(engine=engine)
            if disable:
                m._coloured_lines = lambda raw: None  # type: ignore[method-assign]
            outs.append(_run(m, [data]))
        assert outs[0] == outs[1]
        assert not leaked(tok, outs[0])
        for cut in range(0, len(data), 97):
            assert _run(StreamMasker(engine=engine), [data[:cut], data[cut:]]) == outs[0]
