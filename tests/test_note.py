"""C2SP signed notes, checkpoints and cosignatures (verifier/note.py)."""

from __future__ import annotations

import base64
import re
from hashlib import sha256

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from verifier import VerificationError
from verifier.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Checkpoint,
    CosignatureSigner,
    NoteVerifier,
    Signer,
    add_signatures,
    cosignature_message,
    key_id,
    open_checkpoint,
    open_note,
    parse_note,
    sign_note,
    verify_cosignature,
)

# ----------------------------------------------------------------- the shared vector file


@pytest.fixture(scope="module")
def vec(vectors_dir):
    raw = (vectors_dir / "signed-note.txt").read_text(encoding="utf-8")
    v = {}
    v["vkey"] = re.search(r"^verifier key:\s+(PeterNeumann\+\S+)$", raw, re.M).group(1)
    v["skey"] = re.search(r"^private key:\s+(PRIVATE\+KEY\+\S+)$", raw, re.M).group(1)
    v["vkey2"] = re.search(r"^second key:\s+(\S+)$", raw, re.M).group(1)
    m = re.search(r"each ending in a newline\):\n(.*?)\nsignature lines", raw, re.S)
    v["text"] = m.group(1) + "\n"
    sigs = re.findall(r"^(\u2014 \S+ \S+)$", raw, re.M)
    v["sig_peter"], v["sig_enoch"], v["sig_c2sp"] = sigs[0] + "\n", sigs[1] + "\n", sigs[2] + "\n"
    m = re.search(r"must be rejected:\n(.*?)\n\n", raw, re.S)
    v["bad_vkeys"] = [ln.split()[0] for ln in m.group(1).splitlines()]
    m = re.search(r"C2SP example.*?verifier key:\s+(\S+)\nnote:\n(.*?\n)\n\u2014", raw, re.S)
    v["c2sp_vkey"], v["c2sp_text"] = m.group(1), m.group(2)
    assert len(v["bad_vkeys"]) == 2
    return v


def test_vector_vkey_and_skey(vec):
    s = Signer.from_skey(vec["skey"])
    assert s.name == "PeterNeumann"
    assert s.vkey == vec["vkey"]
    assert s.skey == vec["skey"]  # round trip of Go's encoding
    v = NoteVerifier.from_vkey(vec["vkey"])
    assert (v.name, v.key_id, v.type) == ("PeterNeumann", 0xC74F20A3, ALG_ED25519)
    assert v.vkey == vec["vkey"]


def test_vector_resign_byte_for_byte(vec):
    s = Signer.from_skey(vec["skey"])
    assert sign_note(vec["text"], [s]) == vec["text"] + "\n" + vec["sig_peter"]
    assert sign_note(vec["text"].encode(), [s]) == vec["text"] + "\n" + vec["sig_peter"]


def test_vector_open_both_signatures(vec):
    note = vec["text"] + "\n" + vec["sig_peter"] + vec["sig_enoch"]
    peter = NoteVerifier.from_vkey(vec["vkey"])
    enoch = NoteVerifier.from_vkey(vec["vkey2"])
    n = open_note(note, [peter, enoch])
    assert n.text == vec["text"]
    assert [s.name for s in n.verified] == ["PeterNeumann", "EnochRoot"]
    n = open_note(note, [enoch])  # the other signature is from an unknown key: ignored
    assert [s.name for s in n.verified] == ["EnochRoot"]
    assert len(n.signatures) == 2


def test_vector_malformed_vkeys(vec):
    for bad in vec["bad_vkeys"]:
        with pytest.raises(VerificationError) as e:
            NoteVerifier.from_vkey(bad)
        assert e.value.check == "vkey.malformed"


def test_vector_c2sp_example(vec):
    v = NoteVerifier.from_vkey(vec["c2sp_vkey"])
    n = open_note(vec["c2sp_text"] + "\n" + vec["sig_c2sp"], [v])
    assert n.text == "This is an example message.\n"
    assert n.verified[0].key_id == 0x530D903A


# ----------------------------------------------------------------- note rules


