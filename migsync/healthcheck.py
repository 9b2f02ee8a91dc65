"""Check, then act on the node: the health check, the Prolog fast path, the slurmd pre-start hook.

Rules (LBNL NHC's etiquette): drain with migsync's prefix; leave DOWN nodes alone; never
overwrite a reason migsync did not write; resume only a node whose reason is migsync's.
migsync's own errors (bad config, bugs) never drain: only the node's faults do.
"""
from __future__ import annotations

import os
import time
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

from . import act, locate, runner, state
from .errors import (EXIT_BUSY, EXIT_CONFIG, EXIT_DISCOVERY, EXIT_MISMATCH, EXIT_OK, EXIT_SLURM,
                     BusyError, ConfigError, DiscoveryError, SlurmError)
from .lock import RunLock
from .logsink import Log
from .model import Finding
from .procfs import rooted
from .settings import Settings
from .record import Record

STATUS_EXIT = {"ok": EXIT_OK, "mismatch": EXIT_MISMATCH, "config_error": EXIT_CONFIG,
               "discovery_failed": EXIT_DISCOVERY, "slurm_error": EXIT_SLURM, "busy": EXIT_BUSY}


class RunReport(Record):
    __slots__ = ("node", "status", "findings", "error", "decision", "outcome", "cached", "slurm_backend", "files", "check_ok", "check_status")

    def __init__(self, node: str, status: str = "ok", findings: List[Finding] = None,
                 error: str = "", decision: Optional[act.Decision] = None, outcome: Any = None,
                 cached: bool = False, slurm_backend: str = "",
                 files: Optional[locate.ConfFiles] = None, check_ok: Optional[bool] = None,
                 check_status: str = "") -> None:
        self.node = node
        self.status = status
        self.findings = [] if findings is None else findings
        self.error = error
        self.decision = decision
        self.outcome = outcome
        self.cached = cached
        self.slurm_backend = slurm_backend
        self.files = files
        self.check_ok = check_ok  # the verdict, whatever happened to the drain
        self.check_status = check_status  # status before acting: ok, mismatch, config_error, ...

    @property
    def exit_code(self) -> int:
        return STATUS_EXIT[self.status]

    def to_dict(self) -> Dict[str, Any]:
        doc = self.outcome.to_dict() if self.outcome is not None else {
            "ok": self.status == "ok", "node": self.node,
            "findings": [f.to_dict() for f in self.findings]}
        doc.update({"status": self.status, "error": self.error or None,
                    "action": self.decision.action if self.decision else None,
                    "action_why": self.decision.why if self.decision else None,
                    "drain_reason": self.decision.reason if self.decision else None,
                    "slurm_backend": self.slurm_backend or None, "from_cache": self.cached})
        return doc


def _problem(report: RunReport, st: Settings) -> Optional[str]:
    if report.status == "mismatch":
        return act.reason_for_findings(st.reason_prefix, report.findings)
    if report.status == "discovery_failed" and st.drain_on_discovery_failure:
        return act.reason_for_discovery(st.reason_prefix, report.error)
    return None


def _act(report: RunReport, st: Settings, log: Log, pyslurm_module: Any) -> None:
    from . import slurmctl

    if report.status not in ("ok", "mismatch", "discovery_failed"):
        log.error(report.error)
        log.info(f"{report.node} left as it is: migsync never drains for its own errors "
                 f"({report.status})")
        return
    if report.status == "discovery_failed" and not st.drain_on_discovery_failure:
        # Nothing is known about the GPUs: neither a drain nor a resume may follow from it.
        report.decision = act.Decision("none", why="GPUs could not be read, and "
                                       "drain_on_discovery_failure = false: left as it is")
        log.info(f"{report.node}: {report.decision.why}")
        return
    try:
        slurm_conf = report.files.slurm_conf if report.files else None
        backend = slurmctl.select(st.slurm_backend, report.node, st.scontrol or None,
                                  st.command_timeout, pyslurm_module, slurm_conf)
        report.slurm_backend = backend.name
        status = backend.status(report.node)
        decision = act.decide(status, _problem(report, st), st.reason_prefix, st.drain, st.resume)
        report.decision = decision
        if decision.action == "drain":
            backend.drain(report.node, decision.reason)
            log.warning(f"drained {report.node}: {decision.reason}")
        elif decision.action == "resume":
            backend.resume(report.node)
            log.info(f"resumed {report.node}: {decision.why}")
        else:
            log.info(f"{report.node}: {decision.why}")
    except SlurmError as exc:
        report.error = (report.error + "; " if report.error else "") + exc.message
        log.error(f"cannot drain/resume {report.node}: {exc.message}")
        report.status = "slurm_error"  # check_status keeps the verdict (the Prolog needs it)


def _settings_key(st: Settings) -> str:
    """Settings that change a verdict: a cached verdict made under others is not reused."""
    return f"root={st.root};ignore={','.join(sorted(st.ignore))}"


