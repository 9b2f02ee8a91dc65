"""Command line: argument parsing, dispatch, and the one place where errors become exit codes."""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

from . import __version__
from .errors import (EXIT_CONFIG, EXIT_INTERNAL, EXIT_MISMATCH, EXIT_OK, EXIT_OUTPUT,
                     MigsyncError, OutputError, Terminated)
from .settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse  # imported where parsers are built: a bare Prolog never parses

EPILOG = """\
exit codes:
  0    consistent (or the command did what it was asked)
  1    mismatch: gres.conf / slurm.conf do not describe the hardware
  2    configuration or usage error (unreadable, unparseable or missing file, bad flag)
  3    discovery failed (no driver, NVML error, nvidia-smi failed or timed out)
  4    another migsync run holds the lock (healthcheck, prolog)
  5    Slurm could not be queried or updated (scontrol failed or timed out)
  70   internal error: a migsync bug, reported in one line and never acted on
  74   output could not be written (stdout closed, broken pipe, disk full)
  143  terminated by SIGTERM (child commands killed, nothing half-written); 129: SIGHUP
The prolog command exits 0 for everything but a mismatch: migsync's own trouble never
blocks a job.

Start with `migsync demo`; see `migsync COMMAND --help` for each command.
"""

# CLI flag -> settings key; flags default to None so the config file keeps its values.
FLAG_KEYS = {"backend": "backend", "nvidia_smi": "nvidia_smi", "root": "root",
             "gres_conf": "gres_conf", "slurm_conf": "slurm_conf", "node": "node",
             "timeout": "command_timeout", "deadline": "deadline", "style": "style",
             "reason_prefix": "reason_prefix", "slurm_backend": "slurm_backend",
             "scontrol": "scontrol", "prom_file": "prom_file", "lock_file": "lock_file",
             "lock_wait": "lock_wait", "cache_file": "cache_file", "drain_flag": "drain",
             "resume_flag": "resume", "discovery_drain": "drain_on_discovery_failure",
             "syslog_flag": "syslog", "prestart_block": "prestart_block",
             "slurm_version": "slurm_version"}

STYLE_HELP = ("gres.conf style: multiple-files (one MultipleFiles=/dev/nvidiaN,GI cap,CI cap "
              "line per MIG device, as Slurm's NVML autodetect builds) or file (the CI caps of "
              "a type folded into one File= hostlist). Default: the style the current gres.conf "
              "uses, else multiple-files")

