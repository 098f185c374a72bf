"""Connection secrets as the control topic holds them: sealed under routing.secrets_key and bound to
their connection, or a reference to the workers' environment."""
from __future__ import annotations

import base64

import orjson
import pytest

from streams.targets.connections import Sealer, SecretError

KEY = base64.b64encode(b"a" * 32).decode()
OTHER_KEY = base64.b64encode(b"b" * 32).decode()


def test_a_secret_by_value_is_encrypted_and_opens_only_for_its_connection_under_its_key():
    sealed = Sealer(KEY).seal("s3cr3t-value", "connection/crm")
    assert b"s3cr3t-value" not in orjson.dumps(sealed)
    assert Sealer(KEY).open(sealed, "connection/crm") == "s3cr3t-value"
    with pytest.raises(SecretError, match="does not open with routing.secrets_key"):
        Sealer(OTHER_KEY).open(sealed, "connection/crm")
    with pytest.raises(SecretError, match="does not open"):  # copied to another connection's record
        Sealer(KEY).open(sealed, "connection/other")
    with pytest.raises(SecretError, match="routing.secrets_key is not set") as err:
        Sealer(None).open(sealed, "connection/crm")
    assert "s3cr3t" not in str(err.value)


def test_without_a_key_only_references_are_taken_and_they_are_read_when_needed(tmp_path):
    with pytest.raises(SecretError, match="needs routing.secrets_key"):
        Sealer(None).seal("s3cr3t-value", "connection/crm")
    sealer = Sealer(None, environ={"CRM_SECRET": "from-env"})
    ref = sealer.seal("${CRM_SECRET}", "connection/crm")
    assert ref == {"ref": "CRM_SECRET"}
    assert sealer.open(ref, "connection/crm") == "from-env"
    mounted = tmp_path / "secret"
    mounted.write_text("from-file\n")
    assert Sealer(None, environ={"CRM_SECRET_FILE": str(mounted)}).open(ref, "connection/crm") == "from-file"
    with pytest.raises(SecretError, match="environment variable CRM_SECRET is not set"):
        Sealer(None, environ={}).open(ref, "connection/crm")
