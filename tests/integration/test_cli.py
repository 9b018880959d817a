"""`stepml local run` as a user runs it: files put, trigger uploaded, states printed, results copied."""

import json

from stepml.cli import main


def test_local_run_prints_the_states_copies_results_and_exits_0(tmp_path, synthetic_files, capsys):
    puts = []
    for name, body in synthetic_files.items():
        path = tmp_path / f"{name}.gz"
        path.write_bytes(body)
        puts += ["--put", f"{path}:inputs/mnist/{name}.gz"]
    trigger = tmp_path / "my-run.json"
    trigger.write_text(json.dumps({
        "version": "1", "dataset": {"kind": "mnist", "source": "s3", "s3_prefix": "inputs/mnist/"},
        "model": {"type": "MULTICLASS", "algorithm": "linear"}}))

    code = main(["local", "run", str(trigger), *puts, "--out", str(tmp_path / "out")])

    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "-> Train" in printed and "<- Score" in printed and "accuracy" in printed
    (run_dir,) = (tmp_path / "out").iterdir()
    assert json.loads((run_dir / "report/report.json").read_text())["status"] == "SUCCEEDED"


def test_local_run_exits_1_on_a_rejected_trigger(tmp_path, capsys):
    trigger = tmp_path / "bad.json"
    trigger.write_text('{"version": "1"}')
    assert main(["local", "run", str(trigger), "--out", str(tmp_path)]) == 1
    assert "rejected" in capsys.readouterr().out


def test_bad_put_spec_is_a_usage_error(tmp_path, capsys):
    trigger = tmp_path / "t.json"
    trigger.write_text("{}")
    assert main(["local", "run", str(trigger), "--put", "no-colon"]) == 2
    assert "LOCAL_PATH:S3_KEY" in capsys.readouterr().err


def test_the_demo_with_default_arguments_builds_a_valid_trigger():
    from stepml.cli import build_parser, demo_trigger
    from stepml.trigger import validate

    args = build_parser().parse_args(["demo"])
    trigger = validate(demo_trigger(args.preset, args.seed, {"kind": "mnist"}))
    assert trigger["model"]["preset"] == "balanced" and trigger["model"]["algorithm"] == "mlp"
    assert trigger["name"] == "mnist-balanced"


def test_the_demo_twice_reuses_the_first_runs_datasource_and_prints_both_times(tmp_path, synthetic_files,
                                                                              monkeypatch, capsys):
    from functools import partial

    from stepml import mnist

    for name, body in synthetic_files.items():
        (tmp_path / f"{name}.gz").write_bytes(body)
    # synthetic digits are not MNIST: skip the SHA-256 check that real files must pass
    monkeypatch.setattr(mnist, "load_local_dir", partial(mnist.load_local_dir, verify=False))

    code = main(["demo", "--preset", "fast", "--twice", "--mnist-dir", str(tmp_path), "--out", str(tmp_path / "out")])

    printed = capsys.readouterr().out
    assert code == 0, printed
    reports = {p.name: json.loads((p / "report/report.json").read_text()) for p in (tmp_path / "out").iterdir()}
    assert len(reports) == 2
    (first, _), (second, report) = sorted(reports.items(), key=lambda r: r[1]["dataset"]["reused_from"] is not None)
    assert report["dataset"]["reused_from"] == first
    assert f"reused the datasource of {first}" in printed
    assert "CreateDataSource" in printed.split("second run:")[1]
    assert "Amazon ML, 2016: 91.6%, about $2.80, about 3 hours; this run:" in printed
    assert "Step Functions state transitions" in printed      # the cost, line by line
