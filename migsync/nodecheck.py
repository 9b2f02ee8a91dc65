"""One node's whole check: locate and parse config, discover hardware, compare, render fixes."""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Tuple

from . import __version__, discovery, emit, gresconf, locate, slurmconf
from .check import CheckResult, check
from .discovery import discover
from .errors import ConfigError
from .model import Inventory
from .procfs import DriverNotLoaded, rooted
from .settings import Settings
from .record import Record


class Outcome(Record):
    __slots__ = ("node", "files", "inventory", "result", "gres_lines", "slurm_line", "node_in_slurm_conf", "types", "style", "autodetect", "node_lines", "slurm_gres", "slurm_version", "records", "slurmd_id", "skipped")

    def __init__(self, node: str, files: locate.ConfFiles, inventory: Inventory,
                 result: CheckResult, gres_lines: List[str] = None, slurm_line: str = "",
                 node_in_slurm_conf: Optional[bool] = None, types: dict = None,
                 style: str = "multiple-files", autodetect: Any = None, node_lines: list = None,
                 slurm_gres: Optional[list] = None, slurm_version: dict = None,
                 records: list = None, slurmd_id: str = "", skipped: list = None) -> None:
        self.node = node
        self.files = files
        self.inventory = inventory
        self.result = result
        self.gres_lines = [] if gres_lines is None else gres_lines  # what emit suggests
        self.slurm_line = slurm_line
        self.node_in_slurm_conf = node_in_slurm_conf
        self.types = {} if types is None else types  # device key -> Type the suggestion uses
        self.style = style  # the style of gres_lines
        self.autodetect = autodetect
        self.node_lines = [] if node_lines is None else node_lines  # the gres.conf gpu lines for this node
        self.slurm_gres = slurm_gres
        self.slurm_version = {} if slurm_version is None else slurm_version
        self.records = [] if records is None else records
        self.slurmd_id = slurmd_id  # the slurmd whose `-V` gave slurm_version ('' if none)
        # gres.conf lines slurmd skips with only a log line: (source, why)
        self.skipped = [] if skipped is None else skipped

    def to_dict(self) -> dict:
        return {
            "version": __version__,
            "ok": self.result.ok,
            "node": self.node,
            "findings": [f.to_dict() for f in self.result.findings],
            "ignored": [f.to_dict() for f in self.result.ignored],
            "files": {"gres_conf": self.files.gres_conf, "slurm_conf": self.files.slurm_conf,
                      "found_by": self.files.how},
            "inventory": self.inventory.to_dict(),
            "suggested": {"gres_conf": self.gres_lines, "slurm_conf": self.slurm_line},
            "slurm_version": self.slurm_version,
            "records": [r.to_dict() for r in self.records],
            "ignored_by_slurmd": [{"source": src, "why": why} for src, why in self.skipped],
        }


def ask_slurm_version(settings: Settings, memo: Optional[dict] = None):
    """Whose gres.conf rules apply: the slurm_version setting, else the installed slurmd's.
    `slurmd -V` starts now and is answered later (slurmversion.Asked), so that it runs beside
    nvidia-smi; ``memo`` is the last run's answer (slurmversion.detect)."""
    from . import slurmversion

    if settings.slurm_version:
        return slurmversion.Asked((slurmversion.parse(settings.slurm_version), "setting", ""))
    return slurmversion.ask(min(settings.command_timeout, 5.0), memo)


def load_config(settings: Settings, node: str, files: Optional[locate.ConfFiles] = None,
                version: Optional[str] = None):
    files = files or locate.find(settings.gres_conf, settings.slurm_conf)
    sconf = slurmconf.load(files.slurm_conf) if files.slurm_conf else None
    # slurmd keeps only the GRES names in GresTypes (gresconf.GresConf.configured)
    types = sconf.gres_types if sconf is not None and "grestypes" in sconf.params else None
    gconf = gresconf.load(files.gres_conf, node, version, types)
    return files, gconf, sconf


def autodetect_view(settings: Settings, gconf, sconf, node: str, inv: Inventory):
    """What AutoDetect adds on this node, or None when it is off (the common case: no
    plugin-directory lookup then)."""
    from . import autodetect, runner

    setting = autodetect.setting_for(gconf.lines, node)
    if setting.value not in autodetect.OURS:
        return None
    plugin_dir = autodetect.find_plugin_dir(sconf.params.get("plugindir") if sconf else None,
                                            settings.root, runner.find_program("slurmd"))
    return autodetect.view(setting, inv, plugin_dir)


def expects_gpus(lines: list, sconf, node: str, gconf) -> bool:
    """Whether Slurm gives ``node`` any GPU: a gres.conf gpu line for it, a gpu in its
    slurm.conf Gres=, or an NVIDIA AutoDetect."""
    from . import autodetect

    if lines or autodetect.setting_for(gconf.lines, node).value in autodetect.OURS:
        return True
    got = sconf.node_gres(node) if sconf is not None else None
    return bool(got and any(spec.name.lower() == "gpu" and spec.count for spec in got[0]))


def require_node(sconf, node: str) -> None:
    """A node slurm.conf does not define would get a page of findings that all say 'wrong
    node name': the short hostname often differs from the NodeName. Say that once."""
    if sconf is not None and sconf.node_keys(node) is None:
        raise ConfigError(f"has no NodeName line for {node!r}; give the node's Slurm name "
                          "with --node NAME (the short hostname is not always the NodeName)",
                          path=sconf.path)


