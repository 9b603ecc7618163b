"""Fixtures of the tests in tests/tickets/: the ticket core's (departments, drafts, a session) from loop_support,
and a dispatch catalogue for the warnings, supervision, metrics and query tests."""

from __future__ import annotations

import pytest

from tests.tickets.loop_support import db, draft, session  # noqa: F401 - fixtures, re-exported for pytest
from tickets.dispatch_catalogue import Catalogue, parse_catalogue

# A catalogue naming the sample departments of loop_support by name (matched through departments.name).
SAMPLE_CATALOGUE = """
districts = ["城关区", "七里河区"]
[[category]]
name = "住房安居"
department = "区住房和城乡建设局"
leader = "张建设"
leader_title = "副局长"
person = "王联络"
person_title = "物业科科长"
keywords = ["物业"]
[[category]]
name = "生态环境"
department = "区住房和城乡建设局"
leader = "周环卫"
leader_title = "副局长"
person = "吴环卫"
person_title = "环卫科科长"
keywords = ["垃圾"]
[[category]]
name = "城乡建设"
department = "区城市管理局"
leader = "陈城管"
leader_title = "局长"
person = "刘城管"
person_title = "执法队队长"
keywords = ["占道"]
"""


@pytest.fixture
def catalogue() -> Catalogue:
    return parse_catalogue(SAMPLE_CATALOGUE, "<测试派单目录>")
