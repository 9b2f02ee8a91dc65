"""A fake of the pyslurm 25.11 API surface migsync uses (pyslurm cannot be built against
Debian's Slurm 22.05, so this is what the pyslurm backend is unit-tested against):
``pyslurm.Node.load(name)`` -> Node with ``.state`` ('IDLE+DRAIN'), ``.reason``,
``.reason_user``; ``node.modify(pyslurm.Node(state=..., reason=...))``; ``pyslurm.RPCError``.
"""
import types


class RPCError(Exception):
    pass


def make(nodes):
    """``nodes``: name -> {'state': 'IDLE', 'reason': '', 'reason_user': ''} (mutated by modify)."""
    calls = []

    class Node:
        def __init__(self, name=None, **kwargs):
            self.name = name
            self._changes = kwargs
            rec = nodes.get(name, {})
            self.state = kwargs.get("state", rec.get("state"))
            self.reason = kwargs.get("reason", rec.get("reason"))
            self.reason_user = rec.get("reason_user")

        @classmethod
        def load(cls, name):
            if name not in nodes:
                raise RPCError(f"Node '{name}' does not exist")
            return cls(name)

        def modify(self, changes=None, **kwargs):
            changes = changes._changes if changes is not None else kwargs
            calls.append((self.name, dict(changes)))
            rec = nodes[self.name]
            base = rec["state"].split("+")[0]
            state = changes.get("state")
            if state == "DRAIN":
                if "reason" not in changes:
                    raise RPCError("You must specify a reason when DRAINING a node")
                rec["state"], rec["reason"], rec["reason_user"] = f"{base}+DRAIN", changes["reason"], "root"
            elif state == "RESUME":
                rec["state"], rec["reason"], rec["reason_user"] = base if base != "DOWN" else "IDLE", "", ""

    mod = types.SimpleNamespace(Node=Node, RPCError=RPCError, calls=calls, version=lambda: "25.11.0")
    return mod
