"""The CI switch: any common truthy spelling makes missing data a failure, not a skip."""
from __future__ import annotations

import pytest

from tests.conftest import env_truthy


@pytest.mark.parametrize("value,truthy", [
    ("true", True), ("TRUE", True), ("True", True), ("1", True), ("yes", True),
    ("Yes", True), (" on ", True), ("y", True),
    ("", False), ("0", False), ("false", False), ("no", False), ("off", False),
    ("maybe", False)])
def test_env_truthy(monkeypatch, value, truthy):
    monkeypatch.setenv("DENSREFINE_TEST_SWITCH", value)
    assert env_truthy("DENSREFINE_TEST_SWITCH") is truthy


def test_env_truthy_unset(monkeypatch):
    monkeypatch.delenv("DENSREFINE_TEST_SWITCH", raising=False)
    assert env_truthy("DENSREFINE_TEST_SWITCH") is False
