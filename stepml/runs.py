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
import random
import time
from dataclasses import dataclass

from stepml import __version__
from stepml.errors import TransientError
from stepml.storage import Storage, WriteConflict

STATUS_WRITE_ATTEMPTS = 8

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
    """Record where the run stands; someone with only S3 access can follow it.

    A read-modify-write made safe by S3's conditional writes: the new status is written only
    if status.json is still the version that was read (or still absent), else it is read
    again and the step record re-applied, so concurrent writers (a duplicate event, an
    overlapping retry) never lose each other's records.
    """
    paths = RunPaths(run_id)
    for attempt in range(STATUS_WRITE_ATTEMPTS):
        previous, etag = storage.get_json_and_etag(paths.status)
        previous = previous or {}
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
        try:
            storage.put_json(paths.status, status, **({"if_match": etag} if etag else {"if_none_match": True}))
            return status
        except WriteConflict:
            time.sleep(random.uniform(0, 0.05 * 2 ** attempt))
    raise TransientError(f"{storage.uri(paths.status)} kept changing under {STATUS_WRITE_ATTEMPTS} attempts to update it")
