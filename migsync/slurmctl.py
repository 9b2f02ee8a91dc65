"""Slurm control: read a node's state and reason, drain it, resume it. pyslurm or scontrol."""
from __future__ import annotations

import os
import re
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Optional, Set

from . import runner
from .errors import CommandError, SlurmError
from .record import Record

BACKENDS = ("auto", "pyslurm", "scontrol")


class NodeStatus(Record):
    __slots__ = ("name", "states", "reason", "reason_user")

    def __init__(self, name: str, states: Set[str] = None, reason: str = "",
                 reason_user: str = "") -> None:
        self.name = name
        self.states = set() if states is None else states
        self.reason = reason
        self.reason_user = reason_user

    @property
    def down(self) -> bool:
        return "DOWN" in self.states

    @property
    def drained(self) -> bool:
        return "DRAIN" in self.states

    @property
    def invalid_reg(self) -> bool:
        return bool({"INVALID_REG", "INVAL"} & self.states)


def parse_states(text: str) -> Set[str]:
    """'IDLE+DRAIN', 'DOWN*+DRAIN' -> {'IDLE', 'DRAIN'}, {'DOWN', 'DRAIN', 'NOT_RESPONDING'}."""
    out: Set[str] = set()
    for part in text.upper().split("+"):
        if part.endswith("*"):
            part = part[:-1]
            out.add("NOT_RESPONDING")
        if part:
            out.add(part)
    return out


# Since 22.05 `scontrol show node -o` prints Reason= after the power fields, as
# "Reason=<text> [<user>@<time>]", then only optional Comment=, Extra=, InstanceId=,
# InstanceType=, ReservationName= (Slurm's node_info.c). 24.11 puts two spaces before
# Reason= and adds ResumeAfterTime, 26.05 adds SuspendTime: all before Reason=.
_STATE = re.compile(r"(?:^|\s)State=(\S+)")
_REASON_AT = re.compile(r"(?:^|\s)Reason=")
_SET_BY = re.compile(r" \[([^\[\]@\s]+)@([^\[\]\s]+)\]")
_AFTER_REASON = re.compile(r" +(?:Comment|Extra|InstanceId|InstanceType|ReservationName)=")


def parse_show_node(text: str, name: str) -> NodeStatus:
    """Parse `scontrol show node NAME -o`: State= is required (no state, no decision), and
    Reason= is read by position, so that fields printed after it never become part of it."""
    line = text.strip()
    if not line.startswith("NodeName=") or "\n" in line:
        raise SlurmError(f"scontrol show node {name}: unexpected output: {runner.first_line(text)}")
    status = NodeStatus(name)
    m = _STATE.search(line)
    if not m:
        raise SlurmError(f"scontrol show node {name}: no State= in its output; nothing done")
    status.states = parse_states(m.group(1))
    m = _REASON_AT.search(line, m.end())
    if m:
        rest = line[m.end():]
        # The stamp is the first " [user@time]" that ends the line or is followed by a field
        # Slurm prints after Reason=: a "[x@y]" inside the reason text is not it.
        for by in _SET_BY.finditer(rest):
            tail = rest[by.end():]
            if not tail.strip() or _AFTER_REASON.match(tail):
                status.reason, status.reason_user = rest[:by.start()], by.group(1)
                break
        else:
            after = _AFTER_REASON.search(rest)
            status.reason = rest[:after.start()] if after else rest
        status.reason = status.reason.strip()
    return status


def parse_show_node_json(text: str, name: str) -> NodeStatus:
    """`scontrol --json show node NAME`: 22.05 gives "state": "idle" and "state_flags",
    23.02 and later a list in "state"."""
    import json

    try:
        doc = json.loads(text)
        nodes = [n for n in doc["nodes"] if isinstance(n, dict) and n.get("name") == name]
    except (ValueError, KeyError, TypeError):
        raise SlurmError(f"scontrol --json show node {name}: not the expected JSON") from None
    if len(nodes) != 1:
        raise SlurmError(f"scontrol --json show node {name}: {len(nodes)} records for the node")
    node = nodes[0]
    states = node.get("state")
    states = [states] if isinstance(states, str) else states
    flags = node.get("state_flags", [])
    if not isinstance(states, list) or not states or not isinstance(flags, list) or not all(
            isinstance(x, str) for x in states + flags):
        raise SlurmError(f"scontrol --json show node {name}: no state in its output; nothing done")
    status = NodeStatus(name, parse_states("+".join(states + flags)))
    reason = node.get("reason", "")
    status.reason = reason.strip() if isinstance(reason, str) else ""
    user = node.get("reason_set_by_user", "")
    status.reason_user = user if isinstance(user, str) else ""
    return status