def _conf_paths(report: RunReport):
    return [report.files.gres_conf, report.files.slurm_conf] if report.files else []


def _full_check(report: RunReport, st: Settings, nvml_module: Any, log: Log) -> None:
    from . import bounded, fastprolog, nodecheck, nodemap

    listing = fastprolog.instances(st.root)  # before the check: a change during it is seen
    before = fastprolog.inputs(st.root, listing=listing)
    last = state.load(st.cache_file) if st.cache_file else None
    try:
        with bounded.session() as budget:  # collects every config file read, Includes too
            outcome = nodecheck.run(st, nvml_module, files=report.files,
                                    version_memo=(last or {}).get("slurmd"))
    except BaseException:
        fastprolog.save(st, before, False, ())  # no clean verdict: the Prolog hit must not answer
        raise
    read = sorted(set(budget.paths) | {p for p in _conf_paths(report) if p})
    fastprolog.save(st, before, outcome.result.ok, read)
    report.outcome = outcome
    if outcome.inventory.backend != "none":  # a CPU node (nodecheck.run): no GPU to map
        nodemap.write(outcome, st, log)  # GRES index -> UUID for hooks/taskprolog (issue 10)
    report.findings = outcome.result.findings
    report.status = "ok" if outcome.result.ok else "mismatch"
    if st.cache_file:
        read = set(budget.paths) | {p for p in (outcome.files.gres_conf,
                                                outcome.files.slurm_conf) if p}
        fp = state.fingerprint(st.root, sorted(read), _settings_key(st), listing)
        try:
            state.save(st.cache_file, report.node, fp, outcome, read)
        except ConfigError as exc:  # it only costs the Prolog its fast path; but say why
            log.warning(f"state cache not written: {exc}")


def _prolog_check(report: RunReport, st: Settings) -> None:
    """procfs only: no NVML, no nvidia-smi. Reuse the last verdict while nothing changed."""
    from . import fastprolog

    files = report.files
    listing = fastprolog.instances(st.root)  # read once: for the sidecar and the fingerprint
    before = fastprolog.inputs(st.root, listing=listing)
    cached = state.load(st.cache_file) if st.cache_file else None
    if cached and cached.get("node") == report.node:
        read = set(cached.get("files", [])) | {p for p in (files.gres_conf, files.slurm_conf) if p}
        fp = state.fingerprint(st.root, sorted(read), _settings_key(st), listing)
        if cached.get("fingerprint") == fp:
            report.cached = True
            report.findings = [Finding(**f) for f in cached.get("findings", [])]
            report.status = "ok" if cached.get("ok") else "mismatch"
            fastprolog.save(st, before, report.status == "ok", sorted(read))
            return
    # The cache cannot answer: the same check as the health check's, on procfs plus what
    # the last full check learned (names, MIG modes, profiles).
    from . import nodecheck
    from .discovery import merge
    from .procfs import read_snapshot

    def procfs_inventory():
        snap = read_snapshot(st.root)
        return merge(state.procfs_view(snap, cached), snap)

    from . import bounded

    with bounded.session() as budget:  # every config file read, Includes too
        outcome = nodecheck.run(st, files=files, discover_fn=procfs_inventory,
                                version_memo=(cached or {}).get("slurmd"))
    report.findings = outcome.result.findings
    report.status = "ok" if outcome.result.ok else "mismatch"
    # The same inputs give the same verdict: later Prologs may answer from it until they change.
    fastprolog.save(st, before, outcome.result.ok,
                    sorted(set(budget.paths) | {p for p in _conf_paths(report) if p}))


def _check(report: RunReport, st: Settings, mode: str, log: Log, nvml_module: Any) -> None:
    """The check, without acting: sets status, findings and the verdict."""
    try:
        report.files = locate.find(st.gres_conf, st.slurm_conf)
        if mode == "prolog":
            _prolog_check(report, st)
        else:
            _full_check(report, st, nvml_module, log)
    except ConfigError as exc:
        report.status, report.error = "config_error", str(exc)
    except DiscoveryError as exc:
        report.status, report.error = "discovery_failed", str(exc)
        log.error(report.error)
    report.check_status = report.status
    if report.status in ("ok", "mismatch"):
        report.check_ok = report.status == "ok"
    if report.findings:
        log.warning(f"{report.node}: {act.summary(report.findings)}")


