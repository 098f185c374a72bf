"""What lets scripts written for AWS run unchanged: AWS target ARNs through api.arn_map,
ListRuleNamesByTarget, and tags (TagResource, UntagResource, ListTagsForResource) on rules and buses.

A target created with an AWS ARN (an SQS queue, a Kinesis stream, a Lambda function ...) becomes
the eventweir target its api.arn_map row names, and keeps the ARN (`aws_arn`), so ListTargetsByRule
and ListRuleNamesByTarget answer with what the script sent. Tags are stored with their rule or bus
on the control topic; rules and buses from the config file take theirs from the file.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any

from streams.config import ArnMapping
from streams.http.eventbridge.api import _validation
from streams.runtime.buses import StoredBus

# what a script most likely means by each service's ARN, for the error naming the mapping to add
SUGGESTED = {"sqs": "{type: kafka, topic: <topic>}", "kinesis": "{type: kafka, topic: <topic>}",
             "firehose": "{type: s3, bucket: <bucket>, ...}", "lambda": "{type: http, url: <https://...>}",
             "states": "{type: http, url: <https://...>}"}


def mapped_target(arn_map: list[ArnMapping], arn: str, what: str = "Target Arn",
                  uses: str = "kafka://<topic>, http(s)://<url>, log://<name>", suggested: str | None = None,
                  ) -> dict[str, Any]:
    """The target settings api.arn_map gives `arn` (less the id), or AWS's ValidationException naming the row to add.

    `what` names the member in the error, `uses` what it takes besides a mapped ARN, and `suggested`
    the row's target when the member takes only one kind (a dead-letter queue is a Kafka topic)."""
    for row in arn_map:
        if fnmatch.fnmatchcase(arn, row.arn):
            name = re.split(r"[:/]", arn)[-1]
            return {k: v.replace("{name}", name) if isinstance(v, str) else v for k, v in row.target.items()} | {
                "aws_arn": arn}
    if not arn.startswith("arn:"):
        raise _validation(f"{what} {arn!r} is not supported: use {uses}, or an AWS ARN mapped in api.arn_map.")
    service = arn.split(":")[2] if arn.count(":") >= 2 else ""
    suggested = suggested or SUGGESTED.get(service, "{type: kafka, topic: <topic>}")
    raise _validation(f"{what} {arn!r} is not mapped to an eventweir target: add it to api.arn_map in the config, "
                      f"e.g. {{arn: '{arn}', target: {suggested}}}.")


def _tags_in(value: Any) -> dict[str, str]:
    """AWS's [{Key, Value}] as a dict (shapes.check has checked the types), within AWS's lengths."""
    errors = []
    for i, tag in enumerate(value or [], 1):
        for member, limit, least in (("Key", 128, 1), ("Value", 256, 0)):
            text = tag[member]
            if len(text) > limit:
                errors.append(f"Value '{text}' at 'tags.{i}.member.{member.lower()}' failed to satisfy constraint: "
                              f"Member must have length less than or equal to {limit}")
            elif len(text) < least:
                errors.append(f"Value '{text}' at 'tags.{i}.member.{member.lower()}' failed to satisfy constraint: "
                              f"Member must have length greater than or equal to {least}")
    if errors:
        n = len(errors)
        raise _validation(f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors))
    return {t["Key"]: t["Value"] for t in value or []}


def _tags_out(tags: dict[str, str]) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


class ResourcesApi:
    """Operations given to EventBridgeApi by register() (self is the EventBridgeApi)."""

    def _resource(self: Any, arn: Any) -> tuple[str, str, str | None]:
        """("rule", name, bus) or ("bus", name, None) for a rule or bus ARN of this API; AWS's errors otherwise."""
        if not isinstance(arn, str) or not arn:
            raise _validation("Parameter ResourceARN is required.")
        rules, buses = self.config.bus.rule_arn_prefix_of(self.config.bus.name), self.config.bus.bus_arn("")
        if arn.startswith(buses):
            return "bus", self._bus(arn), None
        if arn.startswith(rules):
            bus, _, name = arn.removeprefix(rules).rpartition("/")
            rule = self._get(name, bus or None)
            return "rule", rule.name, self.config.bus_of(rule)
        raise _validation(f"ResourceARN {arn!r} is not a rule or event bus of this API ({buses}...).")

    def _tags_of(self: Any, kind: str, name: str) -> dict[str, str]:
        if kind == "rule":
            return dict(self._rules()[name].tags)
        control = self.worker.control
        stored = control.store.buses.get(name) if control is not None else None
        if stored is not None:
            return dict(stored.settings.tags)
        if name == self.config.bus.name:
            return dict(self.config.bus.tags)
        return next((dict(b.tags) for b in self.config.buses if b.name == name), {})

    async def _set_tags(self: Any, kind: str, name: str, tags: dict[str, str]) -> None:
        if kind == "rule":
            store = self._writable(name)  # a config file rule: ManagedRuleException
            await self._save(store, {**self._rules()[name].model_dump(mode="json", exclude_defaults=True), "tags": tags})
            return
        self._api_bus(name)  # a config file bus: ValidationException
        store = self._store()
        stored = store.buses[name]
        await store.put_bus(StoredBus(stored.settings.model_copy(update={"tags": tags}), stored.created, stored.modified))

    async def op_TagResource(self: Any, params: dict) -> dict:
        kind, name, _ = self._resource(params.get("ResourceARN"))
        await self._set_tags(kind, name, self._tags_of(kind, name) | _tags_in(params.get("Tags")))
        return {}

    async def op_UntagResource(self: Any, params: dict) -> dict:
        kind, name, _ = self._resource(params.get("ResourceARN"))
        drop = set(params.get("TagKeys") or [])
        tags = self._tags_of(kind, name)
        if drop & set(tags):  # untagging keys the resource does not have succeeds and writes nothing
            await self._set_tags(kind, name, {k: v for k, v in tags.items() if k not in drop})
        return {}

    async def op_ListTagsForResource(self: Any, params: dict) -> dict:
        kind, name, _ = self._resource(params.get("ResourceARN"))
        return {"Tags": _tags_out(self._tags_of(kind, name))}

    async def op_ListRuleNamesByTarget(self: Any, params: dict) -> dict:
        from streams.http.eventbridge.api import target_to_aws

        arn = params.get("TargetArn")
        if not isinstance(arn, str) or not arn:
            raise _validation("Parameter TargetArn is required.")
        bus = self._bus(params.get("EventBusName"))
        names = sorted(n for n, r in self._rules().items()
                       if self.config.bus_of(r) == bus and any(target_to_aws(t)["Arn"] == arn for t in r.targets))
        found, token = page(names, params)
        out: dict[str, Any] = {"RuleNames": found}
        if token:
            out["NextToken"] = token
        return out


def page(items: list, params: dict) -> tuple[list, str | None]:
    """One page of `items` as AWS's List operations give them: NextToken is where the next page starts."""
    token = params.get("NextToken") or "0"
    if not token.isdigit():
        raise _validation("The NextToken is not valid.")
    start, limit = int(token), params.get("Limit") or 100
    return items[start:start + limit], str(start + limit) if start + limit < len(items) else None


def tags_of_request(params: dict) -> dict[str, str]:
    """PutRule's and CreateEventBus's `Tags`."""
    return _tags_in(params.get("Tags"))