@pytest.fixture(scope="module")
def peter(vec):
    return Signer.from_skey(vec["skey"])


def test_key_id_formula():
    s = Signer.generate("example.com/log")
    h = sha256(b"example.com/log\n\x01" + s.public_key_bytes).digest()[:4]
    assert s.key_id == int.from_bytes(h, "big") == key_id("example.com/log", 1, s.public_key_bytes)
    c = CosignatureSigner.from_private_key("w", s.private_key)
    assert c.key_id == int.from_bytes(sha256(b"w\n\x04" + s.public_key_bytes).digest()[:4], "big")


def test_unknown_name_or_id_only_ignored(vec, peter):
    note = sign_note(vec["text"], [peter])
    # a different key with the same name: same name, different id -> unknown -> no verified sig
    other = Signer.generate("PeterNeumann")
    with pytest.raises(VerificationError) as e:
        open_note(note, [other.verifier()])
    assert e.value.check == "note.no-verified-signature"
    # but a note with a good signature and an extra unknown one with the same name verifies
    note2 = add_signatures(note, [other])
    n = open_note(note2, [peter.verifier()])
    assert len(n.verified) == 1 and len(n.signatures) == 2


def test_known_key_failing_rejects_whole_note(vec, peter):
    enoch_vkey = NoteVerifier.from_vkey(vec["vkey2"])
    # Enoch's real signature is over the text; tamper its bytes but keep name+id
    raw = base64.b64decode(vec["sig_enoch"].split()[2])
    bad = raw[:4] + bytes([raw[4] ^ 1]) + raw[5:]
    line = f"\u2014 EnochRoot {base64.b64encode(bad).decode()}\n"
    note = vec["text"] + "\n" + vec["sig_peter"] + line
    with pytest.raises(VerificationError) as e:
        open_note(note, [peter.verifier(), enoch_vkey])
    assert e.value.check == "note.bad-signature"
    # without Enoch known, the bad line is just an unknown signature
    assert len(open_note(note, [peter.verifier()]).verified) == 1


@pytest.mark.parametrize(
    "note",
    [
        "",
        "text\n",
        "text\n\n",
        "text\n\n\u2014 PeterNeumann AAAA\n",  # sig < 5 bytes
        "text\n\n\u2014 Peter Neumann AAAAAAAAAA==\n",  # space in name / bad b64
        "text\n\n\u2014 Peter+Neumann AAAAAAAAAA==\n",  # plus in name
        "text\n\n- PeterNeumann AAAAAAAAAA==\n",  # not an em dash
        "text\n\n\u2014 PeterNeumann AAAAAAAAAA==",  # no final newline
        "text\n\n\u2014 PeterNeumann AAAAAAAAAA==\n\n",  # empty trailing line
        "te\tt\n\n\u2014 PeterNeumann AAAAAAAAAA==\n",  # control char
        "text\r\n\n\u2014 PeterNeumann AAAAAAAAAA==\n",
        "text\n\n\u2014 PeterNeumann AAAAAAAAAB==\n",  # non-canonical base64
        "text\n\n\u2014  AAAAAAAAAA==\n",  # empty name
    ],
)
def test_malformed_notes(note):
    with pytest.raises(VerificationError) as e:
        parse_note(note)
    assert e.value.check == "note.syntax"


def test_invalid_utf8():
    with pytest.raises(VerificationError):
        parse_note(b"text\xff\n\n\xe2\x80\x94 a AAAAAAAAAA==\n")
    with pytest.raises(VerificationError):
        parse_note("text\ud800\n\n\u2014 a AAAAAAAAAA==\n")


def test_text_may_contain_blank_lines(peter):
    text = "a\n\nb\n\n"
    note = sign_note(text, [peter])
    n = open_note(note, [peter.verifier()])
    assert n.text == text


