"""Read CloudFormation/SAM YAML, turning short-form tags (!Ref, !Sub, ...) into their long form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_FUNCTIONS = ["Base64", "Cidr", "FindInMap", "GetAZs", "ImportValue", "Join", "Select", "Split",
              "Sub", "Transform", "If", "Equals", "Not", "And", "Or", "ToJsonString", "Length"]


class CfnLoader(yaml.SafeLoader):
    """A safe loader that understands CloudFormation's intrinsic-function tags."""


def _construct(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _register() -> None:
    for name in _FUNCTIONS:
        CfnLoader.add_constructor(
            f"!{name}", lambda loader, node, name=name: {f"Fn::{name}": _construct(node, loader)}
        )
    CfnLoader.add_constructor("!Ref", lambda loader, node: {"Ref": _construct(node, loader)})
    CfnLoader.add_constructor("!Condition", lambda loader, node: {"Condition": _construct(node, loader)})

    def get_att(loader, node):
        value = _construct(node, loader)
        return {"Fn::GetAtt": value.split(".", 1) if isinstance(value, str) else value}

    CfnLoader.add_constructor("!GetAtt", get_att)


_register()


def load_template(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
