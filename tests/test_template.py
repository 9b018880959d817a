"""template.yaml: the security and wiring properties the design depends on, plus the linters.

Fast (no build, no AWS): reads the YAML, and runs cfn-lint and `sam validate --lint` as
subprocesses. `sam` comes with the dev extras (`pip install -e '.[dev]'`); without it the
sam test fails on purpose rather than skipping, so a missing tool is never mistaken for a pass.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
BUCKET_NAME_SUB = "${AWS::StackName}-${AWS::AccountId}-${AWS::Region}"
STEP_FUNCTIONS = [
    "PrepareDataFunction", "CreateDataSourceFunction", "TrainFunction", "CheckTrainingFunction",
    "BatchPredictFunction", "CheckBatchPredictionFunction", "PredictShardFunction", "ScoreFunction",
    "RecordFailureFunction",
]
ALL_FUNCTIONS = ["StartRunFunction", *STEP_FUNCTIONS]

from stepml.local.cfn_yaml import load_template  # the local stack reads the template the same way


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


def _of_type(resources: dict, type_name: str) -> dict:
    return {k: v for k, v in resources.items() if v["Type"] == type_name}


def _refs(value) -> set[str]:
    """Every logical id or parameter a value refers to through Ref, GetAtt or ${...} in Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found.update(m.split(".", 1)[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text))
                if not isinstance(arg, str):
                    found |= _refs(arg[1])
            else:
                found |= _refs(arg)
    elif isinstance(value, list):
        for item in value:
            found |= _refs(item)
    return found


def _tool_env() -> dict:
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env["SAM_CLI_TELEMETRY"] = "0"
    return env


# -- the bucket -----------------------------------------------------------------------------------
def test_one_bucket_with_deterministic_name(resources):
    buckets = _of_type(resources, "AWS::S3::Bucket")
    assert list(buckets) == ["DataBucket"]
    assert resources["DataBucket"]["Properties"]["BucketName"] == {"Fn::Sub": BUCKET_NAME_SUB}


