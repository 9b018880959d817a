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


ENGINES = ("builtin", "sagemaker", "amazonml")


def get_engine(name: str, storage) -> Engine:
    if name == "builtin":
        from stepml.engines.builtin import BuiltinEngine

        return BuiltinEngine(storage)
    if name == "sagemaker":
        from stepml.engines.sagemaker import SageMakerEngine

        return SageMakerEngine(storage)
    if name == "amazonml":
        from stepml.engines.amazonml import AmazonMLEngine

        return AmazonMLEngine(storage)
    raise ValueError(f"unknown engine {name!r}; available: {', '.join(ENGINES)}")


def check_parameters(engine: str, algorithm: str, parameters: dict, model_type: str) -> dict:
    """A managed engine's check of a trigger's parameters; returns them normalised."""
    if engine == "sagemaker":
        from stepml.engines.sagemaker import check_parameters as check

        return check(algorithm, parameters, model_type)
    if engine == "amazonml":
        from stepml.engines.amazonml import check_parameters as check

        return check(parameters, model_type)
    raise ValueError(f"engine {engine!r} has no parameter check here")
