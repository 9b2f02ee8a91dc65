"""Text that leaves migsync for other readers: drain reasons (shown to every user by `sinfo -R`),
syslog lines, error fragments, and node names that end up in scontrol's argv.

One place decides what may pass, so that a Type= or an nvidia-smi line holding ESC, BEL or a
newline can neither repaint an admin's terminal nor forge a second syslog line.
"""
from __future__ import annotations

import re
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Optional

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")

# Slurm's node names: what `scontrol update nodename=` takes as ONE node. Letters, digits,
# '-', '_' and '.'; never a leading '-' (scontrol would read an option), never a hostlist
# ('[', ']', ','), a space, '=' or a quote (those would change what scontrol updates).
NODE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


def clean(text: str, limit: Optional[int] = None) -> str:
    """One line of printable text: control and bidi characters become '?', runs of white space
    one space; cut to ``limit`` characters (with '...')."""
    text = " ".join(_CONTROL.sub("?", str(text).replace("\t", " ").replace("\n", " ")
                                 .replace("\r", " ")).split())
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
    if NODE_NAME.match(name):
        return None
    if name.startswith("-"):
        return "a node name cannot start with '-' (scontrol would read it as an option)"
    if any(ch in name for ch in "[],"):
        return "a node name cannot be a hostlist expression (scontrol would update every node in it)"
    if any(ch.isspace() or ch in "=\"'" for ch in name):
        return "a node name cannot contain spaces, '=' or quotes"
    return "a node name may hold only letters, digits, '-', '_' and '.' (at most 128)"
