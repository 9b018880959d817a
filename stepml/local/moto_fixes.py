"""Where moto's Step Functions interpreter (5.2.x) does less than AWS, for the Distributed Map
the pipeline uses, and the patches that make it do what AWS does. Each is checked by a test
in tests/integration/test_distributed_map.py, so a moto upgrade that fixes (or changes) one
shows up there.

1. ``ItemReader`` with ``arn:aws:states:::s3:listObjectsV2``: AWS lists *every* object under
   the prefix (all pages) and hands each item as ``{"Etag", "Key", "LastModified" (epoch
   seconds), "Size", "StorageClass"}``; an empty prefix gives an empty Map. moto reads the first
   page only, fails on an empty prefix (no ``Contents``) and passes boto3's datetime objects,
   which cannot be serialised into the item processor's Lambda payload.
2. ``ToleratedFailurePercentage`` / ``ToleratedFailureCount`` (and their ``*Path`` forms): AWS
   fails the Map Run with ``States.ExceedToleratedFailureThreshold`` once the failed items exceed
   a threshold that is set (with neither set, the first failure fails it). moto parses them
   but ignores them ("currently have no effect"): a failed item becomes ``null`` and the Map
   succeeds, so a run would silently lose every failed shard.
3. A Fail state whose ``ErrorPath`` names a ``States.*`` error (a caught
   ``States.ExceedToleratedFailureThreshold``, ``States.Timeout`` ...): AWS fails the execution
   with that error; moto refuses the name ("Custom Error Names MUST NOT begin with 'States.'")
   and reports that refusal instead of the run's error.

``apply(exit_stack)`` installs them for the lifetime of a LocalStack.
"""

from __future__ import annotations

import contextlib
from unittest import mock

EXCEEDED = "States.ExceedToleratedFailureThreshold"


def apply(exits: contextlib.ExitStack) -> None:
    _list_objects_like_aws(exits)
    _enforce_tolerated_failures(exits)
    _fail_with_any_error_name(exits)


def _list_objects_like_aws(exits: contextlib.ExitStack) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import resource_eval_s3

    reader = resource_eval_s3.ResourceEvalS3

    def list_objects_v2(env, resource_runtime_part, state_credentials) -> None:
        s3 = reader._get_s3_client(resource_runtime_part=resource_runtime_part,
                                   state_credentials=state_credentials)
        parameters = env.stack.pop()
        items = []
        for page in s3.get_paginator("list_objects_v2").paginate(**parameters):
            items.extend(listed_item(obj) for obj in page.get("Contents", []))
        env.stack.append(items)

    exits.enter_context(mock.patch.object(reader, "_handle_list_objects_v2", staticmethod(list_objects_v2)))


def listed_item(obj: dict) -> dict:
    """One S3 object as the listObjectsV2 ItemReader hands it to the item processor on AWS."""
    return {
        "Etag": obj["ETag"],
        "Key": obj["Key"],
        "LastModified": int(obj["LastModified"].timestamp()),
        "Size": obj["Size"],
        "StorageClass": obj.get("StorageClass", "STANDARD"),
    }


def _enforce_tolerated_failures(exits: contextlib.ExitStack) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map import state_map
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as distributed)
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.tolerated_failure import (
        ToleratedFailureCountDecl, ToleratedFailurePercentageDecl)

    original_props = state_map.StateMap.from_state_props
    original_run = distributed.DistributedIterationComponent._map_run

    def from_state_props(self, state_props) -> None:
        original_props(self, state_props)
        # Which thresholds the definition sets: an unset one is not checked (0 would be).
        self.iteration_component.stepml_thresholds_set = (
            state_props.get(ToleratedFailureCountDecl) is not None,
            state_props.get(ToleratedFailurePercentageDecl) is not None,
        )

    def map_run(self, env, eval_input) -> None:
        original_run(self, env, eval_input)      # leaves the children's outputs on env.stack
        items = eval_input.map_run_record.item_counter
        failed = items.failed.get() + items.timed_out.get()
        count_set, percentage_set = getattr(self, "stepml_thresholds_set", (False, False))
        if exceeds_tolerance(failed, items.total.get(), eval_input.tolerated_failure_count,
                             eval_input.tolerated_failure_percentage, count_set, percentage_set):
            env.stack.pop()                      # a failed Map Run has no outputs
            raise _threshold_exceeded(env)

    exits.enter_context(mock.patch.object(state_map.StateMap, "from_state_props", from_state_props))
    exits.enter_context(mock.patch.object(distributed.DistributedIterationComponent, "_map_run", map_run))


def exceeds_tolerance(failed: int, total: int, count: int, percentage: float,
                      count_set: bool, percentage_set: bool) -> bool:
    """AWS's rule: fail when a threshold that is set is exceeded; with none set, at any failure."""
    if failed == 0:
        return False
    if not (count_set or percentage_set):
        return True
    over_count = count_set and failed > count
    over_percentage = percentage_set and 100.0 * failed / max(total, 1) > percentage + 1e-9
    return over_count or over_percentage


def _fail_with_any_error_name(exits: contextlib.ExitStack) -> None:
    from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
    from moto.stepfunctions.parser.asl.component.state.fail import state_fail

    class FailErrorName(ErrorName):
        """An error name as the Fail state was given it, States.* included."""

    exits.enter_context(mock.patch.object(state_fail, "CustomErrorName", FailErrorName))


def _threshold_exceeded(env):
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType)
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent, FailureEventException)
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    cause = "The specified tolerated failure threshold was exceeded"
    error_name = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
    details = EventDetails(mapRunFailedEventDetails=MapRunFailedEventDetails(error=EXCEEDED, cause=cause))
    return FailureEventException(FailureEvent(env=env, error_name=error_name, event_type=HistoryEventType.MapRunFailed,
                                              event_details=details))


__all__ = ["apply", "exceeds_tolerance", "listed_item", "EXCEEDED"]