# Every flag once: (group, option strings, argparse keywords). A command lists the flags it
# uses, so its --help shows no flag that would do nothing there.
FLAGS: Dict[str, Any] = {
    "config": ("where to look", ("--config",), dict(
        metavar="FILE", help="settings file (default /etc/migsync/migsync.toml, or "
                             "$MIGSYNC_CONFIG)")),
    "node": ("where to look", ("--node",), dict(
        help="Slurm node name (default $SLURMD_NODENAME, then the short hostname)")),
    "gres-conf": ("where to look", ("--gres-conf",), dict(
        metavar="FILE", help="gres.conf (default: beside slurm.conf; $SLURM_CONF's directory, "
                             "/run/slurm/conf (configless), /etc/slurm)")),
    "slurm-conf": ("where to look", ("--slurm-conf",), dict(
        metavar="FILE", help="slurm.conf (same search order)")),
    "slurm-version": ("where to look", ("--slurm-version",), dict(
        metavar="X.Y", help="read gres.conf with this Slurm release's rules (default: the "
                            "installed slurmd's, from `slurmd -V` or the package)")),
    "root": ("where to look", ("--root",), dict(
        metavar="DIR", help="read /proc and /dev under DIR (a captured node, tests, demos); "
                            "paths in gres.conf stay real absolute paths")),
    "backend": ("discovery", ("--backend",), dict(
        choices=("auto", "nvml", "nvidia-smi"),
        help="auto tries NVML, then nvidia-smi (default auto)")),
    "nvidia-smi": ("discovery", ("--nvidia-smi",), dict(
        metavar="PATH", help="nvidia-smi binary (default: PATH, then /usr/bin and other usual "
                             "places: hooks run without PATH)")),
    "timeout": ("discovery", ("--timeout",), dict(
        type=float, metavar="SEC", help="timeout for one external command (default 10)")),
    "deadline": ("discovery", ("--deadline",), dict(
        type=float, metavar="SEC", help="time budget for the whole run (default 45)")),
    "json": (None, ("--json",), dict(action="store_true", help="print one JSON object (an "
                                     "error too); the schema is in the README")),
    "ignore": (None, ("--ignore",), dict(
        action="append", metavar="ID", default=None,
        help="ignore a finding id (repeatable); see the README for the ids")),
    "style": (None, ("--style",), dict(choices=("auto", "multiple-files", "file"),
                                       help=STYLE_HELP)),
    "reason-prefix": ("acting on the node (drain/resume)", ("--reason-prefix",), dict(
        metavar="TEXT", help="drain reasons start with this; only such reasons are resumed "
                             "(default 'migsync:')")),
    "no-drain": ("acting on the node (drain/resume)", ("--no-drain",), dict(
        dest="drain_flag", action="store_const", const=False,
        help="report, but do not drain on a mismatch")),
    "no-resume": ("acting on the node (drain/resume)", ("--no-resume",), dict(
        dest="resume_flag", action="store_const", const=False,
        help="do not resume a node migsync drained once it is consistent")),
    "no-drain-on-discovery-failure": ("acting on the node (drain/resume)",
                                      ("--no-drain-on-discovery-failure",), dict(
        dest="discovery_drain", action="store_const", const=False,
        help="do not drain when the GPUs cannot be read (driver gone, GPU lost)")),
    "slurm-backend": ("acting on the node (drain/resume)", ("--slurm-backend",), dict(
        choices=("auto", "pyslurm", "scontrol"),
        help="auto: pyslurm when it imports and works, else scontrol")),
    "scontrol": ("acting on the node (drain/resume)", ("--scontrol",), dict(
        metavar="PATH", help="scontrol binary (default: PATH, /usr/bin)")),
    "prom-file": ("acting on the node (drain/resume)", ("--prom-file",), dict(
        metavar="PATH", help="write node_exporter textfile metrics here, atomically")),
    "lock-file": ("acting on the node (drain/resume)", ("--lock-file",), dict(
        metavar="PATH", help="serialises runs (default /run/migsync/lock; its directory "
                             "must exist and be root's alone)")),
    "lock-wait": ("acting on the node (drain/resume)", ("--lock-wait",), dict(
        type=float, metavar="SEC", help="how long to wait for another run (default 10)")),
    "cache-file": ("acting on the node (drain/resume)", ("--cache-file",), dict(
        metavar="PATH", help="what the last full check learned, for the Prolog fast path "
                             "(default /run/migsync/state.json)")),
    "no-syslog": ("acting on the node (drain/resume)", ("--no-syslog",), dict(
        dest="syslog_flag", action="store_const", const=False, help="log to stderr only")),
}
WHERE = ("config", "node", "gres-conf", "slurm-conf", "slurm-version", "root")
DISCOVERY = ("backend", "nvidia-smi", "timeout")
ACTING = ("reason-prefix", "no-drain", "no-resume", "no-drain-on-discovery-failure",
          "slurm-backend", "scontrol", "prom-file", "lock-file", "lock-wait", "cache-file",
          "no-syslog")


