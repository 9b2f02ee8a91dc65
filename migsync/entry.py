"""The `migsync` program's entry point: a tiny launcher in front of the CLI.

`migsync taskprolog` runs once per task of every job, so it must not pay for argparse and
the rest of the CLI: it goes straight to migsync/taskprolog.py (os and sys only).
Everything else goes to cli.main_exit.
"""
import sys


def main() -> None:
    if sys.argv[1:2] == ["taskprolog"]:
        from .taskprolog import main as taskprolog_main

        sys.exit(taskprolog_main(sys.argv[2:]))
    from .cli import main_exit

    main_exit()
