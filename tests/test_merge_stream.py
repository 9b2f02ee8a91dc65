"""merge reads its input one report at a time: interleaved pdsh lines, broken reports between
good ones, and memory that does not follow the input's size."""
import json
import os
import tracemalloc

from conftest import CONF, run_cli, smi_args
from migsync import merge


def one_report(name="gpu01"):
    r = run_cli("report", "--no-hardware", *smi_args("seed", nodename=name),
                "--gres-conf", os.path.join(CONF, "mig-empty.gres.conf"))
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_interleaved_pretty_reports_from_pdsh_are_grouped_by_prefix(tmp_path):
    a, b = one_report("gpu01"), one_report("gpu02")
    la = json.dumps(a, indent=2).splitlines()
    lb = json.dumps(b, indent=2).splitlines()
    lines = []
    for i in range(max(len(la), len(lb))):  # pdsh prints lines as they arrive, mixed
        if i < len(la):
            lines.append(f"gpu01: {la[i]}")
        if i < len(lb):
            lines.append(f"gpu02: {lb[i]}")
    src = tmp_path / "pdsh.txt"
    src.write_text("\n".join(lines) + "\n")
    got = merge.collect([str(src)])
    assert sorted(got.reports) == ["gpu01", "gpu02"] and not got.problems
    assert len(got.layouts) == 1  # same layout: one report kept


def test_a_truncated_srun_line_does_not_swallow_the_reports_after_it(tmp_path):
    good = [one_report(f"gpu{i:02d}") for i in range(1, 4)]
    text = json.dumps(good[0]) + "\n"
    text += json.dumps(good[1])[:300] + "\n"  # cut off mid-report
    text += json.dumps(good[2]) + "\n"
    src = tmp_path / "srun.txt"
    src.write_text(text)
    got = merge.collect([str(src)])
    assert sorted(got.reports) == ["gpu01", "gpu03"]
    assert [p.message.split(" (")[0] for p in got.problems] == ["no report: invalid JSON"]


def test_a_report_without_a_final_newline_and_an_indented_file_are_read(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(one_report("gpu01"), indent=4))
    (tmp_path / "b.txt").write_text("gpu02: " + json.dumps(one_report("gpu02")))
    got = merge.collect([str(tmp_path)])
    assert sorted(got.reports) == ["gpu01", "gpu02"] and not got.problems


def test_an_overlong_line_is_a_problem_not_a_memory_spike(tmp_path, monkeypatch):
    monkeypatch.setattr(merge, "MAX_LINE", 4096)
    src = tmp_path / "in.txt"
    src.write_text("gpu09: " + "x" * 50000 + "\ngpu02: " + json.dumps(one_report("gpu02"))[:3000]
                   + "}\n")  # short enough, but broken
    got = merge.collect([str(src)])
    assert not got.reports
    assert [(p.where, p.message.split(" (")[0]) for p in got.problems] == [
        ("gpu09", "no report: line longer than 4096 bytes"), ("gpu02", "no report: invalid JSON")]


def test_memory_does_not_follow_the_number_of_reports(tmp_path):
    doc = one_report()
    path = tmp_path / "reports.txt"
    with open(path, "w") as fh:
        for i in range(2000):
            doc["node"] = f"gpu{i:05d}"
            doc["gpus"][0]["name"] = f"NVIDIA A100 rev{i % 4}"  # four layouts
            fh.write(f"gpu{i:05d}: {json.dumps(doc)}\n")
    size = os.path.getsize(path)
    tracemalloc.start()
    try:
        got = merge.collect([str(path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(got.reports) == 2000 and len(got.layouts) == 4
    # Reading the whole input at once (as before) peaks above the file size; one report at
    # a time plus 2,000 small per-node entries stays far below it.
    assert size > 10e6 and peak < size / 8, (size, peak)
