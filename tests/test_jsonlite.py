"""migsync.jsonlite reads and writes the Prolog's own JSON without the json module (which
imports re). The standard library's json is the oracle: same text out, same values in, and
every document json refuses is refused here too."""
import json
import random

import pytest

from migsync import jsonlite

CHARS = ['a', '"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "€", "𝄞", "\ud800", " ", "/",
         "\b", "\f", "\r", "u", "0"]


def _doc(rng, depth=0):
    kind = rng.randint(0, 8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.randint(-10 ** 20, 10 ** 20)
    if kind == 3:
        return rng.choice([0.5, -1e-300, 1e300, 3.0, -0.0, 123.456, 1e16, 2.5e-7])
    if kind in (4, 5):
        return "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 6)))
    if kind == 6:
        return [_doc(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {"".join(rng.choice(CHARS) for _ in range(rng.randint(0, 3))): _doc(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def test_dumps_writes_what_json_dumps_with_sorted_keys_writes():
    rng = random.Random(11)
    for _ in range(3000):
        doc = _doc(rng)
        assert jsonlite.dumps(doc) == json.dumps(doc, sort_keys=True)


def test_loads_reads_what_json_writes_in_every_layout():
    rng = random.Random(12)
    for _ in range(3000):
        doc = _doc(rng)
        for text in (json.dumps(doc), json.dumps(doc, indent=1), json.dumps(doc, ensure_ascii=False)):
            # compared as canonical text: NaN-free, and -0.0 / 0.0 keep their sign there
            assert json.dumps(jsonlite.loads(text), sort_keys=True) == \
                json.dumps(json.loads(text), sort_keys=True), text


def test_damaged_documents_are_refused_exactly_when_json_refuses_them():
    rng = random.Random(13)
    for _ in range(20000):
        text = json.dumps(_doc(rng))
        at = rng.randrange(len(text))
        junk = rng.choice('{}[],:"\\0x-+eE. tn1')
        text = rng.choice([text[:at] + text[at + 1:], text[:at] + junk + text[at:],
                           text[:at] + junk + text[at + 1:]])
        try:
            want = json.loads(text)
        except ValueError:
            with pytest.raises(ValueError):
                jsonlite.loads(text)
            continue
        assert json.dumps(jsonlite.loads(text), sort_keys=True) == json.dumps(want, sort_keys=True)


@pytest.mark.parametrize("text", [
    "", " ", "NaN", "Infinity", "-Infinity", "[1,]", '{"a":1,}', "01", "1.", ".5", "-", "1e",
    "+1", '"\\x41"', '"a\nb"', '"\\u12"', '{"a" 1}', "[1 2]", "tru", "nul", '"open',
    "[" * 40 + "]" * 40,  # deeper than any document of migsync's
])
def test_what_is_refused(text):
    with pytest.raises(ValueError):
        jsonlite.loads(text)


@pytest.mark.parametrize("text,value", [
    ('{"a": [1, -2, 0.5, 1e3, true, false, null, "x"]}',
     {"a": [1, -2, 0.5, 1000.0, True, False, None, "x"]}),
    ('"\\ud834\\udd1e \\u00e9 \\n\\t\\"\\\\\\/"', "𝄞 é \n\t\"\\/"),
    ("  [ ]  ", []), ("{}", {}), ("-0", 0), ("12345678901234567890", 12345678901234567890),
])
def test_values_written_by_hand(text, value):
    assert jsonlite.loads(text) == value


@pytest.mark.parametrize("value", [float("inf"), float("nan"), {1: "x"}, object()])
def test_dumps_refuses_what_json_has_no_text_for(value):
    with pytest.raises(ValueError):
        jsonlite.dumps(value)
