"""Resolve a SAM template into the concrete resources the local stack creates.

Physical names and ARNs are decided first, the way CloudFormation would report them, so that
intrinsic functions (!Ref, !GetAtt, !Sub, ...) resolve whatever order resources are created in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepml.local.cfn_yaml import load_template

ACCOUNT_ID = "123456789012"  # moto's default account


@dataclass
class LocalFunction:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    architectures: list[str]
    environment: dict[str, str]
    s3_events: list[dict] = field(default_factory=list)


@dataclass
class LocalStateMachine:
    logical_id: str
    name: str
    arn: str
    definition: str
    type: str


@dataclass
class ResolvedTemplate:
    bucket_logical_id: str
    bucket_name: str
    bucket_properties: dict
    functions: dict[str, LocalFunction]
    state_machine: LocalStateMachine
    outputs: dict[str, Any]


class Resolver:
    """Evaluates intrinsic functions against parameters, pseudo parameters and resources."""

    def __init__(self, template: dict, stack_name: str, region: str, parameters: dict | None = None):
        self.template = template
        self.pseudo = {
            "AWS::StackName": stack_name, "AWS::Region": region, "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/local",
        }
        self.parameters = {
            name: (parameters or {}).get(name, spec.get("Default", ""))
            for name, spec in template.get("Parameters", {}).items()
        }
        self.refs: dict[str, Any] = {}   # logical id -> what !Ref returns
        self.attrs: dict[tuple[str, str], Any] = {}  # (logical id, attribute) -> value

    def lookup(self, name: str) -> Any:
        for table in (self.pseudo, self.parameters, self.refs):
            if name in table:
                return table[name]
        raise KeyError(f"template refers to {name!r}, which the local stack cannot resolve")

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.lookup(arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not None}

    def _function(self, name: str, arg: Any) -> Any:
        if name == "GetAtt":
            logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            try:
                return self.attrs[(logical_id, attribute)]
            except KeyError:
                raise KeyError(f"!GetAtt {logical_id}.{attribute} is not known to the local stack") from None
        if name == "Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: str(self._sub_value(m.group(1), extra)), text)
        if name == "Join":
            separator, items = arg
            return separator.join(str(v) for v in self.resolve(items))
        if name == "Split":
            separator, text = arg
            return self.resolve(text).split(separator)
        if name == "Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if name == "If":
            condition, if_true, if_false = arg
            return self.resolve(if_true if self.condition(condition) else if_false)
        if name == "Equals":
            left, right = self.resolve(arg)
            return left == right
        if name == "Not":
            return not self.resolve(arg)[0]
        if name == "And":
            return all(self.resolve(arg))
        if name == "Or":
            return any(self.resolve(arg))
        raise NotImplementedError(f"Fn::{name} is not supported by the local stack")

    def _sub_value(self, name: str, extra: dict) -> Any:
        if name in extra:
            return extra[name]
        if "." in name:
            return self._function("GetAtt", name.split(".", 1))
        return self.lookup(name)


def _of_type(template: dict, type_name: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_name}


def resolve_template(root: Path, stack_name: str = "stepml-local", region: str = "us-east-1",
                     parameters: dict | None = None) -> ResolvedTemplate:
    template = load_template(root / "template.yaml")
    r = Resolver(template, stack_name, region, parameters)
    globals_ = template.get("Globals", {}).get("Function", {})

    (bucket_id, bucket), = _of_type(template, "AWS::S3::Bucket").items()
    (machine_id, machine), = _of_type(template, "AWS::Serverless::StateMachine").items()
    functions = _of_type(template, "AWS::Serverless::Function")

    # Physical names first: everything else may refer to them.
    machine_name = r.resolve(machine.get("Properties", {}).get("Name")) or f"{stack_name}-{machine_id}"
    machine_arn = f"arn:aws:states:{region}:{ACCOUNT_ID}:stateMachine:{machine_name}"
    r.refs[machine_id] = machine_arn
    r.attrs[(machine_id, "Arn")] = machine_arn
    r.attrs[(machine_id, "Name")] = machine_name
    for logical_id in functions:
        name = f"{stack_name}-{logical_id}"[:64]
        r.refs[logical_id] = name
        r.attrs[(logical_id, "Arn")] = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"
    bucket_props = bucket.get("Properties", {})
    bucket_name = r.resolve(bucket_props.get("BucketName")) or f"{stack_name}-{bucket_id}".lower()
    r.refs[bucket_id] = bucket_name
    r.attrs[(bucket_id, "Arn")] = f"arn:aws:s3:::{bucket_name}"
    for resource_id, resource in template["Resources"].items():
        r.refs.setdefault(resource_id, f"{stack_name}-{resource_id}")  # log groups, roles, layers...
        if resource["Type"] == "AWS::Logs::LogGroup":
            r.attrs[(resource_id, "Arn")] = f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{resource_id}:*"

    local_functions = {}
    for logical_id, resource in functions.items():
        props = {**globals_, **resource.get("Properties", {})}
        env = {
            **r.resolve(globals_.get("Environment", {}).get("Variables", {})),
            **r.resolve(resource.get("Properties", {}).get("Environment", {}).get("Variables", {})),
        }
        events = [r.resolve(e["Properties"]) for e in props.get("Events", {}).values() if e["Type"] == "S3"]
        local_functions[logical_id] = LocalFunction(
            logical_id=logical_id,
            name=r.refs[logical_id],
            arn=r.attrs[(logical_id, "Arn")],
            code_dir=root / r.resolve(props["CodeUri"]),
            handler=r.resolve(props["Handler"]),
            runtime=r.resolve(props["Runtime"]),
            memory_mb=int(r.resolve(props.get("MemorySize", 128))),
            timeout_s=int(r.resolve(props.get("Timeout", 3))),
            architectures=r.resolve(props.get("Architectures", ["x86_64"])),
            environment={k: str(v) for k, v in env.items()},
            s3_events=events,
        )

    machine_props = machine["Properties"]
    definition = (root / machine_props["DefinitionUri"]).read_text()
    substitutions = r.resolve(machine_props.get("DefinitionSubstitutions", {}))
    definition = re.sub(r"\$\{(\w+)\}", lambda m: _substitute(m.group(1), substitutions), definition)
    outputs = {k: r.resolve(v["Value"]) for k, v in template.get("Outputs", {}).items()}
    return ResolvedTemplate(
        bucket_logical_id=bucket_id,
        bucket_name=bucket_name,
        bucket_properties=r.resolve(bucket_props),
        functions=local_functions,
        state_machine=LocalStateMachine(machine_id, machine_name, machine_arn, definition,
                                        machine_props.get("Type", "STANDARD")),
        outputs=outputs,
    )


def _substitute(name: str, substitutions: dict) -> str:
    if name not in substitutions:
        raise KeyError(f"statemachine definition uses ${{{name}}}, which DefinitionSubstitutions lacks")
    return str(substitutions[name])
