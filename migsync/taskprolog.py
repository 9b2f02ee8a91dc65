"""`migsync taskprolog`: give a task the MIG devices Slurm allocated it, as CUDA UUIDs.

Slurm's TaskProlog runs this once per task, as the job's user, after Slurm set the GPU
variables: stdout lines `export NAME=value` set the task's environment. With a hand-written
gres.conf Slurm exports plain GRES indices (`CUDA_VISIBLE_DEVICES=2,3`), which CUDA cannot
map to MIG devices. The root health check writes a node map (GRES index -> device -> UUID,
see nodemap.py); this only reads it and prints

    export CUDA_VISIBLE_DEVICES=MIG-<uuid>[,...]

in Slurm's order. hooks/taskprolog does the same in POSIX sh (about 1 ms); both must agree,
and the tests run one table of cases against both.

Cheap on purpose: imports nothing but os and sys (the interpreter has both loaded already),
reads the settings file's cache_file line (the map is beside it) and the map, and lists the
capability directories. Anything unexpected (no map, a
stale map, an unknown index) changes nothing: one line on stderr, exit 0. A TaskProlog that
fails would fail the job.
"""
import os
import sys

DEFAULT_MAP = "/run/migsync/node-map"
MAP_ENV = "MIGSYNC_NODE_MAP"  # where the map is, when not the default (tests, diagnosis)
FORMAT = "1"
GPUS_DIR = "proc/driver/nvidia/gpus"
CAPS_DIR = "proc/driver/nvidia/capabilities"


def layout_listing(root):
    """The node's live GPUs and compute instances, as the paths the sh hook's globs give:
    `<root>/proc/driver/nvidia/gpus/*` then `.../capabilities/gpu*/mig/gi*/ci*/access`, each
    sorted bytewise (dash sorts with strcmp; the hook sets LC_ALL=C for bash), a pattern
    that matches nothing standing for itself. The map records it; a task compares."""
    base = root.rstrip("/") + "/"
    out = []
    gpus = base + GPUS_DIR
    got = sorted(gpus + "/" + n for n in _names(gpus) if not n.startswith("."))
    out += got or [gpus + "/*"]
    caps = base + CAPS_DIR
    got = []
    for g in _names(caps):
        if not g.startswith("gpu"):
            continue
        mig = caps + "/" + g + "/mig"
        for gi in _names(mig):
            if not gi.startswith("gi"):
                continue
            for ci in _names(mig + "/" + gi):
                access = mig + "/" + gi + "/" + ci + "/access"
                if ci.startswith("ci") and os.path.exists(access):
                    got.append(access)
    out += sorted(got) or [caps + "/gpu*/mig/gi*/ci*/access"]
    return " ".join(out)


