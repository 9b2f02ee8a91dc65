"""Where the vendored LBNL NHC is, for tests/test_nhc.py and bench/nhc.py."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def nhc_dir():
    """$MIGSYNC_NHC_DIR, else shared/vendor/nhc beside the clone (as in CI); from a git
    worktree, beside its main checkout (a worktree's .git is a file 'gitdir:
    <main>/.git/worktrees/<name>')."""
    if os.environ.get("MIGSYNC_NHC_DIR"):
        return os.path.abspath(os.environ["MIGSYNC_NHC_DIR"])
    tail = os.path.join("..", "shared", "vendor", "nhc")
    first = os.path.abspath(os.path.join(REPO, tail))
    try:
        with open(os.path.join(REPO, ".git")) as fh:
            gitdir = fh.read().split("gitdir:", 1)[1].strip()
    except (OSError, IndexError):
        return first
    main = os.path.dirname(os.path.dirname(os.path.dirname(gitdir)))
    other = os.path.abspath(os.path.join(main, tail))
    return first if os.path.isdir(first) or not os.path.isdir(other) else other