def test_signature_count_limits(vec, peter):
    signers = [Signer.generate(f"k{i}") for i in range(16)]
    note = sign_note(vec["text"], [peter] + signers)
    n = open_note(note, [s.verifier() for s in signers] + [peter.verifier()])
    assert len(n.verified) == 17
    sig = vec["sig_peter"]
    ok = vec["text"] + "\n" + sig * 100
    assert len(open_note(ok, [peter.verifier()]).verified) == 1  # duplicates collapse
    with pytest.raises(VerificationError) as e:
        parse_note(vec["text"] + "\n" + sig * 101)
    assert e.value.check == "note.syntax"


def test_sign_rejects_bad_text(peter):
    for t in ["", "no newline", "ctl\x01\n"]:
        with pytest.raises(VerificationError):
            sign_note(t, [peter])


def test_add_signatures_keeps_and_replaces(vec, peter):
    w = Signer.generate("witness")
    note = sign_note(vec["text"], [peter])
    both = add_signatures(note, [w])
    assert both.startswith(note)
    assert add_signatures(both, [peter]) == both  # deterministic Ed25519: replaced by itself
    n = open_note(both, [peter.verifier(), w.verifier()])
    assert [s.name for s in n.verified] == ["PeterNeumann", "witness"]


def test_skey_errors(vec):
    good = vec["skey"]
    bads = [
        good.replace("c74f20a3", "c74f20a4"),
        good.replace("PRIVATE+KEY", "PRIVATE+KEX"),
        good.replace("+AYEK", "+AoEK"),  # type byte 0x02
        good[:-4],
        "PRIVATE+KEY+x",
    ]
    for b in bads:
        with pytest.raises(VerificationError) as e:
            Signer.from_skey(b)
        assert e.value.check == "skey.malformed"


def test_vkey_errors():
    s = Signer.generate("a.example/log")
    vk = s.vkey
    for b in [vk + "A", "a.example/log+" + vk.split("+", 1)[1].upper()[:7] + "+x", "nope", "+00000000+AA==",
              vk.replace(vk.split("+")[1], "%08x" % (s.key_id ^ 1))]:
        with pytest.raises(VerificationError) as e:
            NoteVerifier.from_vkey(b)
        assert e.value.check == "vkey.malformed"


# ----------------------------------------------------------------- checkpoints


def _root(n=7):
    return sha256(bytes([n])).digest()


def test_checkpoint_roundtrip():
    cp = Checkpoint("example.com/log", 20852163, _root(), ("ext one",))
    t = cp.to_text()
    assert t == f"example.com/log\n20852163\n{base64.b64encode(_root()).decode()}\next one\n"
    assert Checkpoint.parse(t) == cp
    assert Checkpoint.parse("o\n0\n" + base64.b64encode(_root()).decode() + "\n").size == 0


def test_checkpoint_c2sp_example():
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = Checkpoint.parse(text)
    assert cp.origin == "example.com/behind-the-sofa" and cp.size == 20852163
    assert cp.to_text() == text


@pytest.mark.parametrize(
    "text",
    [
        "o\n01\nROOT\n",
        "o\n-1\nROOT\n",
        "o\n+1\nROOT\n",
        "o\n1 \nROOT\n",
        "o\n\u0661\nROOT\n",  # non-ASCII digit
        "o\n18446744073709551616\nROOT\n",
        "\n1\nROOT\n",
        "o\n1\n",
        "o\n1\nROOT",
        "o\n1\nROOT\n\n",
        "o\n1\nROOT\n\next\n",
        "o\n1\n" + base64.b64encode(b"x" * 31).decode() + "\n",
        "o\n1\n" + base64.b64encode(b"x" * 32).decode().rstrip("=") + "\n",
        "o\n1\nROOT\nex\tt\n",
    ],
)
def test_checkpoint_strict(text):
    text = text.replace("ROOT", base64.b64encode(_root()).decode())
    with pytest.raises(VerificationError) as e:
        Checkpoint.parse(text)
    assert e.value.check == "checkpoint.syntax"


