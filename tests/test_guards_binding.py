"""The credential <-> record binding, both directions (TWI.md: the record names the credential by
its SHA-256, format, identifiers; the credential's pointer names the record), and the workload
binding (the linked provenance is this workload's, the attested artefacts are its subjects)
(issue 16, verifier/credential/binding.py). Each mismatch is its own ``binding.*`` check."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from verifier import VerificationError
from verifier.credential.binding import check_binding, check_workload_binding, digest_matches
from verifier.credential.parse import CredentialInfo, Pointer
from verifier.credential.wire import ATTESTED_ARTIFACTS_CLAIM

SUB = "spiffe://example.org/ns/prod/sa/api"
LOG = "https://log.test"
RID = "7c5d0a3e-1f2b-4c6d-8e9f-0a1b2c3d4e5f"
ISS = "https://issuer.test"


def _wit(pointer: bool = True) -> CredentialInfo:
    return CredentialInfo(format="wit", raw=b"header.claims.sig", iss=ISS, sub=SUB, jti="jti-1",
                          pointer=Pointer(RID, LOG) if pointer else None)


def _svid(pointer: bool = True) -> CredentialInfo:
    return CredentialInfo(format="x509-svid", raw=b"\x30\x82certificate", iss=None, sub=SUB, serial="1a2b",
                          issuer_dn="CN=issuer", pointer=Pointer(RID, LOG) if pointer else None)


def _rec(info: CredentialInfo) -> dict:
    c = {"digest": {"sha256": info.sha256}, "format": info.format, "sub": info.sub}
    if info.format == "wit":
        c.update(jti=info.jti, iss=info.iss)
    else:
        c.update(serial=info.serial, issuer_dn=info.issuer_dn)
    if info.pointer is not None:
        c["pointer"] = {"rid": info.pointer.rid, "log": info.pointer.log}
    return {"rid": RID, "credential": c, "issuer": {"id": ISS}}


def _st(cti: bytes | None = RID.encode(), iss: str = ISS, sub: str = SUB):
    return SimpleNamespace(cwt_claims={7: cti} if cti is not None else {}, iss=iss, sub=sub)


@pytest.mark.parametrize("make", [_wit, _svid])
@pytest.mark.parametrize("pointer", [True, False])
def test_matching_record_binds(make, pointer):
    info = make(pointer)
    check_binding(info, _rec(info), _st(), private=False)
    check_binding(info, _rec(info), _st(sub="hidden"), private=True)  # a private record's statement hides sub


def _broken(info, path, value):
    rec = copy.deepcopy(_rec(info))
    d = rec
    for k in path[:-1]:
        d = d[k]
    if value is KeyError:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return rec


CASES = [
    (_wit, ("rid",), "other-rid", "binding.record-id"),
    (_wit, ("credential", "digest", "sha256"), "00" * 32, "binding.digest"),
    (_wit, ("credential", "digest"), KeyError, "binding.digest"),
    (_wit, ("credential", "format"), "x509-svid", "binding.format"),
    (_wit, ("credential", "sub"), SUB + "x", "binding.sub"),
    (_wit, ("credential", "jti"), "jti-2", "binding.jti"),
    (_wit, ("credential", "iss"), "https://other.test", "binding.iss"),
    (_wit, ("credential", "pointer"), {"rid": RID, "log": "https://other-log.test"}, "binding.pointer"),
    (_wit, ("credential", "pointer"), KeyError, "binding.pointer"),
    (_wit, ("issuer", "id"), "https://other.test", "binding.issuer"),
    (_svid, ("credential", "serial"), "1a2c", "binding.serial"),
    (_svid, ("credential", "issuer_dn"), "CN=other", "binding.serial"),
    (_svid, ("credential", "format"), "wit", "binding.format"),
]


@pytest.mark.parametrize("make,path,value,check", CASES, ids=[f"{m.__name__}-{'.'.join(p)}-{c}" for m, p, _, c in CASES])
def test_each_mismatch_refused(make, path, value, check):
    info = make()
    with pytest.raises(VerificationError) as e:
        check_binding(info, _broken(info, path, value), _st(), private=False)
    assert e.value.check == check


def test_wit_without_jti_never_binds():
    """A WIT record is found by jti: a credential without one cannot be bound, even to a record
    that has no jti either."""
    info = _wit()
    info.jti = None
    rec = _broken(info, ("credential", "jti"), None)
    with pytest.raises(VerificationError) as e:
        check_binding(info, rec, _st(), private=False)
    assert e.value.check == "binding.jti"


def test_external_binding_uses_the_statement_cti():
    """Without a pointer the record is the one whose statement's cti (CWT claim 7) is its rid."""
    info = _wit(pointer=False)
    for st in (_st(cti=b"other-rid"), _st(cti=None), _st(cti=b"\xff\xfe")):
        with pytest.raises(VerificationError) as e:
            check_binding(info, _rec(info), st, private=False)
        assert e.value.check == "binding.record-id"
    with_ptr = _wit()  # with a pointer, the pointer decides (the statement's cti is not consulted)
    check_binding(with_ptr, _rec(with_ptr), _st(cti=b"other-rid"), private=False)


