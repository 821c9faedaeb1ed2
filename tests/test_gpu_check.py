"""bench/gpu_check.py --quick on the CPU: the script a GPU day depends on runs, prints every figure beside its
ceiling, and writes the same figures to --json (its numbers at these sizes mean nothing)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

NUMBER = r"[0-9]+(?:\.[0-9]+)?"


@pytest.mark.slow
def test_gpu_check_quick(tmp_path, data_dir):
    out = tmp_path / "figures.json"
    # the session's data dir: the 1,200 SynthFaces of the tiny configs, generated once for every test
    cmd = [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--quick", "--json", str(out),
           "--data-dir", str(data_dir), "--profile", str(tmp_path / "profile")]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    lines = result.stdout.splitlines()

    def line(prefix: str) -> str:
        found = [text for text in lines if text.startswith(prefix)]
        assert len(found) == 1, f"expected one line starting {prefix!r} in:\n{result.stdout}"
        return found[0]

    head = line("gpu_check (quick): device: ")
    assert "torch " in head and "CUDA build" in head and "native bf16" in head
    a = line("[a] throughput small_cnn 32px bf16 channels_last")
    assert re.search(rf"pipeline {NUMBER} img/s \| ceiling {NUMBER} img/s \| ratio {NUMBER}", a), a
    b = line("[b] train.py end to end, 1 epoch: ")
    assert re.search(rf"wall {NUMBER} s .* -> {NUMBER} img/s over the run \| ceiling {NUMBER} img/s from \(a\) "
                     rf"\| ratio {NUMBER} \| test acc {NUMBER}", b), b
    profile = line("[profile] host ms per step (SimpleProfiler, mean after warm-up): ")
    assert re.search(rf"whole batch {NUMBER} \| a step at \(a\)'s ceiling: {NUMBER} ms", profile), profile
    c = line("[c] metrics bootstrap 50 resamples x 2000 samples: ")
    assert re.search(rf"fairness_report {NUMBER} s \| per-resample loop {NUMBER} s \| {NUMBER}x faster", c), c
    assert "no GPU path" in result.stdout and "model=resnet50" in result.stdout  # where the numbers came from
    assert "0 section(s) failed" in line("total ")

    report = json.loads(out.read_text())
    assert report["mode"] == "quick" and report["errors"] == {}
    assert {"torch", "cuda_build", "device_name", "cpu_bf16"} <= set(report["environment"])
    a_json, b_json, c_json = report["throughput"], report["end_to_end"], report["metrics_bootstrap"]
    assert a_json["pipeline_img_s"] > 0 and a_json["ceiling_img_s"] > 0
    assert a_json["ratio"] == pytest.approx(a_json["pipeline_img_s"] / a_json["ceiling_img_s"], abs=2e-3)
    assert b_json["ceiling_img_s"] == a_json["ceiling_img_s"]  # (b)'s ceiling is (a)'s, same run
    assert b_json["n_train"] > 0 and 0 <= b_json["test_acc"] <= 1 and b_json["wall_s"] >= b_json["train_s"] > 0
    assert c_json["fairness_report_s"] > 0 and c_json["loop_s"] > 0
    host = report["profile"]["host_ms_per_step"]  # the step's parts: none longer than the whole batch
    assert host["whole batch"] > 0 and all(ms <= host["whole batch"] * 1.05 for label, ms in host.items()
                                           if label != "next batch"), host
    assert report["profile"]["ceiling_ms_per_step"] == pytest.approx(1000 * 32 / a_json["ceiling_img_s"], rel=1e-2)
    assert {"fit-simple.txt", "fit-torch.txt"} <= set(report["profile"]["reports"])
    assert report["total_s"] < 120  # "well under a minute" on an idle CPU; shared CI machines get slack


def test_gpu_check_section_failure_is_reported_and_fails(tmp_path, monkeypatch, capsys):
    """A broken section prints its error, the others still run, and the exit status says so."""
    import torch

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", ""))  # --quick sets both on a CPU
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    import gpu_check

    def broken(*args, **kwargs):
        raise RuntimeError("no data here")

    monkeypatch.setattr(gpu_check, "throughput", broken)
    monkeypatch.setattr(gpu_check, "end_to_end", broken)
    monkeypatch.setattr(gpu_check, "bootstrap", lambda sizes: {"fairness_report_s": 0.1})
    out = tmp_path / "figures.json"
    assert gpu_check.main(["--quick", "--json", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "[a] throughput FAILED: RuntimeError: no data here" in printed
    assert "[b] end_to_end FAILED" in printed and "2 section(s) failed" in printed
    report = json.loads(out.read_text())
    assert set(report["errors"]) == {"throughput", "end_to_end"} and report["metrics_bootstrap"]
