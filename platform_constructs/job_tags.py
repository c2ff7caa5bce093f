"""Cost-allocation tags on what the pipelines launch: their jobs and models carry the stack's tags.

CloudFormation tags the resources it creates (the stage tags every stack), but a SageMaker Pipeline
creates its jobs and models itself, at run time, from the requests in its definition. Those requests
get a ``Tags`` field holding the tags of the stack that owns the pipeline, resolved at synth, after
``Tags.of(stage)`` has tagged the stack: a tag added in config reaches every job without code.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsii
from aws_cdk import IResolvable, IResolveContext, Stack, Token
from constructs import IConstruct

# Step types whose Arguments are a SageMaker Create* request with a Tags member.
TAGGED_STEP_TYPES = ("Training", "Tuning", "Processing", "Transform", "Model")


@jsii.implements(IResolvable)
class StackTags:
    """The tags of ``scope``'s stack as SageMaker ``Tags`` (``[{"Key": ..., "Value": ...}]``), sorted."""

    def __init__(self, scope: IConstruct) -> None:
        self._stack = Stack.of(scope)

    @property
    def creation_stack(self) -> list[str]:
        return []

    @property
    def type_hint(self) -> None:
        return None

    def resolve(self, _context: IResolveContext) -> list[dict[str, str]]:
        return [{"Key": key, "Value": value} for key, value in sorted(self._stack.tags.tag_values().items())]

    def to_string(self) -> str:
        return Token.as_string(self)


def with_job_tags(scope: IConstruct, definition: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``definition`` in which every job and model step's request carries the stack's tags."""
    tagged = copy.deepcopy(dict(definition))
    tags = StackTags(scope)
    _tag_steps(tagged.get("Steps") or [], tags)
    return tagged


def _tag_steps(steps: list[dict[str, Any]], tags: StackTags) -> None:
    for step in steps:
        arguments = step.get("Arguments")
        if not isinstance(arguments, dict):
            continue
        if step.get("Type") in TAGGED_STEP_TYPES:
            arguments["Tags"] = tags
        elif step.get("Type") == "Condition":
            _tag_steps(arguments.get("IfSteps") or [], tags)
            _tag_steps(arguments.get("ElseSteps") or [], tags)