def test_open_checkpoint_and_origin():
    log = Signer.generate("example.com/log")
    cp = Checkpoint("example.com/log", 3, _root())
    note = sign_note(cp.to_text(), [log])
    got = open_checkpoint(note, log.verifier())
    assert got.checkpoint == cp
    other = Signer.generate("example.com/other")
    note2 = sign_note(Checkpoint("example.com/other", 3, _root()).to_text(), [other, log])
    with pytest.raises(VerificationError) as e:
        open_checkpoint(note2, log.verifier())
    assert e.value.check == "checkpoint.origin"
    # only a witness signature, no log signature: refused even though a known key verifies
    w = CosignatureSigner.generate("w")
    only_w = cp.to_text() + "\n" + w.cosign(cp.to_text(), 5)
    with pytest.raises(VerificationError) as e:
        open_checkpoint(only_w, log.verifier(), [w.verifier()])
    assert e.value.check == "note.no-verified-signature"


# ----------------------------------------------------------------- cosignatures


def test_cosignature_format_and_verify(vec):
    seed_signer = Signer.from_skey(vec["skey"])
    c = CosignatureSigner.from_skey(vec["skey"])  # plain Ed25519 skey accepted, re-typed
    assert c.key_id == key_id("PeterNeumann", 4, seed_signer.public_key_bytes)
    assert CosignatureSigner.from_skey(c.skey).vkey == c.vkey
    v = NoteVerifier.from_vkey(c.vkey)
    assert v.type == ALG_COSIGNATURE_V1
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    line = c.cosign(body, 1679315147)
    raw = base64.b64decode(line.split()[2])
    assert len(raw) == 76 and raw[:4] == c.key_id.to_bytes(4, "big")
    assert int.from_bytes(raw[4:12], "big") == 1679315147
    msg = cosignature_message(body, 1679315147)
    assert msg == b"cosignature/v1\ntime 1679315147\n" + body.encode()
    seed_signer.public_key.verify(raw[12:], msg)  # independent check of the signed message
    assert verify_cosignature(body, line, v) == 1679315147
    n = open_note(body + "\n" + line, [v])
    assert n.verified[0].timestamp == 1679315147
    # a cosignature does not verify as a plain Ed25519 signature of the same key and vice versa
    assert not NoteVerifier.from_vkey(seed_signer.vkey).verify(body.encode(), raw[4:])
    # changing the timestamp breaks it
    bad = raw[:4] + (1679315148).to_bytes(8, "big") + raw[12:]
    badline = f"\u2014 PeterNeumann {base64.b64encode(bad).decode()}\n"
    with pytest.raises(VerificationError):
        verify_cosignature(body, badline, v)
    with pytest.raises(VerificationError) as e:
        open_note(body + "\n" + badline, [v])
    assert e.value.check == "note.bad-signature"


def test_cosigned_checkpoint_timestamps():
    log = Signer.generate("example.com/log")
    w1, w2 = CosignatureSigner.generate("w1.example"), CosignatureSigner.generate("w2.example")
    body = Checkpoint("example.com/log", 10, _root()).to_text()
    note = sign_note(body, [log]) + w1.cosign(body, 100) + w2.cosign(body, 200)
    got = open_checkpoint(note, log.verifier(), [w1.verifier(), w2.verifier()])
    assert got.cosignatures == {"w1.example": 100, "w2.example": 200}
    assert add_signatures(sign_note(body, [log]), [w1]).count("\n") == 6


def test_cosign_rejects_non_checkpoint_and_bad_time():
    w = CosignatureSigner.generate("w")
    with pytest.raises(VerificationError):
        w.cosign("not a checkpoint\n", 1)
    with pytest.raises(VerificationError):
        w.cosign(Checkpoint("o", 1, _root()).to_text(), 1 << 63)


# ----------------------------------------------------------------- property tests

