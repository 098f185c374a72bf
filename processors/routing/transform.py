"""Target input: Input (constant JSON), InputPath, or InputTransformer, rendered as AWS does.

Template rules, as recorded against AWS:
- every placeholder (`<name>`) must be an InputPathsMap key or a predefined one (aws.events.*),
  else PutTargets refuses the template.
- a template starting with `{` or `[` is a JSON template. A placeholder outside quotes becomes
  the value's JSON; inside quotes a string is inserted (escaped) and other values as their JSON
  text. A path missing from the event is the empty string (`""` outside quotes). The result must
  be valid JSON, else the event is not delivered (e.g. a list placed inside quotes).
- any other template is a string template and is delivered as text; it must start with `"`.
  Strings are inserted raw, missing values as nothing, lists and objects without quotes:
  [a,b] and {k:v}.
"""
from __future__ import annotations

import re
from typing import Any, TypeAlias

import orjson

from .errors import ValidationException
from .jsonpath import MISSING, Steps, compile_path, resolve

MAX_PATHS = 100
MAX_TEMPLATE = 8192
_PLACEHOLDER = re.compile(r"<([^<>\s]+)>")
_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
_PREDEFINED = ("aws.events.rule-name", "aws.events.rule-arn", "aws.events.event",
               "aws.events.event.json", "aws.events.event.ingestion-time")
# <aws.events.event>: the envelope without `detail`, `detail-type` as `detailType`, in AWS's order
_EVENT_FIELDS = ("id", "account", "detail-type", "time", "source", "region", "resources", "version")

# a template piece: literal text, or a placeholder (name, inside_quotes)
Piece: TypeAlias = str | tuple[str, bool]


def compile_target_input(input: str | None = None, input_path: str | None = None,
                         input_transformer: dict[str, Any] | None = None, *, target_id: str) -> TargetInput:
    """`target_id`: the target's Id, which AWS's errors name."""
    given = [x is not None for x in (input, input_path, input_transformer)]
    if sum(given) > 1:
        raise ValidationException(
            f"Only one of Input, InputPath, or InputTransformer must be provided for target {target_id}.")
    if input is not None:
        return _Constant(input)
    if input_path is not None:
        return _Path(input_path)
    if input_transformer is not None:
        return _Transformer(input_transformer, target_id)
    return _Whole()


class TargetInput:
    def render(self, event: dict[str, Any], rule_name: str, rule_arn: str, ingestion_time: str) -> bytes | None:
        """The body delivered to the target, or None when AWS would not deliver it."""
        raise NotImplementedError


class _Whole(TargetInput):
    def render(self, event: dict[str, Any], rule_name: str, rule_arn: str, ingestion_time: str) -> bytes | None:
        return orjson.dumps(event)


class _Constant(TargetInput):
    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise ValidationException("Input must be a string holding valid JSON text.")
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ValidationException("Input is not valid JSON text.") from None
        self.body = text.encode()

    def render(self, event: dict[str, Any], rule_name: str, rule_arn: str, ingestion_time: str) -> bytes | None:
        return self.body


class _Path(TargetInput):
    def __init__(self, path: str) -> None:
        self.steps = compile_path(path, "InputPath")

    def render(self, event: dict[str, Any], rule_name: str, rule_arn: str, ingestion_time: str) -> bytes | None:
        v = resolve(event, self.steps)
        return None if v is MISSING else orjson.dumps(v)


def _unquoted(v: Any) -> str:
    """AWS's text for a value in a string template: no quotes around strings or keys."""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + ",".join(_unquoted(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_unquoted(x)}" for k, x in v.items()) + "}"
    return orjson.dumps(v).decode()


