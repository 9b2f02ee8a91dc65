"""Which Slurm release's gres.conf rules apply: `slurmd -V`, remembered while slurmd is the
same file, so a Prolog that must check again does not start slurmd each time (issue 11)."""
import os
import shutil

import pytest

from migsync import runner, slurmversion


@pytest.mark.parametrize("text, want", [
    # expected values written by hand from what `slurmd -V` and the packages print
    ("slurm 22.05.8", "22.05"),
    ("slurm-wlm 24.11.5", "24.11"),
    ("24.11", "24.11"),
    ("slurm 26.05.0-0rc1", "26.05"),
    ("v124.11", "24.11"),       # the first two digits before a dot, as the regex did
    ("1.2.34.56", "34.56"),
    ("slurm 2.6", None),        # one digit each side: not a series
    ("", None),
    ("slurm ٢٢.٠٥", None),     # only ASCII digits
])
def test_series_is_found_in_version_text(text, want):
    if want is None:
        with pytest.raises(slurmversion.ConfigError):
            slurmversion.parse(text)
    else:
        assert slurmversion.parse(text) == want


@pytest.fixture
def slurmd(tmp_path, monkeypatch):
    """A fake slurmd that prints a version and counts its starts."""
    count = tmp_path / "starts"
    prog = tmp_path / "slurmd"
    prog.write_text(f'#!/bin/sh\necho x >> {count}\necho "slurm 24.11.5"\n')
    prog.chmod(0o755)
    monkeypatch.setattr(runner, "lookup", lambda name, search=runner.SAFE_PATH: str(prog)
                        if name == "slurmd" else name)

    class Fake:
        path = prog

        @staticmethod
        def starts():
            return len(count.read_text().splitlines()) if count.exists() else 0
    return Fake


def test_detect_runs_slurmd_and_names_the_binary(slurmd):
    series, how, ident = slurmversion.detect()
    assert (series, how) == ("24.11", "slurmd -V") and slurmd.starts() == 1
    assert ident.startswith(f"{slurmd.path}:")


def test_a_memo_of_the_same_binary_answers_without_starting_slurmd(slurmd):
    _, _, ident = slurmversion.detect()
    assert slurmversion.detect(memo={"slurmd": ident, "series": "24.11"}) == (
        "24.11", "slurmd -V", ident)
    assert slurmd.starts() == 1  # only the first call started it


def test_an_upgraded_slurmd_is_asked_again(slurmd):
    _, _, ident = slurmversion.detect()
    slurmd.path.write_text(slurmd.path.read_text().replace("24.11.5", "26.05.1"))
    os.utime(slurmd.path, (1, 1))  # an upgrade: same path, new mtime
    series, _, new = slurmversion.detect(memo={"slurmd": ident, "series": "24.11"})
    assert series == "26.05" and new != ident and slurmd.starts() == 2


@pytest.mark.parametrize("memo", [None, {}, {"slurmd": "", "series": "24.11"},
                                  {"series": "24.11"}, "24.11",
                                  {"slurmd": "SAME", "series": "24.11; rm -rf /"},
                                  {"slurmd": "SAME", "series": 24.11}])
def test_a_memo_that_is_not_exactly_ours_is_not_believed(slurmd, memo):
    _, _, ident = slurmversion.detect()
    if isinstance(memo, dict) and memo.get("slurmd") == "SAME":
        memo = dict(memo, slurmd=ident)
    assert slurmversion.detect(memo=memo)[0] == "24.11"
    assert slurmd.starts() == 2


def test_no_slurmd_gives_no_identity(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "lookup", lambda name, search=runner.SAFE_PATH:
                        str(tmp_path / "absent") if name == "slurmd" else name)
    monkeypatch.setattr(runner, "run", lambda argv, timeout=10: runner.Result(argv, 1, "", ""))
    assert slurmversion.detect(memo={"slurmd": "", "series": "24.11"}) == (None, "not found", "")


def test_a_prolog_that_must_check_again_reuses_the_health_checks_slurmd_version(
        slurmd, tmp_path, scontrol):
    """The health check asks slurmd; the Prolog after a gres.conf change checks again (not
    from cache) but takes the version from the state cache: slurmd starts once in all."""
    from conftest import SAMPLE, run_cli, smi_args

    gres = tmp_path / "gres.conf"
    shutil.copy(os.path.join(SAMPLE, "gres.conf"), gres)
    (tmp_path / "run").mkdir(mode=0o700)
    common = [*smi_args("seed", gres, os.path.join(SAMPLE, "slurm.conf"), "c51-g002"),
              "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "run" / "state.json",
              "--slurm-backend", "scontrol", "--scontrol", scontrol[0]]
    r = run_cli("healthcheck", "--json", "--no-syslog", *common)
    assert r.code == 0 and r.json()["slurm_version"]["series"] == "24.11", r.err
    assert slurmd.starts() == 1
    os.utime(gres, (1, 1))
    r = run_cli("prolog", "--json", *common)
    doc = r.json()
    assert r.code == 0 and doc["from_cache"] is False and doc["ok"] is True, r.err
    assert slurmd.starts() == 1
