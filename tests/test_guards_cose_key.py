"""COSE_Key (RFC 9052 7, RFC 9053 7.1/7.2, RFC 8230 4): coordinates and RSA members are byte
strings of the defined length. Nothing else is read as one, even when it would denote the same
number (issue 16, verifier/keys.py)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from verifier import VerificationError
from verifier.keys import cose_key_from_public, public_key_from_cose_key, thumbprint


@pytest.fixture(scope="module", params=[ec.SECP256R1, ec.SECP384R1, ec.SECP521R1], ids=["P-256", "P-384", "P-521"])
def ck(request):
    pub = ec.generate_private_key(request.param()).public_key()
    return pub, cose_key_from_public(pub)


def test_ec2_round_trip(ck):
    pub, d = ck
    assert public_key_from_cose_key(d).public_numbers() == pub.public_numbers()
    assert thumbprint(d) == thumbprint(pub)


@pytest.mark.parametrize("label", [-2, -3], ids=["x", "y"])
@pytest.mark.parametrize("form", ["array", "text", "int", "missing", "leading-zero-added", "short"])
def test_ec2_coordinate_must_be_a_bstr_of_the_curve_size(ck, label, form):
    """RFC 9053 7.1.1: x and y are bstr of the field size, leading zero octets kept. An array of
    the same octets, an int or text of the same value, a missing member, or a length other than
    the field size is no EC2 key (the point would otherwise be accepted in many encodings)."""
    _, d = ck
    v = d[label]
    bad = {"array": list(v), "text": v.hex()[: len(v)], "int": int.from_bytes(v, "big"), "missing": None,
           "leading-zero-added": b"\x00" + v, "short": v[1:]}[form]
    key = dict(d)
    if bad is None:
        del key[label]
    else:
        key[label] = bad
    with pytest.raises(VerificationError) as e:
        public_key_from_cose_key(key)
    assert e.value.check == "key.cose"


@pytest.mark.parametrize("crv", [0, 4, 6, "P-256", None])
def test_ec2_curve_must_be_registered_ec2_curve(ck, crv):
    _, d = ck
    with pytest.raises(VerificationError) as e:
        public_key_from_cose_key({**d, -1: crv})
    assert e.value.check == "key.cose"


def test_point_not_on_the_curve_refused(ck):
    _, d = ck
    y = bytearray(d[-3])
    y[-1] ^= 1
    with pytest.raises(VerificationError) as e:
        public_key_from_cose_key({**d, -3: bytes(y)})
    assert e.value.check == "key.cose"


@pytest.mark.parametrize("kty", [0, 4, "EC2", None, True])
def test_unknown_kty_refused(ck, kty):
    _, d = ck
    with pytest.raises(VerificationError) as e:
        public_key_from_cose_key({**d, 1: kty})
    assert e.value.check == "key.cose"


@pytest.mark.parametrize("member", [-1, -2], ids=["n", "e"])
def test_rsa_members_are_bstr(member):
    from cryptography.hazmat.primitives.asymmetric import rsa

    d = cose_key_from_public(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    assert public_key_from_cose_key(d).key_size == 2048
    for bad in (list(d[member]), int.from_bytes(d[member], "big"), None):
        key = {**d, member: bad} if bad is not None else {k: v for k, v in d.items() if k != member}
        with pytest.raises(VerificationError) as e:
            public_key_from_cose_key(key)
        assert e.value.check == "key.cose"


def test_keyset_is_an_array_of_maps(ck):
    """RFC 9052 7: COSE_KeySet = [+ COSE_Key]; every element is a map."""
    from verifier import cbor
    from verifier.keys import decode_keyset, encode_keyset

    _, d = ck
    assert decode_keyset(encode_keyset([d, d])) == [d, d]
    for bad in ([d, 5], [d, [d]], ["key"], d, 5):
        with pytest.raises(VerificationError) as e:
            decode_keyset(cbor.dumps(bad))
        assert e.value.check == "key.keyset"


def test_pem_file_without_a_complete_block_is_no_key_file(tmp_path):
    """A file that starts like PEM but holds no complete block (cut before its END line) names
    no key: refused as key.file, not read as an empty key set."""
    from cryptography.hazmat.primitives import serialization

    from verifier.keys import load_public_keys, parse_public_keys

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert len(parse_public_keys(pem)) == 1
    for bad in (pem[: pem.index(b"-----END")], b"-----BEGIN PUBLIC KEY-----\n"):
        with pytest.raises(VerificationError) as e:
            parse_public_keys(bad)
        assert e.value.check == "key.file"
        (tmp_path / "k.pem").write_bytes(bad)
        with pytest.raises(VerificationError) as e:
            load_public_keys(tmp_path / "k.pem")
        assert e.value.check == "key.file"


@pytest.mark.parametrize("data", [b"\x80", b"\x81\x05", b"\x82\xa0\x05", b"\x05", b"\x63abc"], ids=["[]", "[5]", "[{}, 5]", "5", "text"])
def test_empty_keyset_or_array_of_non_maps_is_no_key_file(data):
    """An empty COSE_KeySet (it holds at least one key, RFC 9052 7), an array with an element
    that is not a map, or a CBOR scalar is no key file of any kind: key.file."""
    from verifier.keys import parse_public_keys

    with pytest.raises(VerificationError) as e:
        parse_public_keys(data)
    assert e.value.check == "key.file"


def test_key_file_kid_label_or_thumbprint(ck):
    """A COSE_Key's kid (2) names it in a key file when it is a non-empty byte (or text) string;
    otherwise (absent, empty) the key is named by its RFC 9679 thumbprint."""
    from verifier import cbor
    from verifier.keys import parse_public_keys

    pub, d = ck
    tp = thumbprint(pub)
    assert list(parse_public_keys(cbor.dumps(d))) == [tp]
    assert list(parse_public_keys(cbor.dumps({**d, 2: b""}))) == [tp]
    assert list(parse_public_keys(cbor.dumps({**d, 2: ""}))) == [tp]
    assert list(parse_public_keys(cbor.dumps({**d, 2: b"log-1"}))) == [b"log-1"]
    assert list(parse_public_keys(cbor.dumps([{**d, 2: "log-1"}]))) == [b"log-1"]


def test_cose_key_kid_that_is_not_a_byte_string_is_not_the_kid():
    """A COSE_Key's kid (2) names the key only when it is a non-empty bstr (or tstr); an int
    kid is ignored and the key is indexed by its RFC 9679 thumbprint."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from verifier import cbor
    from verifier import keys as vk

    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    base = vk.cose_key_from_public(pub)
    for kid in (5, b"", [b"k"]):
        assert list(vk.parse_public_keys(cbor.dumps({**base, 2: kid}))) == [vk.thumbprint(pub)]
    assert list(vk.parse_public_keys(cbor.dumps({**base, 2: b"k1"}))) == [b"k1"]
    assert list(vk.parse_public_keys(cbor.dumps({**base, 2: "k2"}))) == [b"k2"]


def test_cose_key_of_an_unsupported_curve_is_refused_by_name():
    from cryptography.hazmat.primitives.asymmetric import ec

    from verifier import VerificationError
    from verifier import keys as vk

    pub = ec.generate_private_key(ec.SECP256K1()).public_key()
    for fn in (vk.cose_key_from_public, vk.thumbprint):
        with pytest.raises(VerificationError) as e:
            fn(pub)
        assert e.value.check == "key.type"
