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


_REASON = re.compile(r" Reason=(.*?)(?: \[([^\]@]*)@[^\]]*\])?\s*$")


def parse_show_node(text: str, name: str) -> NodeStatus:
    """Parse `scontrol show node NAME -o` (Reason= is the last field in 22.05 and later)."""
    line = text.strip()
    if not line.startswith("NodeName="):
        raise SlurmError(f"scontrol show node {name}: unexpected output: {runner.first_line(text)}")
    status = NodeStatus(name)
    m = re.search(r"(?:^| )State=(\S+)", line)
    if m:
        status.states = parse_states(m.group(1))
    m = _REASON.search(line)
    if m:
        status.reason = m.group(1).strip()
        status.reason_user = m.group(2) or ""
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
        # Hooks run without SLURM_CONF: point scontrol at the slurm.conf migsync found.
        self.env = {"SLURM_CONF": slurm_conf} if slurm_conf else None

    def _run(self, *args: str) -> str:
        try:
            res = runner.run([self.path, *args], timeout=self.timeout, env=self.env, check=True)
        except CommandError as exc:
            raise SlurmError(f"scontrol {' '.join(args[:2])}: {exc.message}") from None
        return res.stdout

    def status(self, node: str) -> NodeStatus:
        return parse_show_node(self._run("show", "node", node, "-o"), node)

    def drain(self, node: str, reason: str) -> None:
        self._run("update", f"nodename={node}", "state=drain", f"reason={reason}")

    def resume(self, node: str) -> None:
        self._run("update", f"nodename={node}", "state=resume")


class PyslurmBackend:
    """pyslurm >= 23 API: Node.load(name), .state, .reason, .reason_user, node.modify(Node(...))."""

    name = "pyslurm"

    def __init__(self, module: Any = None, slurm_conf: Optional[str] = None):
        if slurm_conf and "SLURM_CONF" not in os.environ:
            os.environ["SLURM_CONF"] = slurm_conf  # libslurm reads it when first used
        if module is None:
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
        n = self._call("Node.load", self.mod.Node.load, node)
        return NodeStatus(node, parse_states(str(n.state or "")), str(n.reason or ""),
                          str(getattr(n, "reason_user", "") or ""))

    def drain(self, node: str, reason: str) -> None:
        n = self._call("Node.load", self.mod.Node.load, node)
        self._call("modify", n.modify, self.mod.Node(state="DRAIN", reason=reason))

    def resume(self, node: str) -> None:
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
