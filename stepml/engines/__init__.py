"""Engines: one interface, chosen by the trigger's ``model.engine``.

An engine turns a datasource into a model and a model into batch predictions. Jobs are
asynchronous in the interface (start_* then describe_* until COMPLETED or FAILED) so that a
managed service fits behind it; the builtin engine simply finishes inside start_*.
Every method takes and returns plain, JSON-serialisable dicts.
"""

from __future__ import annotations

from typing import Protocol

COMPLETED, FAILED, IN_PROGRESS = "COMPLETED", "FAILED", "IN_PROGRESS"


class Engine(Protocol):
    def start_training(self, job: dict) -> dict: ...

    def describe_training(self, job: dict) -> dict: ...

    def start_batch_prediction(self, job: dict) -> dict: ...

    def describe_batch_prediction(self, job: dict) -> dict: ...


def get_engine(name: str, storage) -> Engine:
    if name == "builtin":
        from stepml.engines.builtin import BuiltinEngine

        return BuiltinEngine(storage)
    raise ValueError(f"unknown engine {name!r}; available: builtin")
