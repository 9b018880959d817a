"""The builtin engine's tabular path: from a CSV datasource's typed rows to model features (the
recipe), from the trigger's parameters (ours and Amazon ML's ``sgd.*``) to an estimator, and
from a saved model back to predictions on the evaluation rows.
"""

from __future__ import annotations

import numpy as np

from stepml import models
from stepml.models.amazonml_params import max_sparse_columns
from stepml.tabular.datasource import target_codes
from stepml.tabular.features import FeatureMatrix
from stepml.tabular.recipe import parse_recipe
from stepml.tabular.schema import parse_schema
from stepml.tabular.table import Table
from stepml.tabular.transforms import FeaturePipeline

OBJECTIVES = {"BINARY": "binary", "MULTICLASS": "multiclass", "REGRESSION": "regression"}


def make_model(descriptor: dict, algorithm: str, parameters: dict, seed: int):
    """The estimator for this datasource's model type (``sgd.*`` parameters are translated by
    :func:`stepml.models.make_model`)."""
    params = {**parameters, "objective": OBJECTIVES[descriptor["model_type"]]}
    if descriptor["n_classes"] is not None:
        params["n_classes"] = descriptor["n_classes"]
    return models.make_model(algorithm, params, seed=seed)


def fit_pipeline(descriptor: dict, table: Table, max_model_bytes: int | None) -> FeaturePipeline:
    """The recipe, fitted on the training rows; with Amazon ML's ``sgd.maxMLModelSizeInBytes``
    the rarest sparse features are dropped so that all the weights fit in it."""
    schema = parse_schema(descriptor["schema"])
    recipe = parse_recipe(descriptor["recipe"], schema)
    outputs = descriptor["n_classes"] or 1
    pipeline = FeaturePipeline(recipe, max_sparse_columns=max_sparse_columns(max_model_bytes, 0, outputs)).fit(table)
    if max_model_bytes is not None and pipeline.n_dense:   # leave room for the dense weights too
        cap = max_sparse_columns(max_model_bytes, pipeline.n_dense, outputs)
        if pipeline.n_sparse > cap:
            pipeline = FeaturePipeline(recipe, max_sparse_columns=cap).fit(table)
    return pipeline


def training_data(descriptor: dict, table: Table, model) -> tuple:
    """(features, target, fitted pipeline) of the training rows, for ``model``."""
    pipeline = fit_pipeline(descriptor, table, getattr(model, "max_model_bytes", None))
    y = target_codes(table, descriptor["model_type"], descriptor["class_labels"])
    return pipeline.transform(table), y, pipeline


def predict(model, pipeline: FeaturePipeline, table: Table, model_type: str) -> np.ndarray:
    """Class probabilities (n, k), or values (n,) for a regression model."""
    features = pipeline.transform(table)
    return model.predict(features) if model_type == "REGRESSION" else model.predict_proba(features)


#: The SGD step a linear model takes grows with the squared length of its feature rows,
#: which a recipe can make anything from 2 (a few normalised numbers) to 785 (MNIST's 784
#: quantile bins plus the bias). Unless the trigger sets ``learning_rate``, it is chosen
#: from the data: for squared loss, this share of the stable step 2 / (largest curvature)
#: ~ 1 / E||x||², beyond which it diverges; ...
REGRESSION_STEP_SHARE = 0.5
#: ... for cross-entropy (which saturates rather than diverges), this over E||x||², capped
#: at the linear algorithm's default of 1.0: it gives 1.0 on raw MNIST pixels (E||x||² ~ 100),
#: where 1.0 was tuned, and ~0.13 on the 2016 recipe's quantile bins, where 0.1-0.2 did best.
CLASSIFICATION_STEP_SCALE = 100.0


def mean_squared_row_norm(features: FeatureMatrix) -> float:
    """E||x||² over the rows, with the bias's constant 1 included."""
    norms = np.einsum("ij,ij->i", features.dense, features.dense) + \
        np.einsum("ij,ij->i", features.value, features.value)
    return float(norms.mean()) + 1.0


def choose_learning_rate(model, parameters: dict, features: FeatureMatrix) -> float | None:
    """Set the linear model's learning rate from the data unless the trigger gave one."""
    if model.algorithm != "linear" or "learning_rate" in parameters:
        return None
    norm = mean_squared_row_norm(features)
    if model.objective == "regression":
        rate = REGRESSION_STEP_SHARE / norm
    else:
        rate = min(1.0, CLASSIFICATION_STEP_SCALE / norm)
    model.set_params(learning_rate=rate)
    return rate