_PEER = Signer.from_private_key("example.com/prop", __import__(
    "cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["x"]
).Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
_COS = CosignatureSigner.from_private_key("witness.example", _PEER.private_key)
_BODY = Checkpoint("example.com/prop", 12345, _root(3), ("ext",)).to_text()
_VALID = sign_note(_BODY, [_PEER]) + _COS.cosign(_BODY, 1700000000)
_VERIFIERS = [_PEER.verifier(), _COS.verifier()]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_verification_error(data):
    for fn in (parse_note, lambda d: open_note(d, _VERIFIERS), Checkpoint.parse,
               lambda d: open_checkpoint(d, _VERIFIERS[0], _VERIFIERS[1:])):
        try:
            fn(data)
        except VerificationError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_only_verification_error(s):
    for fn in (parse_note, lambda d: open_note(d, _VERIFIERS), Checkpoint.parse):
        try:
            fn(s)
        except VerificationError:
            pass
    for v in (s, s + "+00000000+AQ==", "PRIVATE+KEY+" + s):
        try:
            NoteVerifier.from_vkey(v)
        except VerificationError:
            pass
        try:
            Signer.from_skey(v)
        except VerificationError:
            pass


def test_valid_note_verifies():
    n = open_note(_VALID, _VERIFIERS)
    assert len(n.verified) == 2


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 8)),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutation, min_size=1, max_size=3))
def test_mutated_notes_never_verify(muts):
    b = bytearray(_VALID.encode())
    for kind, pos, val in muts:
        pos %= len(b) + (kind == "insert")
        if kind == "flip":
            b[pos] ^= val
        elif kind == "insert":
            b.insert(pos, val)
        else:
            del b[pos : pos + val]
        if not b:
            break
    assume(bytes(b) != _VALID.encode())
    for vs in (_VERIFIERS, _VERIFIERS[:1], _VERIFIERS[1:]):
        try:
            n = open_note(bytes(b), vs)
        except VerificationError:
            continue
        # the only way to still verify: the mutation touched only signature lines, turning them
        # into signatures of unknown keys (ignored, as the spec requires). The text is the
        # original, and every verified signature is an original one, byte for byte.
        assert n.text == _BODY
        orig = {(s.name, s.key_id, s.sig) for s in parse_note(_VALID).signatures}
        assert {(s.name, s.key_id, s.sig) for s in n.verified} <= orig


# --- issue 16: the mutation survivors of verifier/note.py ------------------------------------

from verifier.note import MAX_NOTE_SIZE, MAX_TIMESTAMP  # noqa: E402


def _note_of_size(n: int, *, as_bytes: bool) -> str | bytes:
    """A signed note of exactly ``n`` characters, or UTF-8 bytes (the em dash is 3 bytes)."""
    s = Signer.generate("size.example")
    size = (lambda x: len(x.encode())) if as_bytes else len
    const = size(sign_note("a\n", [s])) - 1
    note = sign_note("a" * (n - const) + "\n", [s])
    assert size(note) == n
    return note.encode() if as_bytes else note


def test_note_size_limit_is_inclusive():
    """A note of exactly MAX_NOTE_SIZE bytes (or characters) parses; one more is refused."""
    for as_bytes in (False, True):
        assert len(parse_note(_note_of_size(MAX_NOTE_SIZE, as_bytes=as_bytes)).signatures) == 1
        with pytest.raises(VerificationError, match="larger than") as e:
            parse_note(_note_of_size(MAX_NOTE_SIZE + 1, as_bytes=as_bytes))
        assert e.value.check == "note.syntax"


@pytest.mark.parametrize("t", [0, 1, MAX_TIMESTAMP])
def test_cosignature_timestamps_at_the_bounds(t):
    """0 and 2**63-1 are valid cosignature times: signed, verified and reported as such."""
    c = CosignatureSigner.generate("witness.example")
    body = b"origin\n5\n" + base64.b64encode(bytes(32)) + b"\n"
    assert cosignature_message(body, t).startswith(b"cosignature/v1\ntime " + str(t).encode() + b"\n")
    sig = c.sign(body, t)
    v = c.verifier()
    assert v.verify(body, sig) and v.timestamp_of(sig) == t


@pytest.mark.parametrize("t", [-1, MAX_TIMESTAMP + 1, 1.5, 1.0, "5", None])
def test_cosignature_message_refuses_other_times(t):
    with pytest.raises(VerificationError) as e:
        cosignature_message(b"x\n", t)
    assert e.value.check == "cosignature.timestamp"