def _names(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


class MapError(Exception):
    pass


def read_map(path):
    """KEY=value / KEY='value' lines (comments and blank lines skipped) -> dict; None if
    unreadable; MapError for any other line (the sh hook would not source it either)."""
    try:  # a regular file only: a FIFO or /dev/zero (the task's environment names the map)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if (os.fstat(fd).st_mode >> 12) != 8:
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8", "replace")
    out = {}
    for n, line in enumerate(text.split("\n"), 1):
        if not line or line[0] == "#":
            continue
        key, sep, value = line.partition("=")
        if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
            value = value[1:-1]
        if not sep or not key.replace("_", "").isalnum() or not key.isascii() or (
                "'" in value or " " in value and line[len(key) + 1] != "'"):
            raise MapError(f"node map {path} does not parse (line {n})")
        out[key] = value
    return out


def stale_reason(m, map_path, node):
    """Why the map cannot be trusted for this task, or '' if it can."""
    if m.get("MIGSYNC_MAP_FORMAT") != FORMAT:
        return f"map {map_path} has format {m.get('MIGSYNC_MAP_FORMAT')!r}, not {FORMAT}"
    if node and m.get("MIGSYNC_MAP_NODE") not in (None, node):
        return f"map {map_path} is for node {m.get('MIGSYNC_MAP_NODE')}, not {node}"
    try:
        written = os.stat(map_path).st_mtime_ns
    except OSError:
        return f"map {map_path} vanished"
    for conf in m.get("MIGSYNC_MAP_CONF", "").split():
        try:
            if os.stat(conf).st_mtime_ns > written:
                return f"{conf} changed after the map was written"
        except OSError:
            return f"{conf} is gone (or unreadable) since the map was written"
    if layout_listing(m.get("MIGSYNC_MAP_ROOT", "/")) != m.get("MIGSYNC_MAP_LAYOUT"):
        return "the GPU/MIG layout changed after the map was written"
    return ""


def map_of(env):
    """Where the health check wrote the map: $MIGSYNC_NODE_MAP, else beside the settings
    file's ``cache_file`` (nodemap.map_path: the one root-owned state directory), else the
    default. The settings file is read without TOML (fastprolog.cache_file_of, os only); one
    it cannot read with certainty leaves the default. hooks/taskprolog reads it alike."""
    if env.get(MAP_ENV):
        return env[MAP_ENV]
    from .fastprolog import DEFAULT_CONFIG, cache_file_of

    cache = cache_file_of(env.get("MIGSYNC_CONFIG") or DEFAULT_CONFIG)
    if not cache:
        return DEFAULT_MAP
    # relative to /, where the health check's hook runs (not the task's directory)
    return os.path.dirname("/" + cache if cache[0] != "/" else cache).rstrip("/") + "/node-map"


def task_gpus(env):
    """The task's global GRES indices, from the variable its step really carries.

    An srun step has SLURM_STEP_GPUS (with per-task binding, the task's own); the batch
    step has only SLURM_JOB_GPUS (and no numeric SLURM_STEP_ID). An srun step that
    has no GPUs (`srun --gres=none`) has no SLURM_STEP_GPUS but inherits SLURM_JOB_GPUS
    from the batch script: it gets nothing. The vendor variables (CUDA_VISIBLE_DEVICES, ...)
    are local under ConstrainDevices, so they are never read."""
    step = env.get("SLURM_STEP_GPUS")
    if step is not None:
        return step
    if env.get("SLURM_STEP_ID", "").isdigit() and env.get("SLURM_STEP_ID") != "4294967294":
        return ""
    return env.get("SLURM_JOB_GPUS", "")


def decide(env, map_path=None):
    """(export line or '', log line or '') for a task with environment ``env``."""
    gpus = task_gpus(env)
    if not gpus:
        return "", ""  # no GPUs in this task: nothing to do, nothing to say
    map_path = map_path or map_of(env)
    left = "; CUDA_VISIBLE_DEVICES left as Slurm set it"
    try:
        m = read_map(map_path)
    except MapError as exc:
        return "", f"{exc}{left}"
    if m is None:
        return "", f"no node map at {map_path} (the health check writes it){left}"
    why = stale_reason(m, map_path, env.get("SLURMD_NODENAME", ""))
    if why:
        return "", f"stale node map: {why}{left}"
    wanted = gpus.split(",")
    for idx in wanted:
        uuid = m.get("MIGSYNC_UUID_" + idx) if idx.isdigit() and idx.isascii() else None
        if not uuid:
            known = "not in" if uuid is None else "without a UUID in"
            return "", f"GPU index {idx!r} is {known} the node map{left}"
    denied = [(idx, f) for idx in wanted for f in _files(m, idx) if not os.access(f, os.R_OK)]
    if not denied:
        return f"export CUDA_VISIBLE_DEVICES={','.join(m['MIGSYNC_UUID_' + i] for i in wanted)}", ""
    # Under ConstrainDevices with per-task binding every task gets task 0's SLURM_STEP_GPUS
    # (a Slurm bug, 22.05 to 26.05). The task's device cgroup is what Slurm really bound:
    # exactly the devices whose gres.conf files it may open. Naming a denied device would
    # leave the task without a GPU; Slurm's local index still works, so when the cgroup
    # does not name as many devices as the task was given, leave it.
    allowed = [str(i) for i in range(_count(m)) if _files(m, str(i))
               and all(os.access(f, os.R_OK) for f in _files(m, str(i)))]
    idx, f = denied[0]
    if len(allowed) != len(wanted) or not all(m.get("MIGSYNC_UUID_" + i) for i in allowed):
        return "", f"GPU index {idx}: {f} is not accessible to this task{left}"
    return (f"export CUDA_VISIBLE_DEVICES={','.join(m['MIGSYNC_UUID_' + i] for i in allowed)}",
            f"GPU index {idx}: {f} is not accessible to this task (ConstrainDevices gave it "
            f"task 0's SLURM_STEP_GPUS); its device cgroup allows index {','.join(allowed)}")


def _files(m, idx):
    return [f for f in m.get("MIGSYNC_FILES_" + idx, "").split(",") if f]


def _count(m):
    count = m.get("MIGSYNC_MAP_COUNT", "0")
    return int(count) if count.isdigit() and count.isascii() else 0


def main(argv=None):
    """Never fails the task: every problem is a line on stderr and exit 0."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write("usage: migsync taskprolog [--map FILE]\n\n" + __doc__.split("\n\n")[1]
                         + "\n")
        return 0
    map_path = None
    if len(argv) == 2 and argv[0] == "--map":
        map_path = argv[1]
    elif len(argv) == 1 and argv[0].startswith("--map="):
        map_path = argv[0][len("--map="):]
    try:
        export, log = decide(os.environ, map_path)
    except Exception as exc:  # a bug must not fail the job
        export, log = "", f"internal error: {type(exc).__name__}: {exc}"
    if log:
        sys.stderr.write(f"migsync taskprolog: {log}\n")
    if export:
        sys.stdout.write(export + "\n")
    return 0