def test_statement_sub_checked_unless_private():
    info = _wit()
    with pytest.raises(VerificationError) as e:
        check_binding(info, _rec(info), _st(sub="spiffe://example.org/other"), private=False)
    assert e.value.check == "binding.sub"
    with pytest.raises(VerificationError) as e:
        check_binding(info, _rec(info), _st(iss="https://other.test"), private=True)
    assert e.value.check == "binding.issuer"


# --- in-toto digest sets and the workload binding -----------------------------------------

H1, H2 = "ab" * 32, "cd" * 32


@pytest.mark.parametrize("a,b,same", [
    ({"sha256": H1}, {"sha256": H1}, True),
    ({"sha256": H1}, {"sha256": H1.upper()}, True),         # hex is case-insensitive
    ({"sha256": H1, "sha512": H2}, {"sha256": H1}, True),   # one common algorithm suffices
    ({"sha256": H1}, {"sha512": H1}, False),                # no common algorithm: nothing matches
    ({}, {}, False),
    ({"sha256": H1, "sha512": H2}, {"sha256": H1, "sha512": H1}, False),  # every common one must agree
    ({"sha256": H1}, {"sha256": 5}, False),
    ({"sha256": 5}, {"sha256": 5}, False),
])
def test_digest_matches(a, b, same):
    assert digest_matches(a, b) is same
    assert digest_matches(b, a) is same


def _wpr(sub=SUB, subjects=({"sha256": H1},)):
    return {"predicate": {"workload_id": sub}, "subject": [{"name": "img", "digest": d} for d in subjects]}


def _arec(arts):
    return {"attestation": {"artifacts": arts}} if arts is not ... else {}


def test_workload_binding_accepts_its_own():
    info = _wit()
    arts = [{"digest": {"sha256": H1}, "name": "img"}]
    check_workload_binding(info, _arec(arts), [_wpr()], {ATTESTED_ARTIFACTS_CLAIM: arts})
    check_workload_binding(info, _arec(...), [_wpr()], None)
    check_workload_binding(info, _arec(...), [], {})


def test_provenance_of_another_workload_refused():
    with pytest.raises(VerificationError) as e:
        check_workload_binding(_wit(), _arec(...), [_wpr(), _wpr(sub=SUB + "-2")], None)
    assert e.value.check == "binding.workload-mismatch"


@pytest.mark.parametrize("arts", ["img", "", {}, [{"digest": H1}], [{"name": "img"}], ["img"], {"digest": {"sha256": H1}}])
def test_malformed_attested_artifacts_refused(arts):
    with pytest.raises(VerificationError) as e:
        check_workload_binding(_wit(), _arec(arts), [], None)
    assert e.value.check == "record.schema"


def test_attested_artifacts_must_be_what_the_ear_attests():
    arts = [{"digest": {"sha256": H1}, "name": "img"}]
    for ear in ({ATTESTED_ARTIFACTS_CLAIM: [{"digest": {"sha256": H2}, "name": "img"}]}, {}):
        with pytest.raises(VerificationError) as e:
            check_workload_binding(_wit(), _arec(arts), [], ear)
        assert e.value.check == "binding.attestation-mismatch"
    with pytest.raises(VerificationError) as e:  # the EAR attests one, the record names none
        check_workload_binding(_wit(), _arec(...), [], {ATTESTED_ARTIFACTS_CLAIM: arts})
    assert e.value.check == "binding.attestation-mismatch"


def test_attested_artifact_must_be_a_subject_of_every_provenance():
    arts = [{"digest": {"sha256": H1}}]
    check_workload_binding(_wit(), _arec(arts), [_wpr(subjects=({"sha256": H2}, {"sha256": H1}))], None)
    for wprs in ([_wpr(subjects=({"sha256": H2},))], [_wpr(), _wpr(subjects=())],
                 [_wpr(subjects=({"sha512": H1},))]):
        with pytest.raises(VerificationError) as e:
            check_workload_binding(_wit(), _arec(arts), wprs, None)
        assert e.value.check == "binding.attestation-mismatch"


def test_provenance_subject_without_digest_is_skipped():
    """An in-toto subject without a digest names no artefact; the artefact is matched against
    the subjects that have one (no crash on the other)."""
    arts = [{"digest": {"sha256": H1}}]
    wpr = {"predicate": {"workload_id": SUB}, "subject": [{"name": "notes"}, {"name": "img", "digest": {"sha256": H1}}]}
    check_workload_binding(_wit(), _arec(arts), [wpr], None)
    wpr["subject"] = [{"name": "notes"}, "not a subject"]
    with pytest.raises(VerificationError) as e:
        check_workload_binding(_wit(), _arec(arts), [wpr], None)
    assert e.value.check == "binding.attestation-mismatch"