class EmitResult(Record):
    """What `emit` prints or writes: lines for the hardware, whatever state the config is in."""

    __slots__ = ("node", "inventory", "style", "types", "gres_lines", "slurm_line", "gres_conf", "note", "autodetect")

    def __init__(self, node: str, inventory: Inventory, style: str, types: dict,
                 gres_lines: List[str], slurm_line: str, gres_conf: Optional[str] = None,
                 note: Optional[str] = None, autodetect: Any = None) -> None:
        self.node = node
        self.inventory = inventory
        self.style = style
        self.types = types
        self.gres_lines = gres_lines
        self.slurm_line = slurm_line
        self.gres_conf = gres_conf  # the current file, when one was read
        self.note = note  # why the current gres.conf could not be used
        self.autodetect = autodetect


def emit_run(settings: Settings, nvml_module: Any = None, uuids: bool = True) -> EmitResult:
    """emit's own path: no gres.conf, or a broken one, is what a first emit meets, so the
    current file only lends its Type names and style when it can be read."""
    node = locate.node_name(settings.node)
    from . import autodetect

    lines: list = []
    path, note, ad = None, None, None
    try:
        files = locate.find(settings.gres_conf, settings.slurm_conf)
        path = files.gres_conf
        gconf = gresconf.load(files.gres_conf, node)
        ad = autodetect.setting_for(gconf.lines, node)
        lines = gconf.for_node(node)
    except ConfigError as exc:
        note = str(exc)
    inv = discover(settings.root, settings.backend, settings.nvidia_smi or None,
                   settings.command_timeout, nvml_module, uuids)
    types = emit.assign_types(inv, lines)
    style = emit.choose_style(settings.style, lines)
    return EmitResult(node, inv, style, types, emit.render_gres(inv, node, style, lines, types),
                      emit.render_slurm_line(node, types), path, note,
                      ad if ad is not None and ad.value in autodetect.OURS else None)


def run(settings: Settings, nvml_module: Any = None, style: Optional[str] = None,
        files: Optional[locate.ConfFiles] = None,
        discover_fn: Optional[Callable[[], Inventory]] = None,
        version_memo: Optional[dict] = None, uuids: bool = True) -> Outcome:
    """Parse first (a config error must not cost a discovery), then discover and compare.
    The `slurmd -V` and nvidia-smi calls run while the config is parsed; a config error is
    said first, and they are killed.

    ``discover_fn`` replaces the NVML/nvidia-smi discovery (the Prolog reads procfs only);
    ``version_memo`` is the last run's slurmd version (see slurmversion.detect);
    ``uuids=False`` when nothing the caller prints or writes shows MIG devices' UUIDs (they
    decide nothing in the check itself: see discovery.discover)."""
    from . import slurmversion

    node = locate.node_name(settings.node)
    asked = ask_slurm_version(settings, version_memo)
    # nvidia-smi starts before the config is parsed, so that it runs while `slurmd -V` is
    # waited for and the config parsed (issue 11); a config error still comes first: the
    # calls are killed, and an nvidia-smi that could not start is said only after the parse
    started = None
    try:
        if discover_fn is None:
            started = discovery.start(settings.root, settings.backend,
                                      settings.nvidia_smi or None, settings.command_timeout,
                                      nvml_module, uuids)
        series, how, slurmd_id = asked.answer()
        version = {"series": series, "rules": slurmversion.rules(series), "how": how}
        files, gconf, sconf = load_config(settings, node, files, version["rules"])
        require_node(sconf, node)
        lines = gconf.for_node(node)
        try:
            inv = discover_fn() if started is None else started.finish()
        except DriverNotLoaded:
            if expects_gpus(lines, sconf, node, gconf):
                raise  # a GPU node whose driver is gone: a node fault
            # Prolog= and HealthCheckProgram= are cluster-wide: on a CPU node, where neither
            # gres.conf nor slurm.conf gives it a GPU, no driver is the expected state, and a
            # discovery failure drained every CPU node and failed every job there.
            inv = Inventory(backend="none")
    except BaseException:
        asked.cancel()
        if started is not None:
            started.cancel()
        raise
    types = emit.assign_types(inv, lines)
    slurm_gres, where, in_conf = None, "slurm.conf", None
    if sconf is not None:
        got = sconf.node_gres(node)
        in_conf = got is not None
        if got is not None:
            slurm_gres, where = got
    ad = autodetect_view(settings, gconf, sconf, node, inv)
    result = check(inv, lines, slurm_gres, where,
                   exists=lambda p: os.path.exists(rooted(settings.root, p)),
                   ignore=settings.ignore, hardware_types=types, autodetected=ad,
                   fatal=gconf.fatal_for(node))
    style = style or emit.choose_style(settings.style, lines)
    return Outcome(node, files, inv, result, emit.render_gres(inv, node, style, lines, types),
                   emit.render_slurm_line(node, types), in_conf, types, style, ad,
                   node_lines=lines, slurm_gres=slurm_gres, slurm_version=version,
                   records=gresconf.slurmd_order(gconf, node, slurm_gres), slurmd_id=slurmd_id,
                   skipped=list(gconf.ignored))