def test_bucket_encrypted_versioned_private(resources):
    props = resources["DataBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}

    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    algorithm = rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
    assert algorithm in ("AES256", "aws:kms")
    if algorithm == "aws:kms":
        assert rule.get("BucketKeyEnabled") is True

    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True,
        "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_bucket_policy_denies_insecure_transport(resources):
    (policy,) = _of_type(resources, "AWS::S3::BucketPolicy").values()
    assert policy["Properties"]["Bucket"] == {"Ref": "DataBucket"}
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    tls_deny = [
        s for s in statements
        if s.get("Effect") == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    assert tls_deny, "no statement denies aws:SecureTransport false"
    (deny,) = tls_deny
    assert deny["Principal"] == "*"
    assert deny["Action"] in ("s3:*", ["s3:*"])
    assert {"Fn::GetAtt": ["DataBucket", "Arn"]} in deny["Resource"]
    assert {"Fn::Sub": "${DataBucket.Arn}/*"} in deny["Resource"]


def test_nothing_but_the_notification_and_bucket_policy_refers_to_the_bucket(resources):
    """The bucket notifies StartRunFunction, so functions must name it by string (no cycle)."""
    for logical_id, resource in resources.items():
        if logical_id == "DataBucket" or resource["Type"] == "AWS::S3::BucketPolicy":
            continue
        props = dict(resource.get("Properties", {}))
        props.pop("Events", None)  # the S3 event source must Ref the bucket
        assert "DataBucket" not in _refs(props), f"{logical_id} refers to DataBucket"


# -- functions ------------------------------------------------------------------------------------
def test_globals(template):
    g = template["Globals"]["Function"]
    assert g["Runtime"] == "python3.12"
    assert g["Architectures"] == ["arm64"]
    assert g["Handler"] == "app.lambda_handler"
    assert g["Tracing"] == "Active"
    assert g["Layers"] == [{"Ref": "CoreLayer"}]
    assert g["Environment"]["Variables"] == {
        "BUCKET_NAME": {"Fn::Sub": BUCKET_NAME_SUB},
        "POWERTOOLS_SERVICE_NAME": "stepml",
        "POWERTOOLS_METRICS_NAMESPACE": "StepML",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "STEPML_JOB_PREFIX": {"Ref": "AWS::StackName"},
        "STEPML_SAGEMAKER_ROLE_ARN": {"Fn::If": ["SageMakerEnabled", {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]},
                                                 {"Ref": "AWS::NoValue"}]},
    }


def test_every_function_is_arm64_python312_with_the_layer(template, resources):
    g = template["Globals"]["Function"]
    functions = _of_type(resources, "AWS::Serverless::Function")
    assert sorted(functions) == sorted(ALL_FUNCTIONS)
    for logical_id, resource in functions.items():
        props = resource["Properties"]
        assert props.get("Runtime", g["Runtime"]) == "python3.12", logical_id
        assert props.get("Architectures", g["Architectures"]) == ["arm64"], logical_id
        layers = g.get("Layers", []) + props.get("Layers", [])
        assert {"Ref": "CoreLayer"} in layers, logical_id
        assert props.get("Handler", g["Handler"]) == "app.lambda_handler", logical_id


@pytest.mark.parametrize("logical_id", ALL_FUNCTIONS)
def test_function_code_exists(resources, logical_id):
    code_dir = ROOT / resources[logical_id]["Properties"]["CodeUri"]
    app = code_dir / "app.py"
    assert app.is_file(), f"{logical_id}: {app} is missing"
    assert re.search(r"^def lambda_handler\(", app.read_text(), re.M), f"{app} has no lambda_handler"


def test_function_specific_environment(resources):
    start = resources["StartRunFunction"]["Properties"]["Environment"]["Variables"]
    assert start == {"STATE_MACHINE_ARN": {"Ref": "PipelineStateMachine"}}
    prepare = resources["PrepareDataFunction"]["Properties"]["Environment"]["Variables"]
    assert prepare == {"STEPML_MNIST_MIRRORS": {"Ref": "MnistMirrors"}}
    predict = resources["BatchPredictFunction"]["Properties"]["Environment"]["Variables"]
    assert predict == {"STEPML_MAX_PREDICT_CONCURRENCY": {"Ref": "MaxPredictConcurrency"}}


def test_function_policies_name_the_bucket_by_string(resources):
    """Every S3 grant is scoped to this stack's bucket name (prefix-scoped where possible)."""
    bucket_arn = "arn:${AWS::Partition}:s3:::" + BUCKET_NAME_SUB
    for logical_id in ALL_FUNCTIONS:
        for policy in resources[logical_id]["Properties"]["Policies"]:
            for template_name in ("S3ReadPolicy", "S3CrudPolicy", "S3WritePolicy"):
                if template_name in policy:
                    assert policy[template_name] == {"BucketName": {"Fn::Sub": BUCKET_NAME_SUB}}
            for statement in policy.get("Statement", []):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if not any(a.startswith("s3:") for a in actions):
                    continue
                targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                for target in targets:
                    text = target["Fn::Sub"]
                    assert text == bucket_arn or text.startswith(bucket_arn + "/"), (logical_id, text)
                    assert text != bucket_arn + "/*", f"{logical_id}: whole-bucket grant, scope it to a prefix"


def test_start_run_trigger_event(resources):
    props = resources["StartRunFunction"]["Properties"]
    (event,) = props["Events"].values()
    assert event["Type"] == "S3"
    assert event["Properties"]["Bucket"] == {"Ref": "DataBucket"}
    assert event["Properties"]["Events"] in ("s3:ObjectCreated:*", ["s3:ObjectCreated:*"])
    rules = event["Properties"]["Filter"]["S3Key"]["Rules"]
    assert {"Name": "prefix", "Value": "triggers/"} in rules
    assert {"Name": "suffix", "Value": ".json"} in rules
    start_policies = props["Policies"]
    assert {"StepFunctionsExecutionPolicy": {
        "StateMachineName": {"Fn::GetAtt": ["PipelineStateMachine", "Name"]}}} in start_policies


# -- the layer ------------------------------------------------------------------------------------
def test_core_layer_is_a_makefile_build_for_arm64(resources):
    layer = resources["CoreLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Metadata"]["BuildArchitecture"] == "arm64"
    content = ROOT / layer["Properties"]["ContentUri"]
    assert (content / "__init__.py").is_file(), "ContentUri must be the stepml package directory"
    makefile = (ROOT / layer["Metadata"].get("ContextPath", layer["Properties"]["ContentUri"]) / "Makefile")
    text = makefile.read_text()
    assert re.search(r"^build-CoreLayer:", text, re.M)
    assert "--platform" in text and "aarch64" in text and "--only-binary=:all:" in text
    requirements = (makefile.parent / "requirements.txt").read_text().lower()
    assert "boto3" not in re.sub(r"#.*", "", requirements)


# -- the state machine ----------------------------------------------------------------------------
def test_state_machine_substitutions_point_at_the_step_functions(resources):
    machine = resources["PipelineStateMachine"]
    props = machine["Properties"]
    assert machine["Type"] == "AWS::Serverless::StateMachine"
    assert props["Type"] == "STANDARD"
    subs = dict(props["DefinitionSubstitutions"])
    assert subs.pop("DataBucketName") == {"Fn::Sub": "${AWS::StackName}-${AWS::AccountId}-${AWS::Region}"}
    assert sorted(subs) == sorted(f"{name}Arn" for name in STEP_FUNCTIONS)
    for key, value in subs.items():
        target = key[: -len("Arn")]
        assert value == {"Fn::GetAtt": [target, "Arn"]}, key
        assert resources[target]["Type"] == "AWS::Serverless::Function"
    invoked = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in props["Policies"]
               if "LambdaInvokePolicy" in p}
    assert invoked == set(STEP_FUNCTIONS)


