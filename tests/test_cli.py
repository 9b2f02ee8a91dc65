import os
import shutil
import subprocess
import sys

import pytest

from conftest import CONF, hermetic_env, node, run_cli, smi_args

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT_DIR, "migsync", "sample", "seed-node")


@pytest.fixture
def fake_dirs(search_root):
    """/run/slurm/conf and /etc/slurm under this test's $MIGSYNC_SEARCH_ROOT (conftest)."""
    configless = search_root / "run/slurm/conf"
    etc = search_root / "etc/slurm"
    configless.mkdir(parents=True)
    etc.mkdir(parents=True)
    return configless, etc


def test_configless_layout_is_found_and_other_nodes_lines_skipped(fake_dirs, monkeypatch):
    configless, etc = fake_dirs
    shutil.copy(os.path.join(CONF, "other-nodes.gres.conf"), configless / "gres.conf")
    shutil.copy(os.path.join(SAMPLE, "slurm.conf"), configless / "slurm.conf")
    (etc / "gres.conf").write_text("Name=gpu File=/dev/nvidia9\n")  # must lose to configless
    monkeypatch.setenv("SLURMD_NODENAME", "c51-g002")
    r = run_cli("check", "--json", *smi_args("seed"))
    doc = r.json()
    assert r.code == 0, doc["findings"]
    assert doc["files"] == {"gres_conf": str(configless / "gres.conf"),
                            "slurm_conf": str(configless / "slurm.conf"), "found_by": "configless"}


def test_slurm_conf_env_directory_wins_over_configless(fake_dirs, tmp_path, monkeypatch):
    configless, _ = fake_dirs
    (configless / "gres.conf").write_text("Name=gpu File=/dev/nvidia9\n")
    d = tmp_path / "site"
    d.mkdir()
    shutil.copy(os.path.join(SAMPLE, "slurm.conf"), d / "slurm.conf")
    shutil.copy(os.path.join(SAMPLE, "gres.conf"), d / "gres.conf")
    monkeypatch.setenv("SLURM_CONF", str(d / "slurm.conf"))
    r = run_cli("check", "--json", "--node", "c51-g002", *smi_args("seed"))
    assert r.json()["files"]["gres_conf"] == str(d / "gres.conf")
    assert r.code == 0


def test_etc_slurm_is_the_last_resort(fake_dirs):
    _, etc = fake_dirs
    shutil.copy(os.path.join(SAMPLE, "gres.conf"), etc / "gres.conf")
    r = run_cli("check", "--json", "--node", "c51-g002", *smi_args("seed"))
    assert r.json()["files"]["gres_conf"] == str(etc / "gres.conf")


def test_conf_cache_is_found_when_run_slurm_conf_is_gone(fake_dirs, search_root):
    cache = search_root / "var/spool/slurmd/conf-cache"  # Slurm's default SlurmdSpoolDir
    cache.mkdir(parents=True)
    shutil.copy(os.path.join(SAMPLE, "gres.conf"), cache / "gres.conf")
    shutil.copy(os.path.join(SAMPLE, "slurm.conf"), cache / "slurm.conf")
    r = run_cli("check", "--json", "--node", "c51-g002", *smi_args("seed"))
    assert r.code == 0
    assert r.json()["files"]["found_by"] == "configless conf-cache"


def test_no_gres_conf_anywhere_is_exit_2(fake_dirs):
    r = run_cli("check", *smi_args("seed"))
    assert r.code == 2 and "gres.conf not found" in r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.err


def test_parse_error_exit_2_names_file_line_fragment(tmp_path):
    g = tmp_path / "gres.conf"
    g.write_text("Name=gpu File=/dev/nvidia0\nName=gpu Flie=/dev/nvidia1\n")
    r = run_cli("check", *smi_args("seed", g))
    assert r.code == 2
    assert r.err.strip() == f"migsync: {g}:2: unknown key 'Flie' (in 'Flie=/dev/nvidia1')"


def test_config_errors_are_parsed_before_discovery(tmp_path):
    """A broken gres.conf is exit 2 even when the GPUs cannot be read at all."""
    g = tmp_path / "gres.conf"
    g.write_text("Name=gpu File=/dev/nvidia[\n")
    r = run_cli("check", "--backend", "nvidia-smi", "--nvidia-smi", "/nonexistent/nvidia-smi",
                "--root", tmp_path, "--gres-conf", g)
    assert r.code == 2