def _flags(p: argparse.ArgumentParser, *names: str, hidden: Tuple[str, ...] = ()) -> None:
    """Add the named flags. ``hidden`` ones are accepted but not shown: they do nothing for
    this command, but a hook line written for another command must not fail on them."""
    import argparse
    groups: Dict[str, Any] = {}
    for name in names + hidden:
        group, opts, kw = FLAGS[name]
        target = p
        if name in hidden:
            kw = dict(kw, help=argparse.SUPPRESS)
            group = None
        if group is not None:
            if group not in groups:
                groups[group] = p.add_argument_group(group)
            target = groups[group]
        target.add_argument(*opts, **kw)


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole CLI, or with ``only`` just that command (a Prolog pays for one, not ten)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="migsync", formatter_class=_formatter(argparse), epilog=EPILOG,
        description="Check that Slurm's gres.conf matches this node's real NVIDIA MIG devices, "
                    "and print the lines that would make it match.")
    parser.add_argument("--version", action="version", version=f"migsync {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return _SKIP  # not built at all: each parser costs ~1 ms of argparse
        p = sub.add_parser(name, help=help_text, description=description, epilog=EPILOG,
                           formatter_class=_formatter(argparse))
        return p

    p = add("check", "compare gres.conf/slurm.conf with the hardware (exit 1 on mismatch)",
            "Discover the node's GPUs and MIG devices, read the gres.conf lines Slurm applies "
            "to this node (and its slurm.conf Gres=), and report every mismatch. On a mismatch "
            "the corrected lines are printed too.")
    _flags(p, *WHERE, *DISCOVERY, "deadline", "json", "ignore", "style")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing; use the exit code")
    p.add_argument("--drain", action="store_true",
                   help="act on the node like `migsync healthcheck`: drain on a mismatch, "
                        "resume when fixed (only if migsync drained it); the flags in "
                        "'acting on the node' apply with --drain")
    p.add_argument("--reason-only", action="store_true",
                   help="print only the drain reason migsync would set: nothing and exit 0 when "
                        "consistent, the reason and exit 1 on a mismatch, the discovery reason "
                        "and exit 3 when the GPUs cannot be read (for NHC's check_migsync)")
    _flags(p, *ACTING)

    p = add("emit", "write a gres.conf for the real hardware (and the slurm.conf Gres=)",
            "Print a gres.conf that describes this node's hardware. What belongs in slurm.conf "
            "(GresTypes, the node's Gres=) is printed as # comments, so the output is exactly "
            "a gres.conf. Works without a gres.conf, or with a broken one: then the Type names "
            "are the defaults. Type names the current gres.conf uses are kept where they "
            "still fit.")
    _flags(p, *WHERE, *DISCOVERY, "deadline", "json", "style")
    p.add_argument("--write", metavar="PATH",
                   help="write the gres.conf to PATH atomically (the previous file is kept as "
                        "a backup) and print the slurm.conf lines; refuses text that does not "
                        "parse, and a PATH that holds other nodes' lines (use merge)")
    p.add_argument("--slurm-lines", action="store_true",
                   help="print only the slurm.conf lines (GresTypes=, NodeName=... Gres=), "
                        "not as comments")

    p = add("discover", "show the node's GPUs and MIG devices",
            "Show GPUs (keyed on device minor, not the nvidia-smi index) and MIG devices with "
            "their capability devices.")
    _flags(p, "config", "root", *DISCOVERY, "deadline", "json")

    p = add("demo", "run discover, check and emit on a bundled sample node",
            "Run the whole job on the sample node shipped with migsync: a 4-GPU node that lost "
            "one MIG instance in a reboot while its device file stayed behind. Every step is "
            "printed as a command you can run again yourself.")
    p.add_argument("--keep", metavar="DIR",
                   help="copy the sample node to DIR and keep it there, so the printed "
                        "commands can be re-run (default: a temporary copy, removed after)")

    p = add("install-hooks", "install the Slurm hook scripts, bound to this installation",
            "Write the hook scripts (HealthCheckProgram, Prolog, pre-start, and any other "
            "script shipped in hooks/) into DIR, each running this installation's Python by "
            "absolute path in isolated mode (-I, from /), so no PATH, working directory or "
            "PYTHONPATH decides what runs. Prints the matching slurm.conf and systemd lines.")
    p.add_argument("dir", metavar="DIR", help="where the hooks go, e.g. /etc/slurm/migsync")
    p.add_argument("--nhc-dir", metavar="DIR",
                   help="also install the LBNL NHC check (migsync.nhc) there, e.g. /etc/nhc/scripts")

    _add_node_commands(add)
    return parser


def _formatter(argparse: Any) -> Any:
    """argparse's RawDescriptionHelpFormatter, sized without shutil: argparse makes one per
    add_argument, and each asked shutil for the terminal size (importing shutil, bz2, lzma:
    ~2 ms on every run, though help is rarely printed)."""

    class Formatter(argparse.RawDescriptionHelpFormatter):
        def __init__(self, prog: str, **kwargs: Any) -> None:
            if kwargs.get("width") is None:
                try:
                    cols = int(os.environ.get("COLUMNS", "") or
                               os.get_terminal_size(sys.__stdout__.fileno()).columns)
                except (OSError, ValueError, AttributeError):
                    cols = 80
                kwargs["width"] = max(cols - 2, 20)
            super().__init__(prog, **kwargs)

    return Formatter


class _Skip:
    """Stands in for the parsers of commands not being run: takes their arguments, builds
    nothing."""

    def add_argument(self, *args: Any, **kwargs: Any) -> "_Skip":
        return self

    def add_argument_group(self, *args: Any, **kwargs: Any) -> "_Skip":
        return self

    def add_mutually_exclusive_group(self, *args: Any, **kwargs: Any) -> "_Skip":
        return self

    def set_defaults(self, **kwargs: Any) -> None:
        pass


_SKIP: Any = _Skip()


def _add_node_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("healthcheck", "check, then drain or resume the node (HealthCheckProgram)",
            "For slurm.conf HealthCheckProgram= (via hooks/healthcheck). Runs a full check; on a "
            "mismatch drains the node with a reason starting with the prefix, which `sinfo -R` "
            "shows; resumes the node once it is consistent, but only if migsync drained it. "
            "Leaves DOWN nodes and other people's drain reasons alone. Never drains for "
            "migsync's own errors. Logs to syslog and stderr.")
    _flags(p, *WHERE, *DISCOVERY, "deadline", "json", "ignore", *ACTING)

    p = add("prolog", "fast procfs-only check before each job (Prolog)",
            "For slurm.conf Prolog= (via hooks/prolog). Reads procfs only (no NVML, no "
            "nvidia-smi) and reuses the last full check while nothing changed. On a mismatch it "
            "drains the node with migsync's reason and exits 1, so the job does not start; "
            "Slurm keeps migsync's reason (measured on 22.05). Every other outcome, migsync's "
            "own errors included, exits 0.")
    _flags(p, *WHERE, "timeout", "deadline", "json", "ignore",
           *[a for a in ACTING if a not in ("no-resume", "prom-file")],
           hidden=("backend", "nvidia-smi"))

    p = add("report", "print this node's report for `migsync merge` (one JSON line)",
            "Discover the node and print one JSON line (schema migsync-report, version 2): node "
            "name, GPUs, MIG devices with caps and types (types kept from the node's gres.conf "
            "where they fit), `slurmd -C` hardware, and the migsync version. Collect with clush, "
            "pdsh or srun and feed the output to `migsync merge` on the controller.")
    _flags(p, *WHERE, *DISCOVERY, "deadline", "ignore")
    p.add_argument("--pretty", action="store_true", help="indented JSON (merge reads both)")
    p.add_argument("--no-hardware", action="store_true", help="do not run `slurmd -C`")

    p = add("merge", "merge node reports into one gres.conf (and a slurm.conf include)",
            "Read reports from files, directories or stdin ('-'), including clush/pdsh output "
            "('node: ' prefixes), `clush -b` blocks and srun output. Nodes with identical "
            "layouts share one NodeName= hostlist. Broken or conflicting reports are listed "
            "and skipped, never merged.")
    p.add_argument("inputs", nargs="*", default=["-"], metavar="REPORT",
                   help="report files, directories, or - for stdin (default)")
    p.add_argument("--style", choices=("multiple-files", "file"), default="multiple-files",
                   help="gres.conf style, as in emit (default multiple-files)")
    p.add_argument("--against", metavar="GRES_CONF",
                   help="compare with the deployed gres.conf: print which nodes change and how, "
                        "exit 1 when anything changes; its lines for nodes that sent no report "
                        "are kept")
    p.add_argument("--write", metavar="PATH", help="write the gres.conf atomically, keeping a "
                   "backup of the previous file")
    p.add_argument("--slurm-include", metavar="PATH",
                   help="also write a slurm.conf include with one NodeName line per group")

    p = add("prestart", "before slurmd starts: are gres.conf's device files there?",
            "For a systemd ExecStartPre= drop-in (conf/slurmd-migsync.conf). A gres.conf that "
            "names a missing device file makes slurmd wait 20 s and die; this reports it and "
            "drains the node with the reason. It does not block slurmd unless --prestart-block.")
    _flags(p, *WHERE, "timeout", "deadline", "reason-prefix", "no-drain", "slurm-backend",
           "scontrol", "no-syslog")
    p.add_argument("--prestart-block", action="store_const", const=True,
                   help="exit 1 (so systemd does not start slurmd) on missing device files")

    p = add("taskprolog", "print CUDA_VISIBLE_DEVICES=MIG-<uuid>,... for a task (TaskProlog)",
            "For slurm.conf TaskProlog= (hooks/taskprolog is the same in sh, and cheaper). "
            "Reads the node map the health check writes and prints `export "
            "CUDA_VISIBLE_DEVICES=...` with the UUIDs of the task's GPUs in Slurm's order. "
            "No map, a stale map or an unknown index: nothing printed, one line on stderr, "
            "exit 0 (it never fails a job).")
    p.add_argument("--map", metavar="FILE",
                   help="the node map (default $MIGSYNC_NODE_MAP, then beside the settings "
                        "file's cache_file, then /run/migsync/node-map)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    from . import settings as settings_mod

    st = getattr(args, "settings", None)  # already read (the Prolog hook's cached copy)
    if st is None:
        st = settings_mod.load(getattr(args, "config", None) or "")
    values: Dict[str, Any] = {}
    for flag, key in FLAG_KEYS.items():
        v = getattr(args, flag, None)
        if v is not None:
            values[key] = v
    if getattr(args, "ignore", None):
        values["ignore"] = list(st.ignore) + list(args.ignore)
    if values:
        settings_mod.apply(st, values, "command line")
    from . import runner

    runner.set_deadline(runner.Deadline(st.deadline))  # every command honours --deadline
    return st


def _print_json(obj: Any) -> None:
    import json

    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _acting(args: argparse.Namespace, mode: str, nvml_module: Any, pyslurm_module: Any):
    from . import healthcheck
    from .logsink import Log

    st = settings_from_args(args)
    log = Log(st.syslog and mode != "check")
    report = healthcheck.run(st, "prolog" if mode == "prolog" else "healthcheck", log,
                             nvml_module, pyslurm_module)
    return st, report


def cmd_check(args: argparse.Namespace, nvml_module: Any = None, pyslurm_module: Any = None) -> int:
    from . import jsondoc, nodecheck, render

    if args.reason_only:
        return _reason_only(args, nvml_module)
    if args.drain:
        st, report = _acting(args, "check", nvml_module, pyslurm_module)
        if args.json:
            _print_json(jsondoc.run_report("check", report))
        elif not args.quiet and report.outcome is not None:
            sys.stdout.write(render.check_report(report.outcome))
        return report.exit_code  # errors were already logged to stderr
    st = settings_from_args(args)
    # MIG UUIDs show only in --json's inventory; the verdict never reads them (without
    # --drain there is no node map to write), so plain `check` spares nvidia-smi -L
    outcome = nodecheck.run(st, nvml_module, uuids=args.json)
    if args.json:
        _print_json(jsondoc.outcome("check", outcome))
    elif not args.quiet:
        sys.stdout.write(render.check_report(outcome))
    return EXIT_OK if outcome.result.ok else EXIT_MISMATCH


def _reason_only(args: argparse.Namespace, nvml_module: Any) -> int:
    """One line for another health checker (NHC): the reason `healthcheck` would drain with,
    built by the same functions, so both name a fault the same way."""
    from . import act, nodecheck
    from .errors import EXIT_DISCOVERY, DiscoveryError, UsageError

    if args.drain:
        raise UsageError("--reason-only never acts on the node: drop --drain")
    st = settings_from_args(args)
    try:
        outcome = nodecheck.run(st, nvml_module, uuids=False)  # one line of reason: no UUIDs
    except DiscoveryError as exc:  # a node fault the caller may or may not drain for
        sys.stdout.write(act.reason_for_discovery(st.reason_prefix, str(exc)) + "\n")
        return EXIT_DISCOVERY
    if outcome.result.ok:
        return EXIT_OK
    sys.stdout.write(act.reason_for_findings(st.reason_prefix, outcome.result.findings) + "\n")
    return EXIT_MISMATCH


def cmd_emit(args: argparse.Namespace, nvml_module: Any = None, pyslurm_module: Any = None) -> int:
    from . import emit, jsondoc, nodecheck, render

    st = settings_from_args(args)
    res = nodecheck.emit_run(st, nvml_module, uuids=args.json)  # only --json shows UUIDs
    if res.note:
        sys.stderr.write(f"migsync: note: the Type names are migsync's defaults, because "
                         f"the current gres.conf could not be used: {res.note}\n")
    if args.write:
        backup = emit.write_gres_conf(args.write, render.emit_text(res), res.node)
        sys.stderr.write(f"migsync: wrote {args.write}"
                         + (f" (previous file kept as {backup})" if backup else "")
                         + "; add these lines to slurm.conf:\n")
    if args.json:
        doc = jsondoc.emit_result(res)
        if args.write:
            doc["files"] = {"gres_conf": args.write, "slurm_conf": None, "found_by": "written"}
        _print_json(doc)
    elif args.slurm_lines or args.write:
        sys.stdout.write("\n".join(render.slurm_conf_lines(res.slurm_line)) + "\n")
    else:
        sys.stdout.write(render.emit_text(res))
    return EXIT_OK


def cmd_discover(args: argparse.Namespace, nvml_module: Any = None,
                 pyslurm_module: Any = None) -> int:
    from . import jsondoc, render
    from .discovery import discover

    st = settings_from_args(args)
    inv = discover(st.root, st.backend, st.nvidia_smi or None, st.command_timeout, nvml_module,
                   uuids=args.json)  # the table shows no UUIDs
    if args.json:
        doc = jsondoc.new("discover")
        jsondoc.set_status(doc, "ok")
        doc["ok"] = None  # discover compares nothing
        doc["inventory"] = jsondoc.inventory(inv)
        _print_json(doc)
    else:
        sys.stdout.write(render.inventory_table(inv))
    return EXIT_OK


def cmd_healthcheck(args: argparse.Namespace, nvml_module: Any = None,
                    pyslurm_module: Any = None) -> int:
    from . import jsondoc

    st, report = _acting(args, "healthcheck", nvml_module, pyslurm_module)
    if args.json:
        _print_json(jsondoc.run_report("healthcheck", report))
    return report.exit_code


def cmd_prolog(args: argparse.Namespace, nvml_module: Any = None, pyslurm_module: Any = None) -> int:
    from . import jsondoc

    st, report = _acting(args, "prolog", nvml_module, pyslurm_module)
    if args.json:
        doc = jsondoc.run_report("prolog", report)
        _print_json(doc)
    if report.check_status == "mismatch":
        return EXIT_MISMATCH  # the job must not start here, drained by us or not
    if report.check_status == "discovery_failed" and st.drain_on_discovery_failure:
        return EXIT_MISMATCH
    return EXIT_OK  # migsync's own trouble never blocks a job


def cmd_prestart(args: argparse.Namespace, nvml_module: Any = None,
                 pyslurm_module: Any = None) -> int:
    from . import healthcheck
    from .logsink import Log

    st = settings_from_args(args)
    return healthcheck.prestart(st, Log(st.syslog), pyslurm_module)


def cmd_report(args: argparse.Namespace, nvml_module: Any = None,
               pyslurm_module: Any = None) -> int:
    from . import emit, nodecheck, report
    from .discovery import discover
    from .errors import ConfigError

    from . import locate

    st = settings_from_args(args)
    node = locate.node_name(st.node)
    try:  # a report (and so merge) carries no MIG UUIDs: no nvidia-smi -L
        outcome = nodecheck.run(st, nvml_module, uuids=False)
        inv, types = outcome.inventory, outcome.types
        findings = [f.to_dict() for f in outcome.result.findings]
        if inv.backend == "none":
            # a CPU node (no GPU configured, no driver) is consistent for check, but its
            # report would put the node into merge's slurm.conf include, beside the site's
            # own line for it (slurmctld: 'Duplicated NodeHostName')
            from .errors import DiscoveryError

            raise DiscoveryError("the NVIDIA driver is not loaded and Slurm gives this node "
                                 "no GPU: nothing to report")
    except ConfigError as exc:
        sys.stderr.write(f"migsync: note: {exc}; types are the defaults\n")
        inv = discover(st.root, st.backend, st.nvidia_smi or None, st.command_timeout, nvml_module,
                       uuids=False)
        findings, types = None, emit.assign_types(inv, [])
    hw = None if args.no_hardware else report.slurmd_hardware(st.command_timeout)
    doc = report.build(node, inv, types, hw, findings)
    if args.pretty:
        _print_json(doc)
    else:
        sys.stdout.write(report.dumps(doc) + "\n")
    return EXIT_OK


def cmd_merge(args: argparse.Namespace, nvml_module: Any = None, pyslurm_module: Any = None) -> int:
    from . import gresconf, merge
    from .errors import ConfigError
    from .fsutil import atomic_write

    from .sanitize import clean

    if args.slurm_include:
        from .errors import UsageError

        inc = os.path.realpath(args.slurm_include)
        for flag, other in (("--write", args.write), ("--against", args.against)):
            if other and os.path.realpath(other) == inc:
                # the include would replace the cluster's gres.conf it was merged with
                raise UsageError(f"--slurm-include and {flag} name the same file",
                                 path=args.slurm_include)
    got = merge.collect(args.inputs)
    # what a node sent (ssh noise, a forged report) is shown to the admin's terminal: one
    # line each, without escape sequences
    for prob in got.problems:
        sys.stderr.write(f"migsync merge: skipped {clean(prob.where, 200)}: "
                         f"{clean(prob.message, 300)}\n")
    for note in got.notes:
        sys.stderr.write(f"migsync merge: note: {clean(note.where, 200)}: "
                         f"{clean(note.message, 300)}\n")
    for node, where in sorted(got.conflicts.items()):
        sys.stderr.write(f"migsync merge: skipped {clean(node, 200)}: conflicting reports from "
                         f"{clean(', '.join(where), 300)}\n")
    if not got.reports:
        raise ConfigError("no usable node reports in the input")
    current = gresconf.load(args.against) if args.against else None
    kept, warnings = merge.kept_lines(current, got.reports)
    for w in warnings:
        sys.stderr.write(f"migsync merge: {w}\n")
    groups = merge.group(got)
    text = merge.render_gres_conf(groups, args.style, kept, len(got.reports))
    merged = gresconf.parse(text, "merged gres.conf")
    code = EXIT_OK
    if current is not None:
        changes = merge.diff(current, merged, sorted(got.reports, key=merge.natural_key))
        if changes:
            sys.stdout.write("\n".join(changes) + "\n")
            code = EXIT_MISMATCH
        sys.stdout.write(f"{len(got.reports)} node(s) in {len(groups)} group(s); "
                         f"{'changes above' if changes else 'no changes'} against {args.against}\n")
    if args.write:
        backup = atomic_write(args.write, text, 0o644, backup=True)
        sys.stderr.write(f"migsync merge: wrote {args.write}"
                         + (f" (previous file kept as {backup})" if backup else "") + "\n")
    elif current is None:
        sys.stdout.write(text)
    if args.slurm_include:
        backup = atomic_write(args.slurm_include, merge.render_slurm_include(groups), 0o644,
                              backup=True)
        sys.stderr.write(f"migsync merge: wrote {args.slurm_include}"
                         + (f" (previous file kept as {backup})" if backup else "") + "\n")
    return code


def cmd_demo(args: argparse.Namespace, nvml_module: Any = None, pyslurm_module: Any = None) -> int:
    from . import demo

    return demo.run(sys.stdout, args.keep)


def cmd_install_hooks(args: argparse.Namespace, nvml_module: Any = None,
                      pyslurm_module: Any = None) -> int:
    from . import install

    done = install.install_hooks(args.dir, args.nhc_dir)
    for note in done.notes:
        sys.stderr.write(f"migsync: {note}\n")
    sys.stdout.write(install.config_lines(done))
    return EXIT_OK


def cmd_taskprolog(args: argparse.Namespace, nvml_module: Any = None,
                   pyslurm_module: Any = None) -> int:
    # `migsync taskprolog` normally never gets here: entry.py sends it straight to
    # taskprolog.main without loading this module (it runs once per task).
    from . import taskprolog

    return taskprolog.main(["--map", args.map] if args.map else [])


COMMANDS: Dict[str, Callable[..., int]] = {
    "check": cmd_check, "emit": cmd_emit, "discover": cmd_discover, "demo": cmd_demo,
    "healthcheck": cmd_healthcheck, "prolog": cmd_prolog, "prestart": cmd_prestart,
    "report": cmd_report, "merge": cmd_merge, "install-hooks": cmd_install_hooks,
    "taskprolog": cmd_taskprolog,
}


def _run(args: argparse.Namespace, nvml_module: Any, pyslurm_module: Any) -> int:
    """Run the command; every error becomes its exit code here, in one line on stderr (and,
    with --json, a JSON object on stdout)."""
    from .sanitize import clean

    wants_json = bool(getattr(args, "json", False))
    try:
        code = COMMANDS[args.command](args, nvml_module, pyslurm_module)
        sys.stdout.flush()  # a full disk or a closed pipe shows here: exit 74, not 0
        return code
    except MigsyncError as exc:
        _say(f"migsync: {clean(str(exc))}\n")
        code, err = exc.exit_code, exc
    except KeyboardInterrupt:
        from . import runner

        runner.kill_all()  # children run in sessions of their own: Ctrl-C never reaches them
        _say("migsync: interrupted\n")
        return 130
    except Terminated as exc:
        from . import runner

        runner.kill_all()  # also a child the signal caught before its batch held it
        signum = exc.args[0] if exc.args else 15
        name = SIGNAL_NAMES.get(signum, f"signal {signum}")
        _say(f"migsync: terminated ({name}); nothing was left half-written\n")
        code, err = 128 + signum, MigsyncError(f"terminated ({name})")
    except Exception as exc:  # a bug: say so in one line, never act on it
        if os.environ.get("MIGSYNC_DEBUG"):
            raise
        _say(f"migsync: internal error: {type(exc).__name__}: {clean(str(exc), 300)} "
             "(set MIGSYNC_DEBUG=1 for a traceback; please report it)\n")
        code, err = EXIT_INTERNAL, MigsyncError(f"internal error: {type(exc).__name__}: {exc}")
    if wants_json and not isinstance(err, OutputError):
        from . import jsondoc

        try:
            _print_json(jsondoc.error(args.command, err, code, getattr(args, "node", None)))
            sys.stdout.flush()
        except OutputError:
            pass
    return code


class _Stdout:
    """stdout whose write errors are typed: a closed stdout, a broken pipe or a full disk
    becomes one line and exit 74, never exit 0 or an "Exception ignored" trace."""

    def __init__(self, stream: Any):
        self.stream = stream

    def _fail(self, exc: Optional[OSError]) -> None:
        why = "it is closed" if exc is None else (exc.strerror or str(exc))
        raise OutputError(f"cannot write to stdout: {why}") from None

    def write(self, text: str) -> int:
        if self.stream is None:
            self._fail(None)
        try:
            return self.stream.write(text)
        except UnicodeEncodeError:
            # stdout's encoding (PYTHONIOENCODING=ascii, a latin-1 locale) cannot show a
            # character a GPU name or a file held: show it escaped, not "stdout is closed"
            enc = getattr(self.stream, "encoding", None) or "ascii"
            return self.write(text.encode(enc, "backslashreplace").decode(enc))
        except (OSError, ValueError) as exc:
            self._fail(exc if isinstance(exc, OSError) else None)
        return 0

    def flush(self) -> None:
        if self.stream is None:
            return
        try:
            self.stream.flush()
        except (OSError, ValueError) as exc:
            self._fail(exc if isinstance(exc, OSError) else None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _say(text: str) -> None:
    """One line on stderr; a closed or full stderr cannot turn an error into a traceback."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _prolog_exit(code: int) -> int:
    """A Prolog's non-zero exit drains the node as 'Prolog error' and requeues the job:
    only a real mismatch (1) may do that. Anything else was migsync's own trouble, already
    said on stderr; say it in syslog too (slurmd logs nothing of a Prolog that exits 0)."""
    if code in (EXIT_OK, EXIT_MISMATCH):
        return code
    try:
        import syslog

        syslog.openlog("migsync", syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR, f"prolog: migsync failed with exit code {code}; "
                      "the job runs anyway (migsync never blocks a job for its own errors)")
    except (ImportError, OSError):
        pass
    return EXIT_OK


def main(argv: Optional[List[str]] = None, nvml_module: Any = None,
         pyslurm_module: Any = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(command)
    saved = sys.stdout
    # argparse prints --help and --version itself and swallows OSError: `migsync --version >
    # /dev/full` exited 0 having printed nothing. Through _Stdout the error is exit 74.
    sys.stdout = _Stdout(saved)
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse already printed its one-line usage error
            code = EXIT_CONFIG if exc.code not in (0, None) else EXIT_OK
            if code and "--json" in argv:
                from . import jsondoc
                from .errors import UsageError

                _print_json(jsondoc.error(command, UsageError("invalid command line (the usage "
                                                              "error is on stderr)"), code))
            sys.stdout.flush()
            return _prolog_exit(code) if command == "prolog" else code
        if not args.command:
            parser.print_help()
            sys.stdout.flush()
            return EXIT_CONFIG
    except OutputError as exc:
        _say(f"migsync: {exc}\n")
        return _prolog_exit(EXIT_OUTPUT) if command == "prolog" else EXIT_OUTPUT
    finally:
        sys.stdout = saved
    return dispatch(args, nvml_module, pyslurm_module)


def dispatch(args: Any, nvml_module: Any = None, pyslurm_module: Any = None) -> int:
    """Run parsed (or, for a bare Prolog, defaulted) arguments; a Prolog's exit rules.
    stdout write errors are typed here (exit 74), and the run deadline ends with the run."""
    from . import runner

    saved = sys.stdout
    sys.stdout = _Stdout(saved)
    try:
        code = _run(args, nvml_module, pyslurm_module)
    finally:
        sys.stdout = saved
        runner.set_deadline(None)
    return _prolog_exit(code) if args.command == "prolog" else code


# SIGHUP: the terminal of `migsync check` run by hand went away (an ssh session dropped).
# Its default action killed migsync at once, leaving a hanging nvidia-smi or scontrol
# running for ever in the session of its own that runner gives every child.
SIGNAL_NAMES = {15: "SIGTERM", 1: "SIGHUP"}


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def install_sigterm() -> None:
    """SIGTERM and SIGHUP unwind the run (children killed, temp files removed), exit 143 or
    129."""
    try:  # _signal: the same call without the enum module `signal` wraps it in (~2 ms)
        import _signal as sig
    except ImportError:  # pragma: no cover - other Pythons
        import signal as sig
    sig.signal(sig.SIGTERM, _on_sigterm)
    if sig.getsignal(sig.SIGHUP) == sig.SIG_DFL:  # under nohup (ignored) it stays ignored
        sig.signal(sig.SIGHUP, _on_sigterm)


def main_exit() -> None:
    """Console-script and `python -m migsync` entry point."""
    install_sigterm()
    code = main()
    # Flush, then leave without the interpreter's teardown (module cleanup, GC: ~4-8 ms per
    # run). Everything migsync writes is closed or atomically renamed by now. A flush that
    # fails (a closed pipe, a full disk) is an error, in one line, never "Exception ignored".
    if sys.stdout is not None:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            if code == EXIT_OK:
                _say("migsync: cannot write to stdout\n")
                code = EXIT_OUTPUT
    try:
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    os._exit(code)
