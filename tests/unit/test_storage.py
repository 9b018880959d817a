"""Keys are checked before any request, so no step can escape the prefix it was given."""

import pytest

from stepml.storage import check_key


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a/./b", "a//b", "a\\b", "a\x00b"])
def test_hostile_keys_are_refused(key):
    with pytest.raises(ValueError):
        check_key(key)


def test_ordinary_keys_pass():
    assert check_key("runs/x-1/report/report.json") == "runs/x-1/report/report.json"
