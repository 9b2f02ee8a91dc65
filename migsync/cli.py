"""Command line: argument parsing, dispatch, and the one place where errors become exit codes."""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Dict, List, Optional

from . import __version__
from .errors import (EXIT_CONFIG, EXIT_INTERNAL, EXIT_MISMATCH, EXIT_OK, MigsyncError,
                     Terminated)
from .settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse  # imported where parsers are built: a bare Prolog never parses

EPILOG = """\
exit codes:
  0  consistent (or the command did what it was asked)
  1  mismatch: gres.conf / slurm.conf do not describe the hardware
  2  configuration or usage error (unreadable, unparseable or missing file, bad flag)
  3  discovery failed (no driver, NVML error, nvidia-smi failed or timed out)
  4  another migsync run holds the lock (healthcheck, prolog)
  5  Slurm could not be queried or updated (scontrol failed or timed out)

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
             "syslog_flag": "syslog", "prestart_block": "prestart_block"}


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where to look")
    g.add_argument("--config", metavar="FILE",
                   help="settings file (default /etc/migsync/migsync.toml, or $MIGSYNC_CONFIG)")
    g.add_argument("--node", help="Slurm node name (default $SLURMD_NODENAME, then short hostname)")
    g.add_argument("--gres-conf", metavar="FILE",
                   help="gres.conf to check (default: beside slurm.conf; $SLURM_CONF's "
                        "directory, /run/slurm/conf (configless), /etc/slurm)")
    g.add_argument("--slurm-conf", metavar="FILE", help="slurm.conf (same search order)")
    g.add_argument("--root", metavar="DIR",
                   help="read /proc and /dev under DIR (a captured node, tests, demos); "
                        "paths in gres.conf stay real absolute paths")
    g = p.add_argument_group("discovery")
    g.add_argument("--backend", choices=("auto", "nvml", "nvidia-smi"),
                   help="auto tries NVML, then nvidia-smi (default auto)")
    g.add_argument("--nvidia-smi", metavar="PATH", help="nvidia-smi binary (default: PATH, "
                   "then /usr/bin and other usual places: hooks run without PATH)")
    g.add_argument("--timeout", type=float, metavar="SEC",
                   help="timeout for one external command (default 10)")
    g.add_argument("--deadline", type=float, metavar="SEC",
                   help="time budget for the whole run (default 45)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ignore", action="append", metavar="ID", default=None,
                   help="ignore a finding id (repeatable); see the README for the ids")


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole CLI, or with ``only`` just that command (a Prolog pays for one, not nine)."""
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
    _common(p)
    p.add_argument("--style", choices=("multiple-files", "file"),
                   help="style of the suggested lines (default multiple-files)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing; use the exit code")
    p.add_argument("--drain", action="store_true",
                   help="act on the node like `migsync healthcheck`: drain on a mismatch, "
                        "resume when fixed (only if migsync drained it)")
    _add_act(p)

    p = add("emit", "print gres.conf and slurm.conf Gres= lines for the real hardware",
            "Print the gres.conf lines that describe this node's hardware, and the slurm.conf "
            "Gres= fragment. Type names already used in the current gres.conf are kept where "
            "they still fit.")
    _common(p)
    p.add_argument("--style", choices=("multiple-files", "file"),
                   help="multiple-files: one MultipleFiles=/dev/nvidiaN,GI cap,CI cap line per MIG "
                        "device, as Slurm's NVML autodetect; file: CI caps folded into one "
                        "File= hostlist per type (the hand-written style)")

    p = add("discover", "show the node's GPUs and MIG devices",
            "Show GPUs (keyed on device minor, not the nvidia-smi index) and MIG devices with "
            "their capability devices.")
    _common(p)

    p = add("demo", "run discover, check and emit on a bundled sample node",
            "Run the whole job on the sample node shipped with migsync: the seed write-up's "
            "4-GPU node after a reboot lost one MIG instance whose /dev cap remains.")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)

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