class _Transformer(TargetInput):
    def __init__(self, spec: dict[str, Any], target_id: str) -> None:
        if not isinstance(spec, dict):
            raise ValidationException("InputTransformer must be an object with InputTemplate.")
        template = spec.get("InputTemplate")
        paths = spec.get("InputPathsMap") or {}
        if not isinstance(template, str):
            raise ValidationException("InputTransformer.InputTemplate is required and must be a string.")
        if len(template) > MAX_TEMPLATE:
            raise ValidationException(
                f"1 validation error detected: Value at 'inputTransformer.inputTemplate' failed to "
                f"satisfy constraint: Member must have length less than or equal to {MAX_TEMPLATE}")
        if not isinstance(paths, dict):
            raise ValidationException("InputTransformer.InputPathsMap must be an object.")
        if len(paths) > MAX_PATHS:
            raise ValidationException(
                f"1 validation error detected: Value at 'inputTransformer.inputPathsMap' failed to "
                f"satisfy constraint: Map must have length less than or equal to {MAX_PATHS}")
        self.paths: dict[str, Steps] = {}
        for key, path in paths.items():
            if not _KEY.match(key):
                raise ValidationException(
                    f"InputPathsMap key {key!r} is not valid: use letters, digits, '_' and '-'.")
            if key.startswith("aws."):
                raise ValidationException(f"InputPathsMap key {key!r} uses the reserved aws. prefix.")
            self.paths[key] = compile_path(path, f"InputPathsMap value for {key}")
        self.json = template.lstrip()[:1] in ("{", "[")
        self.pieces = self._split(template, target_id)

    def _split(self, template: str, target_id: str) -> list[Piece]:
        """Literal text and (name, inside_quotes) placeholders, in order."""
        known = set(self.paths) | set(_PREDEFINED)
        pieces: list[Piece] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(template):
            if m.group(1) not in known:  # AWS's PutTargets refuses the template
                raise ValidationException(
                    f"InputTemplate for target {target_id} contains invalid placeholder {m.group(1)}.")
            pieces.append(template[pos:m.start()])
            pieces.append((m.group(1), _inside_quotes(template, m.start())))
            pos = m.end()
        pieces.append(template[pos:])
        return pieces

    def _value(self, name: str, event: dict[str, Any], rule_name: str, rule_arn: str, ingestion_time: str) -> Any:
        if name in self.paths:
            return resolve(event, self.paths[name])
        if name == "aws.events.rule-name":
            return rule_name
        if name == "aws.events.rule-arn":
            return rule_arn
        if name == "aws.events.event.ingestion-time":
            return ingestion_time
        if name == "aws.events.event":
            return {"detailType" if k == "detail-type" else k: event[k] for k in _EVENT_FIELDS if k in event}
        return event  # aws.events.event.json

    def render(self, event: dict[str, Any], rule_name: str, rule_arn: str, ingestion_time: str) -> bytes | None:
        out: list[str] = []
        for piece in self.pieces:
            if type(piece) is str:
                out.append(piece)
                continue
            name, quoted = piece  # type: ignore[str-unpack]  # a placeholder: str pieces were taken above
            v = self._value(name, event, rule_name, rule_arn, ingestion_time)
            if not self.json:
                out.append("" if v is MISSING else _unquoted(v))
            elif v is MISSING:  # the empty string: nothing inside quotes, "" outside (not null)
                out.append("" if quoted else '""')
            elif quoted and isinstance(v, str):
                out.append(orjson.dumps(v).decode()[1:-1])
            else:
                out.append(orjson.dumps(v).decode())
        text = "".join(out)
        if self.json:
            try:
                orjson.loads(text)
            except orjson.JSONDecodeError:
                return None
        elif not text.lstrip().startswith('"'):
            return None
        return text.encode()


def _inside_quotes(text: str, end: int) -> bool:
    """Whether position `end` of a JSON-ish template lies inside a string literal."""
    inside = False
    i = 0
    while i < end:
        c = text[i]
        if c == "\\" and inside:
            i += 2
            continue
        if c == '"':
            inside = not inside
        i += 1
    return inside
