"""Fixtures of the tests in tests/tickets/ (shared folder: add your own fixtures below, keep these)."""

from tests.tickets.loop_support import db, draft, session  # noqa: F401 - ticket-core fixtures: departments, drafts, a session

# --- warnings, supervision, metrics and queries (tests/tickets/test_warnings*.py and friends) ---------------
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

import pytest  # noqa: E402 - appended section

from tickets.dispatch_catalogue import Catalogue, parse_catalogue  # noqa: E402


@pytest.fixture
def catalogue() -> Catalogue:
    return parse_catalogue(SAMPLE_CATALOGUE, "<测试派单目录>")