def test_definition_uses_only_known_substitutions(resources):
    props = resources["PipelineStateMachine"]["Properties"]
    definition_path = ROOT / props["DefinitionUri"]
    text = definition_path.read_text()
    json.loads(text)  # JSONPath ASL, plain JSON
    used = set(re.findall(r"\$\{(\w+)\}", text))
    assert used <= set(props["DefinitionSubstitutions"]), used - set(props["DefinitionSubstitutions"])


def test_state_machine_logging_and_tracing(resources):
    props = resources["PipelineStateMachine"]["Properties"]
    assert props["Tracing"] == {"Enabled": True}
    logging = props["Logging"]
    assert logging["Level"] in ("ERROR", "ALL")
    assert logging["IncludeExecutionData"] is False
    (destination,) = logging["Destinations"]
    log_group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    log_group = resources[log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["LogGroupName"]["Fn::Sub"].startswith("/aws/vendedlogs/states/")
    assert "RetentionInDays" in log_group["Properties"]


def test_outputs(template):
    assert {"BucketName", "StateMachineArn", "StateMachineName"} <= set(template["Outputs"])


# -- linters --------------------------------------------------------------------------------------
def _cfn_lint_command() -> list[str]:
    exe = Path(sys.executable).parent / "cfn-lint"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("cfn-lint")
    return [found] if found else [sys.executable, "-m", "cfnlint"]


def test_cfn_lint_is_clean():
    result = subprocess.run(
        [*_cfn_lint_command(), str(TEMPLATE)],
        cwd=ROOT, env=_tool_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_sam_validate_lint_is_clean():
    sam = Path(sys.executable).parent / "sam"
    if not sam.exists():
        pytest.fail(f"`sam` is not installed next to {sys.executable}: install the dev extras "
                    f"(pip install -e '.[dev]', which brings aws-sam-cli)")
    result = subprocess.run(
        [str(sam), "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=ROOT, env=_tool_env(), capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "is a valid SAM Template" in output, output


def _conditional_statements(policy: dict) -> list[tuple[str, dict]]:
    """(condition, statement) of every `!If [Condition, statement, !Ref AWS::NoValue]` item."""
    out = []
    for item in policy["Properties"]["PolicyDocument"]["Statement"]:
        if "Fn::If" in item:
            condition, statement, otherwise = item["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
            out.append((condition, statement))
    return out


def test_managed_engines_are_off_by_default_and_least_privilege_when_on(template, resources):
    assert template["Parameters"]["EnableSageMaker"]["Default"] == "false"
    assert template["Parameters"]["EnableAmazonML"]["Default"] == "false"
    assert resources["SageMakerExecutionRole"]["Condition"] == "SageMakerEnabled"
    trust = resources["SageMakerExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [t["Principal"] for t in trust] == [{"Service": "sagemaker.amazonaws.com"}]

    policies = {k: v for k, v in _of_type(resources, "AWS::IAM::Policy").items()}
    assert set(policies) == {"TrainEnginesPolicy", "CheckTrainingEnginesPolicy", "BatchPredictEnginesPolicy",
                             "CheckBatchPredictionEnginesPolicy"}
    for name, policy in policies.items():
        assert policy["Condition"] == "ManagedEnginesEnabled"
        for condition, statement in _conditional_statements(policy):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            service = {a.split(":")[0] for a in actions}
            assert len(service) == 1 and "*" not in "".join(actions), (name, actions)
            if service == {"iam"}:          # PassRole: only the job role, only to SageMaker
                assert actions == ["iam:PassRole"] and condition == "SageMakerEnabled"
                assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
                assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
                continue
            assert condition == {"sagemaker": "SageMakerEnabled", "machinelearning": "AmazonMLEnabled"}[service.pop()]
            for resource in statement["Resource"]:   # only jobs and objects named after this stack
                assert resource["Fn::Sub"].endswith("/${AWS::StackName}-*"), resource


def test_the_amazon_ml_service_may_write_only_its_batch_predictions(resources):
    (policy,) = _of_type(resources, "AWS::S3::BucketPolicy").values()
    statements = dict(_conditional_statements(policy) and [(s["Sid"], s) for _, s in _conditional_statements(policy)])
    assert set(statements) == {"AmazonMLReadsInputs", "AmazonMLWritesBatchPredictions"}
    for statement in statements.values():
        assert statement["Principal"] == {"Service": "machinelearning.amazonaws.com"}
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    writes = statements["AmazonMLWritesBatchPredictions"]
    assert writes["Resource"] == {"Fn::Sub": "${DataBucket.Arn}/runs/*/predictions/amazonml/*"}
    assert set(statements["AmazonMLReadsInputs"]["Action"]) == {"s3:GetObject", "s3:ListBucket"}


def test_each_function_may_make_the_sagemaker_calls_its_step_makes_on_the_right_resource_type(resources):
    """What each engine call needs (Service Authorization Reference): Create/Describe/Stop*Job on
    the job's own ARN type; CreateModel on model/ (and iam:PassRole); CreateTransformJob only on
    transform-job/ (the model is a condition key, sagemaker:ModelArn, not a resource). Stop*: a
    retried Train / BatchPredict stops its earlier attempt's job, a PollTimeout the run's job."""
    needs = {
        "TrainEnginesPolicy": {"CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob"},
        "CheckTrainingEnginesPolicy": {"DescribeTrainingJob", "StopTrainingJob"},
        "BatchPredictEnginesPolicy": {"CreateModel", "CreateTransformJob", "DescribeTransformJob", "StopTransformJob"},
        "CheckBatchPredictionEnginesPolicy": {"DescribeTransformJob", "StopTransformJob"},
    }
    resource_type = {"CreateModel": "model"}
    for name, actions in needs.items():
        granted: dict[str, set[str]] = {}
        for condition, statement in _conditional_statements(resources[name]):
            if condition != "SageMakerEnabled" or statement["Action"] == "iam:PassRole":
                continue
            for action in statement["Action"]:
                granted.setdefault(action.removeprefix("sagemaker:"), set()).update(
                    re.search(r":([a-z-]+)/\$\{AWS::StackName\}-\*$", r["Fn::Sub"]).group(1)
                    for r in statement["Resource"])
        assert set(granted) == actions, name
        for action, types in granted.items():
            wanted = resource_type.get(action, "training-job" if "Training" in action else "transform-job")
            assert wanted in types, (name, action, types)


def test_a_trigger_event_start_run_cannot_handle_is_kept_not_lost(resources):
    props = resources["StartRunFunction"]["Properties"]
    assert props["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["StartRunDeadLetterQueue", "Arn"]}}
    assert props["EventInvokeConfig"]["MaximumRetryAttempts"] == 2
    queue = resources["StartRunDeadLetterQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True and queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    [deny] = resources["StartRunDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    alarm = resources["UnhandledTriggerAlarm"]["Properties"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Threshold"] == 1


# -- observability --------------------------------------------------------------------------------
def test_every_function_and_the_state_machine_are_traced(template, resources):
    g = template["Globals"]["Function"]
    functions = _of_type(resources, "AWS::Serverless::Function")
    assert functions
    for logical_id, resource in functions.items():
        assert resource["Properties"].get("Tracing", g.get("Tracing")) == "Active", logical_id
    assert resources["PipelineStateMachine"]["Properties"]["Tracing"] == {"Enabled": True}


def test_the_sam_transform_gives_every_traced_role_x_ray_write_access(template, monkeypatch):
    """SAM adds the X-Ray permissions for Tracing: Active / Enabled: check its output (offline)."""
    import copy

    from samtranslator.translator.transform import transform

    class PolicyLoader:  # the managed policies SAM may look up by name (it would ask IAM)
        def load(self):
            return {"AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"}

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    document = copy.deepcopy(template)
    for resource in document["Resources"].values():  # local paths are for `sam build`; the transform wants S3
        for field in ("CodeUri", "DefinitionUri", "ContentUri"):
            if field in resource.get("Properties", {}):
                resource["Properties"][field] = "s3://bucket/key"
    out = transform(document, {}, PolicyLoader())["Resources"]
    traced = {k: v for k, v in out.items() if v["Type"] == "AWS::Lambda::Function"}
    assert len(traced) == len(_of_type(template["Resources"], "AWS::Serverless::Function"))
    for logical_id, function in traced.items():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}, logical_id
    machine = out["PipelineStateMachine"]["Properties"]
    assert machine["TracingConfiguration"] == {"Enabled": True}
    roles = [function["Properties"]["Role"]["Fn::GetAtt"][0] for function in traced.values()]
    roles.append(machine["RoleArn"]["Fn::GetAtt"][0])
    for role in roles:
        assert any("AWSXrayWriteOnlyAccess" in json.dumps(arn) for arn in out[role]["Properties"]["ManagedPolicyArns"]), role


def test_an_alarm_fires_on_any_failed_execution_of_the_state_machine(template, resources):
    alarms = {k: v["Properties"] for k, v in _of_type(resources, "AWS::CloudWatch::Alarm").items()
              if v["Properties"].get("MetricName") == "ExecutionsFailed"}
    assert list(alarms) == ["PipelineFailedAlarm"]
    alarm = alarms["PipelineFailedAlarm"]
    assert alarm["Namespace"] == "AWS/States"
    assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "PipelineStateMachine"}}]
    assert resources["PipelineStateMachine"]["Type"] == "AWS::Serverless::StateMachine"  # Ref gives its ARN
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert alarm["TreatMissingData"] == "notBreaching"
    assert template["Outputs"]["PipelineFailedAlarmName"]["Value"] == {"Ref": "PipelineFailedAlarm"}


def test_the_alarms_notify_the_optional_sns_topic(template, resources):
    parameter = template["Parameters"]["AlarmTopicArn"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("arn:aws:sns:us-east-1:123456789012:stepml-alarms")
    assert not pattern.fullmatch("stepml-alarms")
    assert template["Conditions"]["AlarmTopicGiven"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    notify = {"Fn::If": ["AlarmTopicGiven", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for logical_id in ("PipelineFailedAlarm", "UnhandledTriggerAlarm"):
        props = resources[logical_id]["Properties"]
        assert props["AlarmActions"] == notify and props["OKActions"] == notify, logical_id


def test_the_distributed_map_may_start_its_children_list_the_shards_and_write_its_results_only(template, resources):
    props = resources["PipelineStateMachine"]["Properties"]
    assert props["Name"] == {"Fn::Sub": "${AWS::StackName}-pipeline"}
    statements = {st["Sid"]: st for p in props["Policies"] for st in p.get("Statement", [])}
    machine = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-pipeline"
    assert statements["DistributedMapChildExecutions"]["Action"] == "states:StartExecution"
    assert statements["DistributedMapChildExecutions"]["Resource"] == {"Fn::Sub": machine}
    listing = statements["DistributedMapListShards"]
    assert listing["Action"] == "s3:ListBucket" and listing["Condition"] == {"StringLike": {"s3:prefix": "runs/*"}}
    results = statements["DistributedMapResults"]["Resource"]["Fn::Sub"]
    assert results.endswith("/map-runs/*")
    invoked = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in props["Policies"] if "LambdaInvokePolicy" in p}
    assert "PredictShardFunction" in invoked
    ceiling = template["Parameters"]["MaxPredictConcurrency"]
    assert ceiling["Default"] == 100 and ceiling["MaxValue"] == 1000
    rules = {r["Id"]: r for r in resources["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireMapRunResults"]["Prefix"] == "map-runs/"


def test_a_shard_worker_reads_and_writes_runs_only(resources):
    (statement_block,) = resources["PredictShardFunction"]["Properties"]["Policies"]
    targets = [st["Resource"]["Fn::Sub"] for st in statement_block["Statement"] if "s3:PutObject" in st["Action"]]
    assert targets == ["arn:${AWS::Partition}:s3:::" + BUCKET_NAME_SUB + "/runs/*/predictions/parts/*"]