def test_cosignature_time_beyond_int64_is_no_signature():
    """A 72-byte cosignature whose time field exceeds 2**63-1 is not a valid cosignature:
    verify answers False (no exception) and timestamp_of None."""
    v = CosignatureSigner.generate("witness.example").verifier()
    sig = (MAX_TIMESTAMP + 1).to_bytes(8, "big") + bytes(64)
    assert v.verify(b"origin\n", sig) is False
    assert v.timestamp_of(sig) is None


def test_timestamp_of_needs_a_cosigner_and_72_bytes():
    ed = Signer.generate("log.example").verifier()
    co = CosignatureSigner.generate("witness.example").verifier()
    assert ed.timestamp_of((5).to_bytes(8, "big") + bytes(64)) is None
    assert co.timestamp_of((5).to_bytes(8, "big") + bytes(56)) is None
    assert co.timestamp_of((5).to_bytes(8, "big") + bytes(64)) == 5


def test_signer_needs_an_ed25519_private_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    for bad in ("key", None, ec.generate_private_key(ec.SECP256R1())):
        with pytest.raises(VerificationError) as e:
            Signer("log.example", bad)
        assert e.value.check == "skey.malformed"


def test_skey_prefix_id_and_type():
    """PRIVATE+KEY+<name>+<8 hex>+<key>: another prefix, a key ID that is not hex, and (for a
    plain signer) a cosignature (0x04) key are refused as skey.malformed, never a crash."""
    s = Signer.generate("log.example")
    _, _, name, kid, key64 = s.skey.split("+", 4)
    assert Signer.from_skey(s.skey).vkey == s.vkey
    for bad in (f"XPRIVATE+KEY+{name}+{kid}+{key64}", f"PRIVATE+KEY+{name}+zzzzzzzz+{key64}",
                f"PRIVATE+KEY+{name}+0x{kid[:6]}+{key64}", CosignatureSigner.generate("w.example").skey):
        with pytest.raises(VerificationError) as e:
            Signer.from_skey(bad)
        assert e.value.check == "skey.malformed"


def test_vkey_id_and_empty_key():
    v = Signer.generate("log.example").verifier()
    name, kid, key64 = v.vkey.split("+", 2)
    for bad in (f"{name}+zzzzzzzz+{key64}", f"{name}+0x{kid[:6]}+{key64}", f"{name}+{kid}+"):
        with pytest.raises(VerificationError) as e:
            NoteVerifier.from_vkey(bad)
        assert e.value.check == "vkey.malformed"


def test_cosign_needs_text_ending_in_newline():
    c = CosignatureSigner.generate("witness.example")
    body = "origin\n5\n" + base64.b64encode(bytes(32)).decode() + "\n"
    assert c.cosign(body, 1).startswith("\u2014 witness.example ")
    with pytest.raises(VerificationError) as e:
        c.cosign(body[:-1], 1)
    assert e.value.check == "note.text"


def test_signature_of_five_bytes_is_the_shortest_line():
    """A signature line holds the 4-byte key ID and at least one byte: 5 bytes parse (an
    unknown key's line is kept, not verified), 4 do not."""
    line = "\u2014 other.example " + base64.b64encode(b"\x00\x00\x00\x07\x01").decode() + "\n"
    note = parse_note("text\n\n" + line)
    assert (note.signatures[0].key_id, note.signatures[0].sig) == (7, b"\x01")
    with pytest.raises(VerificationError) as e:
        parse_note("text\n\n\u2014 other.example " + base64.b64encode(b"\x00\x00\x00\x07").decode() + "\n")
    assert e.value.check == "note.syntax"


def _root_b64() -> str:
    return base64.b64encode(bytes(range(32))).decode()


def test_note_must_end_in_newline_after_its_signatures():
    """C2SP signed-note: every signature line ends in newline. A note whose last newline is
    replaced by another character is refused, never read as the line without that character."""
    s = Signer.generate("log.example")
    note = sign_note("text\n", [s])
    assert open_note(note, [s.verifier()]).verified
    for bad in (note[:-1] + "x", note[:-1], "text\n\n"):
        with pytest.raises(VerificationError) as e:
            parse_note(bad)
        assert e.value.check == "note.syntax"


