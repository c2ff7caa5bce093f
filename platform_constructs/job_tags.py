"""Cost-allocation tags on what the pipelines launch: their jobs and models carry the stack's tags.

CloudFormation tags the resources it creates (the stage tags every stack), but a SageMaker Pipeline
creates its jobs and models itself, at run time, from the requests in its definition. Those requests
get a ``Tags`` field holding the tags applied to the stack that owns the pipeline (``Tags.of(stage)``
and the stack's own), resolved at synth: a tag added in config reaches every job without code.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsii
from aws_cdk import Aspects, IResolvable, IResolveContext, Stack, Tag, Token
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
        # The Tag aspects on the stack and its ancestors (Tags.of(stage).add(...)), outermost first so an
        # inner one wins, then the stack's own tags. With @aws-cdk/core:explicitStackTags the stack's tag
        # manager does not receive the stage's tags, so they are read from the aspects themselves.
        values: dict[str, str] = {}
        for scope in self._stack.node.scopes:
            for aspect in Aspects.of(scope).all:
                if isinstance(aspect, Tag):
                    values[aspect.key] = aspect.value
        values.update(self._stack.tags.tag_values())
        return [{"Key": key, "Value": value} for key, value in sorted(values.items())]

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