def node_name(st: Settings) -> str:
    """This node's Slurm name, refused (ConfigError) unless it is one plain node name: it
    becomes scontrol's argv."""
    from .sanitize import node_name_problem

    name = locate.node_name(st.node)
    problem = node_name_problem(name)
    if problem:
        raise ConfigError(f"node name: {problem}", fragment=name)
    # Under slurmd (health check, Prolog, a job's shell) $SLURMD_NODENAME is this node. A
    # `node =` copied into a migsync.toml shared by every node would make each of them check
    # that node's lines against its own GPUs and drain or resume *that* node.
    here = os.environ.get("SLURMD_NODENAME", "")
    if here and name != here:
        raise ConfigError(f"node name {name} is not the node slurmd runs this on ({here}, "
                          "$SLURMD_NODENAME): migsync drains and resumes only its own node "
                          "(fix `node` in migsync.toml or --node, or leave it empty)",
                          fragment=name)
    return name


def run(st: Settings, mode: str, log: Log, nvml_module: Any = None,
        pyslurm_module: Any = None) -> RunReport:
    """mode: 'healthcheck' (full check) or 'prolog' (procfs fast path)."""
    started = time.time()
    report = RunReport(st.node or "?")
    runner.set_deadline(runner.Deadline(st.deadline * 0.6))  # keep time to drain afterwards
    try:
        report.node = node_name(st)
        with RunLock(st.lock_file, min(st.lock_wait, st.deadline * 0.3)):
            _check(report, st, mode, log, nvml_module)
            runner.set_deadline(runner.Deadline(max(1.0, st.deadline - (time.time() - started))))
            # A Prolog runs on a node that is taking jobs, so it is not drained: on a clean
            # verdict there is nothing to resume and Slurm need not be asked (it costs ms/job).
            if not (mode == "prolog" and report.status == "ok"):
                _act(report, st, log, pyslurm_module)
    except BusyError as exc:
        report.status, report.error = "busy", exc.message
        if mode == "prolog":
            # A held lock never means "no check": the job must not start on a mismatched
            # node. The lock holder (a health check) does the acting.
            log.error(f"{exc.message}: checking without the lock (procfs only), not acting")
            _check(report, st, mode, log, nvml_module)
            report.status = "busy"
        else:
            log.error(f"{exc.message}: this health check neither checked nor acted")
    except ConfigError as exc:  # settings, the node name, the state directory
        report.status, report.error = "config_error", str(exc)
        log.error(report.error)
        log.info(f"{report.node} left as it is: migsync never drains for its own errors "
                 "(config_error)")
    finally:
        runner.set_deadline(None)
    if st.prom_file and mode != "prolog":
        _write_prom(report, st, time.time() - started, log)
    return report


def _write_prom(report: RunReport, st: Settings, duration: float, log: Log) -> None:
    from . import prom

    counts: Dict[str, int] = {}
    for f in report.findings:
        counts[f.id] = counts.get(f.id, 0) + 1
    devices: Dict[str, int] = {}
    if report.outcome is not None:  # the Types the check chose, the site's names kept
        for t in report.outcome.types.values():
            devices[t or "untyped"] = devices.get(t or "untyped", 0) + 1
    try:
        prom.write(st.prom_file, prom.render(report.node, report.check_ok, counts, devices, duration,
                                             time.time(), report.status),
                   st.allow_shared_dirs, log.warning)
    except ConfigError as exc:
        log.error(str(exc))


def prestart(st: Settings, log: Log, pyslurm_module: Any = None) -> int:
    """Before slurmd starts: do the gres.conf files exist? slurmd would wait 20 s and die."""
    node = node_name(st)
    try:
        files = locate.find(st.gres_conf, st.slurm_conf)
        from . import gresconf
        lines = gresconf.load(files.gres_conf, node).for_node(node)
    except ConfigError as exc:
        log.warning(f"pre-start: {exc} (configless nodes get gres.conf only when slurmd starts)")
        return EXIT_OK
    missing = []
    for ln in lines:
        for path in ln.multiple_files or ln.files:
            if not os.path.exists(rooted(st.root, path)) and path not in [m[1] for m in missing]:
                missing.append((ln.source, path))
    if not missing:
        log.info(f"pre-start: all {sum(len(ln.multiple_files or ln.files) for ln in lines)} "
                 f"device files in {files.gres_conf} exist")
        return EXIT_OK
    finding = Finding("missing-file", f"{missing[0][0]}: {missing[0][1]} does not exist (slurmd "
                      "would wait 20 s and die)", f"no devfile {os.path.basename(missing[0][1])}",
                      missing[0][0], missing[0][1])
    extra = [Finding("missing-file", f"{src}: {p}", f"no devfile {os.path.basename(p)}", src, p)
             for src, p in missing[1:]]
    log.error(f"pre-start: {len(missing)} device file(s) named in {files.gres_conf} do not exist: "
              + ", ".join(p for _, p in missing))
    report = RunReport(node, "mismatch", [finding] + extra, files=files)
    runner.set_deadline(runner.Deadline(st.deadline))
    try:
        _act(report, st, log, pyslurm_module)
    finally:
        runner.set_deadline(None)
    return EXIT_MISMATCH if st.prestart_block else EXIT_OK