def test_note_api_needs_its_key_types():
    s = Signer.generate("log.example")
    note = sign_note("text\n", [s])
    with pytest.raises(TypeError):
        open_note(note, [s])  # a Signer is not a NoteVerifier
    with pytest.raises(TypeError):
        sign_note("text\n", [s.verifier()])
    with pytest.raises(VerificationError) as e:
        sign_note("text\n", [])
    assert e.value.check == "note.text"


def test_add_signatures_limit_is_inclusive():
    """add_signatures may bring a note up to MAX_SIGNATURES signatures, not beyond."""
    from verifier.note import MAX_SIGNATURES

    signers = [Signer.generate(f"s{i}.example") for i in range(MAX_SIGNATURES + 1)]
    note = sign_note("text\n", signers[: MAX_SIGNATURES - 1])
    full = add_signatures(note, [signers[MAX_SIGNATURES - 1]])
    assert len(parse_note(full).signatures) == MAX_SIGNATURES
    with pytest.raises(VerificationError) as e:
        add_signatures(note, signers[MAX_SIGNATURES - 1:])
    assert e.value.check == "note.text"


def test_checkpoint_fields_by_construction():
    """An origin or extension line may hold spaces (not control characters); the root must be
    32 bytes of a bytes-like type, never text or a list."""
    cp = Checkpoint("example.com/log two", 1, bytes(32), ("ext line",))
    assert Checkpoint.parse(cp.to_text()) == cp
    for origin in ("a\tb", "a\x1fb", ""):
        with pytest.raises(VerificationError):
            Checkpoint(origin, 1, bytes(32))
    for root in ("a" * 32, list(range(32)), bytes(31)):
        with pytest.raises(VerificationError) as e:
            Checkpoint("o", 1, root)
        assert e.value.check == "checkpoint.syntax"


def test_checkpoint_text_must_end_in_newline():
    body = "origin\n1\n" + _root_b64() + "\next\n"
    assert Checkpoint.parse(body).extensions == ("ext",)
    for bad in (body[:-1], body[:-1] + "t"):
        with pytest.raises(VerificationError) as e:
            Checkpoint.parse(bad)
        assert e.value.check == "checkpoint.syntax"


def test_open_checkpoint_reports_only_timestamped_cosignatures():
    """A plain Ed25519 key listed among the cosigners may sign the note (it is verified) but
    carries no time: it is not reported as a cosignature."""
    log = Signer.generate("origin.example")
    other = Signer.generate("other.example")
    wit = CosignatureSigner.generate("witness.example")
    body = Checkpoint("origin.example", 3, bytes(32)).to_text()
    note = sign_note(body, [log, other]) + wit.cosign(body, 77)
    cn = open_checkpoint(note, log.verifier(), [other.verifier(), wit.verifier()])
    assert cn.cosignatures == {"witness.example": 77}
    assert cn.note.verified_by(other.verifier()) is not None


def test_verify_cosignature_needs_a_cosignature_key():
    """verify_cosignature refuses a plain Ed25519 key (cosignature.key) even when that key's
    signature line over the body verifies as an Ed25519 signature."""
    s = Signer.generate("witness.example")
    body = Checkpoint("origin.example", 3, bytes(32)).to_text()
    line = sign_note(body, [s]).split("\n\n", 1)[1]
    with pytest.raises(VerificationError) as e:
        verify_cosignature(body, line, s.verifier())
    assert e.value.check == "cosignature.key"


def test_verify_cosignature_names_a_line_by_another_key():
    """A cosignature line by another cosigner (another name, or the same name with another
    key) is cosignature.key, not a bad signature."""
    a = CosignatureSigner.generate("witness.example")
    body = Checkpoint("origin.example", 3, bytes(32)).to_text()
    assert verify_cosignature(body, a.cosign(body, 5), a.verifier()) == 5
    for other in (CosignatureSigner.generate("other.example"), CosignatureSigner.generate("witness.example")):
        with pytest.raises(VerificationError) as e:
            verify_cosignature(body, other.cosign(body, 5), a.verifier())
        assert e.value.check == "cosignature.key"