def test_discovery_failure_is_exit_3(tmp_path):
    # the node gres.conf gives GPUs: without a driver that is a discovery failure (a node
    # that Slurm gives no GPU is consistent without one: test_bad_input, CPU nodes)
    r = run_cli("check", "--backend", "nvidia-smi", "--nvidia-smi", "/nonexistent/nvidia-smi",
                "--root", tmp_path, "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                "--node", "c51-g002")
    assert r.code == 3 and "driver is not loaded" in r.err


def test_settings_file_keys_and_unknown_key(tmp_path):
    cfg = tmp_path / "migsync.toml"
    d = node("seed")
    cfg.write_text(f'backend = "nvidia-smi"\nnvidia_smi = "{d}/nvidia-smi"\nroot = "{d}/root"\n'
                   f'gres_conf = "{SAMPLE}/gres.conf"\nnode = "c51-g002"\n')
    r = run_cli("check", "--config", cfg)
    assert r.code == 0, r.err + r.out
    cfg.write_text('backend = "nvidia-smi"\nbakend = "x"\n')
    r = run_cli("check", "--config", cfg)
    assert r.code == 2 and r.err.strip() == f"migsync: {cfg}: unknown key 'bakend' (in 'bakend')"
    cfg.write_text('ignore = ["stale-caps"]\n')
    r = run_cli("check", "--config", cfg)
    assert r.code == 2 and "unknown finding id 'stale-caps'" in r.err
    cfg.write_text('deadline = "soon"\n')
    assert run_cli("check", "--config", cfg).code == 2
    cfg.write_text('deadline = \n')
    r = run_cli("check", "--config", cfg)
    assert r.code == 2 and "invalid TOML" in r.err


def test_example_config_in_conf_lists_every_key():
    from migsync.settings import KEYS, _load_toml
    path = os.path.join(ROOT_DIR, "conf", "migsync.toml")
    text = open(path).read()
    for key in KEYS:
        assert f"\n# {key} = " in text or f"\n{key} = " in text, key
    _load_toml(path)  # it is valid TOML


def test_usage_errors_are_exit_2():
    assert run_cli("check", "--backend", "cuda").code == 2
    assert run_cli().code == 2
    assert run_cli("frobnicate").code == 2


def test_discover_table_and_json():
    r = run_cli("discover", *smi_args("minor-not-index"))
    assert r.code == 0
    assert "gpu0/gi1/ci0     3g.40gb" in r.out
    doc = run_cli("discover", "--json", *smi_args("minor-not-index")).json()
    assert [g["minor"] for g in doc["inventory"]["gpus"]] == [0, 1, 2, 3]
    assert [g["index"] for g in doc["inventory"]["gpus"]] == [2, 3, 0, 1]


def test_check_human_output_shows_findings_and_fix():
    r = run_cli("check", *smi_args("seed-lost", os.path.join(SAMPLE, "gres.conf"),
                                   os.path.join(SAMPLE, "slurm.conf"), "c51-g002"))
    assert r.code == 1
    assert "node c51-g002: MISMATCH (1 finding)" in r.out
    assert "stale-cap" in r.out and "nvidia-cap535" in r.out
    assert "NodeName=c51-g002 Gres=gpu:a100:2,gpu:1g.10gb:13" in r.out
    assert run_cli("check", "-q", *smi_args("seed-lost", os.path.join(SAMPLE, "gres.conf"),
                                             nodename="c51-g002")).out == ""


def test_demo_runs_from_an_installed_layout():
    r = subprocess.run([sys.executable, "-m", "migsync", "demo"], capture_output=True, text=True,
                       cwd="/", env=hermetic_env(PYTHONPATH=ROOT_DIR))
    assert r.returncode == 0, r.stderr
    assert "stale-cap" in r.stdout and "nvidia-cap535" in r.stdout
    assert "nvidia-cap[337,346,355,364,373,382,391,472,481,490,508,517,526]" in r.stdout


def test_python_dash_m_and_help_teach():
    r = subprocess.run([sys.executable, "-m", "migsync", "check", "--help"], capture_output=True,
                       text=True, env=hermetic_env(PYTHONPATH=ROOT_DIR))
    assert r.returncode == 0
    assert "exit codes:" in r.stdout and "/run/slurm/conf" in r.stdout


def test_readme_documents_every_command_and_flag():
    from migsync import cli
    text = open(os.path.join(ROOT_DIR, "README.md")).read()
    text += open(os.path.join(ROOT_DIR, "conf", "migsync.toml")).read()
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sp in sub.choices.items():
        assert f"migsync {name}" in text, name
        for action in sp._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and opt != "--help":
                    assert opt in text, f"{name} {opt}"


def test_lines_slurmd_passes_over_are_shown_with_their_reason(tmp_path):
    """slurmd only logs a line without Name= (or with a NodeName= it cannot read) and goes
    on; check says so beside its findings, and --json lists them, so the admin sees why."""
    gres = tmp_path / "gres.conf"
    text = open(os.path.join(SAMPLE, "gres.conf")).read()
    n = len(text.splitlines())
    gres.write_text(text + "NodeName=c51-g002 Type=a100 File=/dev/nvidia0\n"
                    "NodeName=c51-g[002 Name=gpu File=/dev/nvidia1\n")
    args = smi_args("seed", gres=str(gres), slurm=os.path.join(SAMPLE, "slurm.conf"),
                    nodename="c51-g002")
    r = run_cli("check", *args)
    assert f"  (slurmd ignores) gres.conf:{n + 1}: no Name= (slurmd: Invalid GRES data, no type " \
        "name): slurmd skips the line" in r.out.splitlines(), r.out
    assert any(ln.startswith(f"  (slurmd ignores) gres.conf:{n + 2}: NodeName=c51-g[002 is not a "
                             "hostlist") for ln in r.out.splitlines()), r.out
    doc = run_cli("check", "--json", *args).json()
    assert [i["source"] for i in doc["ignored_by_slurmd"]] == [f"gres.conf:{n + 1}",
                                                               f"gres.conf:{n + 2}"]
    # and nothing when every line is used
    assert run_cli("check", "--json", *smi_args("seed", gres=os.path.join(SAMPLE, "gres.conf"),
                                                slurm=os.path.join(SAMPLE, "slurm.conf"),
                                                nodename="c51-g002")).json()["ignored_by_slurmd"] == []
