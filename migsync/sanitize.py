"""Text that leaves migsync for other readers: drain reasons (shown to every user by `sinfo -R`),
syslog lines, error fragments, and node names that end up in scontrol's argv.

One place decides what may pass, so that a Type= or an nvidia-smi line holding ESC, BEL or a
newline can neither repaint an admin's terminal nor forge a second syslog line.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Optional

# Control and bidi/zero-width characters, each shown as '?'. A translate table, not a regex:
# `re` and this character class cost ~1 ms at start-up, paid by every Prolog.
_CONTROL = dict.fromkeys([*range(0x00, 0x20), *range(0x7f, 0xa0), 0x2028, 0x2029,
                          *range(0x200b, 0x2010), *range(0x202a, 0x202f), *range(0x2066, 0x206a)],
                         "?")

# Slurm's node names: what `scontrol update nodename=` takes as ONE node. Letters, digits,
# '-', '_' and '.'; never a leading '-' (scontrol would read an option), never a hostlist
# ('[', ']', ','), a space, '=' or a quote (those would change what scontrol updates).
_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_NAME = _FIRST | frozenset(".-")


def clean(text: str, limit: Optional[int] = None) -> str:
    """One line of printable text: control and bidi characters become '?', runs of white space
    one space; cut to ``limit`` characters (with '...')."""
    text = " ".join(str(text).replace("\t", " ").replace("\n", " ").replace("\r", " ")
                    .translate(_CONTROL).split())
    if limit is not None and len(text) > limit:
        text = text[:max(0, limit - 3)] + "..."
    return text


def reason_text(text: str, limit: int) -> str:
    """A drain reason that reads back from Slurm exactly as written: printable ASCII only,
    no double quotes (scontrol strips them: measured, a reason ending in '"q"' is stored as
    '"q'), one space between words, at most ``limit`` characters, no trailing space."""
    text = clean(text).replace('"', "'")
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return text[:limit].rstrip()


def node_name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be passed to scontrol as one node name, or None when it can."""
    if not name:
        return "empty node name"
    if len(name) <= 128 and name[0] in _FIRST and all(ch in _NAME for ch in name):
        return None
    if name.startswith("-"):
        return "a node name cannot start with '-' (scontrol would read it as an option)"
    if any(ch in name for ch in "[],"):
        return "a node name cannot be a hostlist expression (scontrol would update every node in it)"
    if any(ch.isspace() or ch in "=\"'" for ch in name):
        return "a node name cannot contain spaces, '=' or quotes"
    return "a node name may hold only letters, digits, '-', '_' and '.' (at most 128)"
