"""The S3 layout of one run, and its status record.

    runs/<run-id>/trigger.json        the validated trigger, with defaults filled in
    runs/<run-id>/status.json         state of the run, updated at every step
    runs/<run-id>/manifest.json       inputs with ETags, parameters, code version, outputs
    runs/<run-id>/datasource/         arrays as .npy, datasource.json, statistics.json
    runs/<run-id>/model/              model.npz, training.json
    runs/<run-id>/predictions/        predictions.csv
    runs/<run-id>/report/report.json  the evaluation report
    runs/<run-id>/failure.json        only when the run failed

A run writes only under its own prefix, so runs never overwrite each other.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from stepml import __version__
from stepml.storage import Storage

RUNS_PREFIX = "runs/"


@dataclass(frozen=True)
class RunPaths:
    run_id: str

    @property
    def prefix(self) -> str:
        return f"{RUNS_PREFIX}{self.run_id}/"

    def key(self, relative: str) -> str:
        return self.prefix + relative

    trigger = property(lambda self: self.key("trigger.json"))
    status = property(lambda self: self.key("status.json"))
    manifest = property(lambda self: self.key("manifest.json"))
    failure = property(lambda self: self.key("failure.json"))
    datasource = property(lambda self: self.key("datasource/"))
    model = property(lambda self: self.key("model/"))
    predictions = property(lambda self: self.key("predictions/"))
    report = property(lambda self: self.key("report/report.json"))


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def write_status(storage: Storage, run_id: str, state: str, step: str, **extra) -> dict:
    """Record where the run stands; someone with only S3 access can follow it."""
    paths = RunPaths(run_id)
    previous = storage.get_json_or(paths.status, {})
    steps = previous.get("steps", [])
    steps.append({"step": step, "state": state, "at": now(), **extra})
    status = {
        "run_id": run_id,
        "state": state,
        "step": step,
        "updated_at": now(),
        "started_at": previous.get("started_at", now()),
        "code_version": __version__,
        "steps": steps,
    }
    storage.put_json(paths.status, status)
    return status
