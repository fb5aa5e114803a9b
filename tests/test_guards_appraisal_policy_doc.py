"""The appraisal policy document is type-checked: a field of the wrong type is refused as
appraisal.policy (the issuer CLI prints it in one line), not a TypeError traceback and not a
string read as a list of its characters (issue 16)."""

from __future__ import annotations

import pytest

from issuer import IssuerError
from issuer.appraisal import AppraisalPolicy

from .test_twi_support import policy_obj


@pytest.mark.parametrize("key", ["allowed_profiles", "allowed_appraisal_policy_ids", "required_submods"])
@pytest.mark.parametrize("value", [None, "tag:ietf.org,2026:rats/ear#03", ["ok", 5], {"a": "b"}, 7])
def test_text_lists_typed(key, value):
    with pytest.raises(IssuerError) as ei:
        AppraisalPolicy.from_obj(policy_obj(**{key: value}))
    assert ei.value.check == "appraisal.policy"


@pytest.mark.parametrize("key", ["allowed_profiles", "allowed_appraisal_policy_ids", "required_submods"])
def test_text_lists_kept(key):
    p = AppraisalPolicy.from_obj(policy_obj(**{key: ["a", "b"]}))
    assert getattr(p, key) == ["a", "b"]
    obj = policy_obj()
    obj.pop(key, None)
    assert getattr(AppraisalPolicy.from_obj(obj), key) == ([] if key == "required_submods" else None)


@pytest.mark.parametrize("over", [{"max_age": "soon"}, {"max_age": [300]}, {"clock_skew": "x"},
                                  {"clock_skew": None}, {"clock_skew": {"s": 1}}])
def test_seconds_typed(over):
    with pytest.raises(IssuerError) as ei:
        AppraisalPolicy.from_obj(policy_obj(**over))
    assert ei.value.check == "appraisal.policy"


def test_seconds_read():
    p = AppraisalPolicy.from_obj(policy_obj(max_age=120, clock_skew=5))
    assert (p.max_age, p.clock_skew) == (120, 5)
    assert AppraisalPolicy.from_obj(policy_obj(max_age=0)).max_age is None
    assert AppraisalPolicy.from_obj(policy_obj(max_age=None)).max_age is None


@pytest.mark.parametrize("submods", [["cc-tee"], "cc-tee", {"cc-tee": 5}, {"cc-tee": "affirming"},
                                     {"cc-tee": ["affirming"]}])
def test_submods_typed(submods):
    with pytest.raises(IssuerError) as ei:
        AppraisalPolicy.from_obj(policy_obj(submods=submods))
    assert ei.value.check == "appraisal.policy"


def test_submods_read():
    p = AppraisalPolicy.from_obj(policy_obj(submods={"cc-tee": {"status": "warning"}}))
    assert p.rule_for("cc-tee").status == "warning" and p.rule_for("other").status == "affirming"
    assert AppraisalPolicy.from_obj(policy_obj(submods=None)).rule_for("x").status == "affirming"
