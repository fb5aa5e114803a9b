"""verifier/note.py at its edges (issue 16: survivors of the final mutation run): a note with no
blank line has no text, a note whose text is one empty line is a note (as Go's note.Open reads
it), and a checkpoint with an empty line is refused wherever the line is."""

import base64

import pytest

from verifier import VerificationError
from verifier.note import Checkpoint, parse_note

SIG = base64.b64encode(b"\x01\x02\x03\x04" + b"s" * 64).decode()
ROOT = base64.b64encode(b"\x00" * 32).decode()


@pytest.mark.parametrize("note", [
    f"x\u2014 log {SIG}\n",           # a signature line, no blank line before it
    f"\u2014 log {SIG}\n",
    f"origin\n\u2014 log {SIG}\n",
])
def test_a_note_without_a_blank_line_is_refused(note):
    with pytest.raises(VerificationError) as e:
        parse_note(note)
    assert e.value.check == "note.syntax"


def test_a_note_whose_text_is_one_empty_line_is_read_as_go_reads_it():
    n = parse_note(f"\n\n\u2014 log {SIG}\n")
    assert n.text == "\n" and [s.name for s in n.signatures] == ["log"]


@pytest.mark.parametrize("body", [
    f"origin\n5\n{ROOT}\n\n",             # an empty extension line at the end
    f"origin\n5\n{ROOT}\n\next\n",        # an empty line between extensions
    f"origin\n5\n{ROOT}\next\n\n",
])
def test_a_checkpoint_with_an_empty_line_is_refused(body):
    with pytest.raises(VerificationError) as e:
        Checkpoint.parse(body)
    assert e.value.check == "checkpoint.syntax"


def test_a_checkpoint_with_extension_lines_parses():
    cp = Checkpoint.parse(f"origin\n5\n{ROOT}\next one\next two\n")
    assert (cp.origin, cp.size, cp.extensions) == ("origin", 5, ("ext one", "ext two"))