def _add_act(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("acting on the node (drain/resume)")
    g.add_argument("--reason-prefix", metavar="TEXT",
                   help="drain reasons start with this; only such reasons are resumed "
                        "(default 'migsync:')")
    g.add_argument("--no-drain", dest="drain_flag", action="store_const", const=False,
                   help="report, but do not drain on a mismatch")
    g.add_argument("--no-resume", dest="resume_flag", action="store_const", const=False,
                   help="do not resume a node migsync drained once it is consistent")
    g.add_argument("--no-drain-on-discovery-failure", dest="discovery_drain",
                   action="store_const", const=False,
                   help="do not drain when the GPUs cannot be read (driver gone, GPU lost)")
    g.add_argument("--slurm-backend", choices=("auto", "pyslurm", "scontrol"),
                   help="auto: pyslurm when it imports and works, else scontrol")
    g.add_argument("--scontrol", metavar="PATH", help="scontrol binary (default: PATH, /usr/bin)")
    g.add_argument("--prom-file", metavar="PATH",
                   help="write node_exporter textfile metrics here, atomically")
    g.add_argument("--lock-file", metavar="PATH", help="serialises runs (default /run/migsync.lock)")
    g.add_argument("--lock-wait", type=float, metavar="SEC",
                   help="how long to wait for another run (default 10)")
    g.add_argument("--cache-file", metavar="PATH",
                   help="what the last full check learned, for the Prolog fast path "
                        "(default /run/migsync/state.json)")
    g.add_argument("--no-syslog", dest="syslog_flag", action="store_const", const=False,
                   help="log to stderr only")


def _add_node_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("healthcheck", "check, then drain or resume the node (HealthCheckProgram)",
            "For slurm.conf HealthCheckProgram= (via hooks/healthcheck). Runs a full check; on a "
            "mismatch drains the node with a reason starting with the prefix, which `sinfo -R` "
            "shows; resumes the node once it is consistent, but only if migsync drained it. "
            "Leaves DOWN nodes and other people's drain reasons alone. Never drains for "
            "migsync's own errors. Logs to syslog and stderr.")
    _common(p)
    _add_act(p)

    p = add("prolog", "fast procfs-only check before each job (Prolog)",
            "For slurm.conf Prolog= (via hooks/prolog). Reads procfs only (no NVML, no "
            "nvidia-smi) and reuses the last full check while nothing changed. On a mismatch it "
            "drains the node with migsync's reason and exits 1, so the job does not start; "
            "Slurm keeps migsync's reason (measured on 22.05). migsync's own errors exit 0.")
    _common(p)
    _add_act(p)

    p = add("report", "print this node's report for `migsync merge` (one JSON line)",
            "Discover the node and print one JSON line (schema migsync-report, version 1): node "
            "name, GPUs, MIG devices with caps and types (types kept from the node's gres.conf "
            "where they fit), `slurmd -C` hardware, and the migsync version. Collect with clush, "
            "pdsh or srun and feed the output to `migsync merge` on the controller.")
    _common(p)
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
                   "backup of the previous file (PATH.bak-<time>)")
    p.add_argument("--slurm-include", metavar="PATH",
                   help="also write a slurm.conf include with one NodeName line per group")

    p = add("prestart", "before slurmd starts: are gres.conf's device files there?",
            "For a systemd ExecStartPre= drop-in (conf/slurmd-migsync.conf). A gres.conf that "
            "names a missing device file makes slurmd wait 20 s and die; this reports it and "
            "drains the node with the reason. It does not block slurmd unless --prestart-block.")
    _common(p)
    _add_act(p)
    p.add_argument("--prestart-block", action="store_const", const=True,
                   help="exit 1 (so systemd does not start slurmd) on missing device files")


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
    from . import nodecheck, render

    if args.drain:
        st, report = _acting(args, "check", nvml_module, pyslurm_module)
        if args.json:
            _print_json(report.to_dict())
        elif not args.quiet and report.outcome is not None:
            sys.stdout.write(render.check_report(report.outcome))
        return report.exit_code  # errors were already logged to stderr
    st = settings_from_args(args)
    outcome = nodecheck.run(st, nvml_module)
    if args.json:
        _print_json(outcome.to_dict())
    elif not args.quiet:
        sys.stdout.write(render.check_report(outcome))
    return EXIT_OK if outcome.result.ok else EXIT_MISMATCH


