"""processors/paths.py: one meaning of a field path for every reader outside patterns."""
import pytest

from processors.paths import get_path, split_path
from processors.routing.router import extract_key, parse_key_path


def test_the_dollar_prefix_is_optional():
    assert split_path("$.detail.device_id") == split_path("detail.device_id") == ("detail", "device_id")
    assert parse_key_path("detail.device_id") == ("detail", "device_id")  # a target's `key`, both spellings


@pytest.mark.parametrize("bad", ["", "$.", "detail..id", ".detail", "detail."])
def test_a_malformed_path_names_itself(bad):
    with pytest.raises(ValueError, match="expected dotted names"):
        split_path(bad)


def test_missing_null_and_non_objects_all_read_as_no_value():
    body = {"detail": {"id": None, "n": 0, "list": [1], "s": "x"}}
    assert get_path(body, ("detail", "id")) is None
    assert get_path(body, ("detail", "absent")) is None
    assert get_path(body, ("detail", "s", "deeper")) is None
    assert get_path(body, ("detail", "n")) == 0
    assert extract_key(body, ("detail", "id")) is None and extract_key(body, ("detail", "n")) == b"0"
