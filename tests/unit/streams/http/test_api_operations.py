"""Operations kept in modules of their own join EventBridgeApi without replacing each other's helpers:
archives' `_arn(kind, name)` and connections' ARN helper once shared a name, and every archive call
answered 500 (a TypeError) once both were merged."""
import pytest

from streams.http.eventbridge.api import EventBridgeApi, add_operations


def test_a_helper_name_the_api_already_has_is_refused():
    class Clashing:
        def _arn(self, kind, name, uid):  # the archives' helper is already EventBridgeApi._arn
            return ""

    with pytest.raises(RuntimeError, match="Clashing._arn would replace EventBridgeApi._arn"):
        add_operations(Clashing)
    assert EventBridgeApi._arn is not Clashing._arn


def test_every_operation_module_is_in():
    for operation in ("op_CreateArchive", "op_CreateConnection", "op_ListRuleNamesByTarget", "op_TagResource"):
        assert callable(getattr(EventBridgeApi, operation))