def cmd_emit(args: argparse.Namespace, nvml_module: Any = None, pyslurm_module: Any = None) -> int:
    from . import nodecheck, render

    st = settings_from_args(args)
    outcome = nodecheck.run(st, nvml_module)
    if args.json:
        _print_json(outcome.to_dict()["suggested"])
    else:
        sys.stdout.write(render.emit_text(outcome, st.style))
    return EXIT_OK


def cmd_discover(args: argparse.Namespace, nvml_module: Any = None,
                 pyslurm_module: Any = None) -> int:
    from . import render
    from .discovery import discover

    st = settings_from_args(args)
    inv = discover(st.root, st.backend, st.nvidia_smi or None, st.command_timeout, nvml_module)
    if args.json:
        _print_json(inv.to_dict())
    else:
        sys.stdout.write(render.inventory_table(inv))
    return EXIT_OK


def cmd_healthcheck(args: argparse.Namespace, nvml_module: Any = None,
                    pyslurm_module: Any = None) -> int:
    st, report = _acting(args, "healthcheck", nvml_module, pyslurm_module)
    if args.json:
        _print_json(report.to_dict())
    return report.exit_code


def cmd_prolog(args: argparse.Namespace, nvml_module: Any = None, pyslurm_module: Any = None) -> int:
    st, report = _acting(args, "prolog", nvml_module, pyslurm_module)
    if args.json:
        _print_json(report.to_dict())
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
    try:
        outcome = nodecheck.run(st, nvml_module)
        inv, types = outcome.inventory, outcome.types
        findings = [f.to_dict() for f in outcome.result.findings]
    except ConfigError as exc:
        sys.stderr.write(f"migsync: note: {exc}; types are the defaults\n")
        inv = discover(st.root, st.backend, st.nvidia_smi or None, st.command_timeout, nvml_module)
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

    got = merge.collect(args.inputs)
    for prob in got.problems:
        sys.stderr.write(f"migsync merge: skipped {prob.where}: {prob.message}\n")
    for node, where in sorted(got.conflicts.items()):
        sys.stderr.write(f"migsync merge: skipped {node}: conflicting reports from "
                         f"{', '.join(where)}\n")
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

    return demo.run(sys.stdout)


COMMANDS: Dict[str, Callable[..., int]] = {
    "check": cmd_check, "emit": cmd_emit, "discover": cmd_discover, "demo": cmd_demo,
    "healthcheck": cmd_healthcheck, "prolog": cmd_prolog, "prestart": cmd_prestart,
    "report": cmd_report, "merge": cmd_merge,
}


def main(argv: Optional[List[str]] = None, nvml_module: Any = None,
         pyslurm_module: Any = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line usage error
        return EXIT_CONFIG if exc.code not in (0, None) else EXIT_OK
    if not args.command:
        parser.print_help()
        return EXIT_CONFIG
    return dispatch(args, nvml_module, pyslurm_module)


def dispatch(args: Any, nvml_module: Any = None, pyslurm_module: Any = None) -> int:
    """Run the command; the one place where errors become exit codes."""
    try:
        return COMMANDS[args.command](args, nvml_module, pyslurm_module)
    except MigsyncError as exc:
        sys.stderr.write(f"migsync: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("migsync: interrupted\n")
        return 130
    except Terminated:
        sys.stderr.write("migsync: terminated (SIGTERM); nothing was left half-written\n")
        return 143
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: say so in one line, never act on it
        if os.environ.get("MIGSYNC_DEBUG"):
            raise
        sys.stderr.write(f"migsync: internal error: {type(exc).__name__}: {exc} "
                         "(set MIGSYNC_DEBUG=1 for a traceback; please report it)\n")
        return EXIT_INTERNAL


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def install_sigterm() -> None:
    """SIGTERM unwinds the run (children killed, temp files removed), exit 143."""
    try:  # _signal: the same call without the enum module `signal` wraps it in (~2 ms)
        import _signal as sig
    except ImportError:  # pragma: no cover - other Pythons
        import signal as sig
    sig.signal(sig.SIGTERM, _on_sigterm)


def main_exit() -> None:
    """Console-script and `python -m migsync` entry point."""
    install_sigterm()
    code = main()
    # Flush, then leave without the interpreter's teardown (module cleanup, GC: ~4-8 ms per
    # run). Everything migsync writes is closed or atomically renamed by now.
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    except OSError:
        code = code or EXIT_INTERNAL
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)