class ScontrolBackend:
    name = "scontrol"

    def __init__(self, path: Optional[str] = None, timeout: float = 10.0,
                 slurm_conf: Optional[str] = None):
        found = runner.find_program("scontrol", path or None)
        if found is None:
            raise SlurmError(f"scontrol not found{' at ' + path if path else ''}")
        self.path = found
        self.timeout = timeout
        self.json = True  # until this scontrol shows it has no JSON output
        # Hooks run without SLURM_CONF: point scontrol at the slurm.conf migsync found.
        self.env = {"SLURM_CONF": slurm_conf} if slurm_conf else None

    def _run(self, *args: str) -> str:
        try:
            res = runner.run([self.path, *args], timeout=self.timeout, env=self.env, check=True)
        except CommandError as exc:
            raise SlurmError(f"scontrol {' '.join(a for a in args[:3] if a != '--json')}: "
                             f"{exc.message}") from None
        return res.stdout

    def status(self, node: str) -> NodeStatus:
        _check_name(node)
        if self.json:
            # JSON where this Slurm has it (a data_parser plugin); otherwise the one-liner.
            try:
                res = runner.run([self.path, "--json", "show", "node", node],
                                 timeout=self.timeout, env=self.env)
            except CommandError as exc:
                raise SlurmError(f"scontrol show node: {exc.message}") from None
            if res.returncode == 0 and res.stdout.lstrip().startswith("{"):
                return parse_show_node_json(res.stdout, node)
            self.json = False
        return parse_show_node(self._run("show", "node", node, "-o"), node)

    def drain(self, node: str, reason: str) -> None:
        _check_name(node)
        self._run("update", f"nodename={node}", "state=drain", f"reason={reason}")

    def resume(self, node: str) -> None:
        _check_name(node)
        self._run("update", f"nodename={node}", "state=resume")


def _check_name(node: str) -> None:
    """The last gate before argv: one plain node name, never an option or a hostlist."""
    from .sanitize import node_name_problem

    problem = node_name_problem(node)
    if problem:
        raise SlurmError(f"refusing node name {node[:40]!r}: {problem}")


class PyslurmBackend:
    """pyslurm >= 23 API: Node.load(name), .state, .reason, .reason_user, node.modify(Node(...))."""

    name = "pyslurm"

    def __init__(self, module: Any = None, slurm_conf: Optional[str] = None):
        if slurm_conf and "SLURM_CONF" not in os.environ:
            os.environ["SLURM_CONF"] = slurm_conf  # libslurm reads it when first used
        if module is None:
            from . import site_packages

            site_packages()  # a Prolog hook runs without site (python -S)
            try:
                import pyslurm as module  # noqa: WPS433 - optional, lazily imported
            except Exception as exc:  # ImportError, or a build against another Slurm
                raise SlurmError(f"pyslurm not usable: {exc}") from None
        self.mod = module
        if not hasattr(module, "Node") or not hasattr(module.Node, "load"):
            raise SlurmError("pyslurm too old: need the >= 23 API (pyslurm.Node.load)")

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # pyslurm.RPCError and friends
            raise SlurmError(f"pyslurm {what}: {exc}") from None

    def status(self, node: str) -> NodeStatus:
        _check_name(node)
        n = self._call("Node.load", self.mod.Node.load, node)
        return NodeStatus(node, parse_states(str(n.state or "")), str(n.reason or ""),
                          str(getattr(n, "reason_user", "") or ""))

    def drain(self, node: str, reason: str) -> None:
        _check_name(node)
        n = self._call("Node.load", self.mod.Node.load, node)
        self._call("modify", n.modify, self.mod.Node(state="DRAIN", reason=reason))

    def resume(self, node: str) -> None:
        _check_name(node)
        n = self._call("Node.load", self.mod.Node.load, node)
        self._call("modify", n.modify, self.mod.Node(state="RESUME"))


def select(choice: str, node: str, scontrol: Optional[str] = None, timeout: float = 10.0,
           pyslurm_module: Any = None, slurm_conf: Optional[str] = None):
    """auto: pyslurm when it imports and can load this node, else scontrol."""
    if choice == "scontrol":
        return ScontrolBackend(scontrol, timeout, slurm_conf)
    if choice == "pyslurm":
        return PyslurmBackend(pyslurm_module, slurm_conf)
    if choice != "auto":
        raise SlurmError(f"unknown Slurm backend {choice!r}")
    try:
        backend = PyslurmBackend(pyslurm_module, slurm_conf)
        backend.status(node)
        return backend
    except SlurmError:
        return ScontrolBackend(scontrol, timeout, slurm_conf)
