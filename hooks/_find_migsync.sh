# Sourced by the hooks. Slurm runs them with no PATH (HealthCheckProgram gets only
# SLURMD_NODENAME), so every program is found by absolute path here, once.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
here=${0%/*}
MIGSYNC_CMD=""
if [ -n "${MIGSYNC_BIN:-}" ]; then
    MIGSYNC_CMD=$MIGSYNC_BIN
elif [ -x "$here/../.venv/bin/python" ] && [ -f "$here/../migsync/__init__.py" ]; then
    MIGSYNC_CMD="$here/../.venv/bin/python -m migsync"   # a source checkout set up by tests/run
else
    for c in /usr/local/bin/migsync /usr/bin/migsync /opt/migsync/bin/migsync; do
        if [ -x "$c" ]; then MIGSYNC_CMD=$c; break; fi
    done
fi
if [ -z "$MIGSYNC_CMD" ]; then
    echo "migsync hook: migsync not found (pip install it, or set MIGSYNC_BIN)" >&2
    logger -t migsync "hook: migsync not found" 2>/dev/null
    exit 0   # a missing tool must never take the node out
fi
