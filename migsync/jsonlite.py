"""JSON for the Prolog's own files (the state cache, the sidecar's settings line), without the
standard library's json module.

Why: `import json` imports `re` (json's scanner and encoder compile regexes at import), which
costs a Prolog that must check again ~7 ms, as much as the check itself. The files read here
are migsync's own, written by json.dumps or by dumps() below: objects, arrays, strings,
integers, floats, true, false and null. loads() reads standard JSON of those kinds and raises
ValueError for anything else, so a damaged file is "not believed", never half-read.
"""
from __future__ import annotations

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t"}
_QUOTE = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
          "\f": "\\f"}
_NUMBER = frozenset("-+0123456789.eE")
_SPACE = " \t\n\r"
_MAX_DEPTH = 32  # migsync's documents nest 3 deep; a deeper one is not ours


def _quote(s: str) -> str:
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    out = []
    for ch in s:
        code = ord(ch)
        if ch in _QUOTE:
            out.append(_QUOTE[ch])
        elif 0x20 <= code < 0x7f:
            out.append(ch)
        elif code > 0xFFFF:  # as json.dumps: a surrogate pair
            code -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 | (code >> 10), 0xDC00 | (code & 0x3FF)))
        else:
            out.append("\\u%04x" % code)
    return '"' + "".join(out) + '"'


def dumps(value) -> str:
    """Compact, ASCII-only JSON, keys sorted (as json.dumps(..., sort_keys=True) reads it)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} has no JSON form")
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("JSON object keys must be strings")
        return "{" + ", ".join(f"{_quote(k)}: {dumps(value[k])}" for k in sorted(value)) + "}"
    raise ValueError(f"{type(value).__name__} has no JSON form")


def loads(text: str):
    """The value of a JSON document; ValueError for anything malformed or unexpected."""
    value, pos = _value(text, _skip(text, 0), 0)
    if _skip(text, pos) != len(text):
        raise ValueError(f"extra data at {pos}")
    return value


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    return pos


def _value(text: str, pos: int, depth: int):
    if pos >= len(text):
        raise ValueError("unexpected end")
    ch = text[pos]
    if ch == '"':
        return _string(text, pos + 1)
    if ch == "{" or ch == "[":
        if depth >= _MAX_DEPTH:
            raise ValueError("nested too deeply")
        return (_object if ch == "{" else _array)(text, _skip(text, pos + 1), depth + 1)
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, pos):
            return value, pos + len(word)
    end = pos
    while end < len(text) and text[end] in _NUMBER:
        end += 1
    token = text[pos:end]
    if not token:
        raise ValueError(f"unexpected {ch!r} at {pos}")
    if not _is_number(token):
        raise ValueError(f"bad number {token!r} at {pos}")
    return (int(token) if token.lstrip("-").isdigit() else float(token)), end


def _is_number(token: str) -> bool:
    """JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?"""
    mant, e, exp = token.replace("E", "e").partition("e")
    if e and not (exp[1:] if exp[:1] in ("+", "-") else exp).isdigit():
        return False
    whole, dot, frac = (mant[1:] if mant[:1] == "-" else mant).partition(".")
    if dot and not frac.isdigit():
        return False
    return whole.isdigit() and (whole == "0" or whole[0] != "0")


def _string(text: str, pos: int):
    out = []
    while True:
        end = text.find('"', pos)
        if end < 0:
            raise ValueError("unterminated string")
        slash = text.find("\\", pos, end)
        raw = text[pos:end if slash < 0 else slash]
        if not raw.isprintable() and any(ord(c) < 0x20 for c in raw):
            raise ValueError(f"control character in a string at {pos}")  # as json's strict
        out.append(raw)
        if slash < 0:
            return "".join(out), end + 1
        esc = text[slash + 1:slash + 2]
        if esc == "u":
            code, pos = _hex4(text, slash + 2), slash + 6
            if 0xD800 <= code < 0xDC00 and text.startswith("\\u", pos):
                low = _hex4(text, pos + 2)
                if 0xDC00 <= low < 0xE000:
                    code, pos = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00), pos + 6
            out.append(chr(code))
        elif esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            pos = slash + 2
        else:
            raise ValueError(f"bad escape at {slash}")


def _hex4(text: str, pos: int) -> int:
    digits = text[pos:pos + 4]
    if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"bad \\u escape at {pos}")
    return int(digits, 16)


def _array(text: str, pos: int, depth: int):
    out = []
    done = text[pos:pos + 1] == "]"
    pos += done
    while not done:
        value, pos = _value(text, pos, depth)
        out.append(value)
        done, pos = _after_item(text, pos, "]")
    return out, pos


def _object(text: str, pos: int, depth: int):
    out = {}
    done = text[pos:pos + 1] == "}"
    pos += done
    while not done:
        if text[pos:pos + 1] != '"':
            raise ValueError(f"expected a key at {pos}")
        key, pos = _string(text, pos + 1)
        pos = _skip(text, pos)
        if text[pos:pos + 1] != ":":
            raise ValueError(f"expected ':' at {pos}")
        out[key], pos = _value(text, _skip(text, pos + 1), depth)
        done, pos = _after_item(text, pos, "}")
    return out, pos


def _after_item(text: str, pos: int, close: str):
    """After an item of an array or object: (True, past ``close``) or (False, past ',')."""
    pos = _skip(text, pos)
    ch = text[pos:pos + 1]
    if ch == close:
        return True, pos + 1
    if ch != ",":
        raise ValueError(f"expected ',' or {close!r} at {pos}")
    return False, _skip(text, pos + 1)
