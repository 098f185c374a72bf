"""Request bodies checked against EventBridge's own input shapes (botocore's `events` service
model, the one boto3 and the AWS CLI are generated from), before any operation reads them.

A member of the wrong JSON type is AWS's `SerializationException` (what AWS answers when a body
does not deserialise to the operation's input); a value outside its documented length or range
(a number) is a `ValidationException` in AWS's "1 validation error detected" form. Either way a 400, never a
500 from an operation tripping over a list where it expected a string. Members the model does not
know are ignored, as AWS ignores them.
"""
from __future__ import annotations

from functools import cache
from typing import Any

from botocore.model import OperationNotFoundError, Shape
from botocore.session import get_session

# JSON type each shape type accepts (bool is an int in Python: checked apart)
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "blob": (str,), "boolean": (bool,), "integer": (int,), "long": (int,),
    "double": (int, float), "float": (int, float), "timestamp": (int, float, str),
    "list": (list,), "map": (dict,), "structure": (dict,),
}
_JSON_NAMES = {str: "STRING_VALUE", bool: "BOOLEAN_VALUE", int: "NUMBER_VALUE", float: "NUMBER_VALUE",
               list: "START_ARRAY", dict: "START_OBJECT", type(None): "VALUE_NULL"}


class ShapeError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@cache
def _model():
    return get_session().get_service_model("events")


def input_shape(operation: str) -> Shape | None:
    try:
        return _model().operation_model(operation).input_shape
    except OperationNotFoundError:
        return None


def check(operation: str, params: dict[str, Any]) -> None:
    """Raise ShapeError when `params` is not the operation's input shape."""
    shape = input_shape(operation)
    if shape is not None:
        _check(shape, params, "")


def _check(shape: Shape, value: Any, path: str) -> None:
    if value is None:
        return  # an explicit null is an absent member
    accepted = _TYPES.get(shape.type_name, (object,))
    if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
        got = _JSON_NAMES.get(type(value), type(value).__name__)
        raise ShapeError("SerializationException",
                         f"{got} can not be converted to {shape.type_name}" + (f" at '{path}'" if path else ""))
    limits = shape.metadata  # lengths are the operations' to check, with AWS's own wording for each
    if isinstance(value, (int, float)) and not isinstance(value, bool) and shape.type_name != "timestamp":
        if "min" in limits and value < limits["min"] or "max" in limits and value > limits["max"]:
            raise _constraint(path, value, f"Member must have value between {limits.get('min')} and {limits.get('max')}")
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                _check(member, value[name], f"{path}.{name}" if path else name)
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            _check(shape.member, item, f"{path}.{i + 1}")
    elif shape.type_name == "map":
        for key, item in value.items():
            _check(shape.value, item, f"{path}.{key}")


def _constraint(path: str, value: Any, rule: str) -> ShapeError:
    return ShapeError("ValidationException", f"1 validation error detected: Value '{value}' at '{path}' failed to "
                                             f"satisfy constraint: {rule}")
