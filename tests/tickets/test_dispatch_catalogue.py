"""The shipped dispatch catalogue (派单目录) and clear errors for a malformed one."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, load_settings
from tickets.dispatch_catalogue import Catalogue, load_catalogue, parse_catalogue
from tickets.dispatch_errors import CatalogueError

HISTORY_CATEGORIES = {"城乡建设", "劳动和社会保障", "教育文体", "卫生计生", "交通运输", "商贸旅游"}
LIVELIHOOD_DOMAINS = {
    "住房安居",
    "健康医疗",
    "社会保障",
    "产业发展",
    "乡村振兴",
    "干部作风",
    "教育文体",
    "交通出行",
    "城乡建设",
    "生态环境",
    "劳动就业",
    "市场监管",
    "公共安全",
}

GOOD_ENTRY = """
[[category]]
name = "生态环境"
department = "市生态环境局"
leader = "唐某某"
leader_title = "副局长"
person = "冯某某"
person_title = "环境执法支队支队长"
keywords = ["污染", "废气"]
"""


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(load_settings(env={}))


def with_catalogue(path: Path) -> Settings:
    shipped = load_settings(env={})
    return shipped.model_copy(
        update={"dispatch": shipped.dispatch.model_copy(update={"catalogue": str(path)})}
    )


def test_shipped_catalogue_covers_history_labels_and_livelihood_domains(
    catalogue: Catalogue,
) -> None:
    names = {e.name for e in catalogue.entries}
    assert HISTORY_CATEGORIES <= names
    assert LIVELIHOOD_DOMAINS <= names
    assert len(names) == len(catalogue.entries)


@pytest.mark.parametrize(
    ("category", "department"),
    [
        ("城乡建设", "市住房和城乡建设局"),
        ("劳动和社会保障", "市人力资源和社会保障局"),
        ("卫生计生", "市卫生健康委员会"),
        ("教育文体", "市教育局"),
        ("交通运输", "市交通运输局"),
        ("商贸旅游", "市商务局"),
        ("市场监管", "市市场监督管理局"),
        ("生态环境", "市生态环境局"),
        ("公共安全", "市公安局"),
    ],
)
def test_categories_go_to_real_kinds_of_department(
    catalogue: Catalogue, category: str, department: str
) -> None:
    entry = catalogue.by_category(category)
    assert entry is not None and entry.department == department
    assert (
        entry.leader
        and entry.leader_title
        and entry.person
        and entry.person_title
        and entry.keywords
    )


def test_areas_name_known_districts_and_empty_means_every_district(catalogue: Catalogue) -> None:
    rural = catalogue.by_category("乡村振兴")
    city = catalogue.by_category("城乡建设")
    assert rural is not None and city is not None
    assert catalogue.serves(rural, "青山县") and not catalogue.serves(rural, "城东区")
    assert all(catalogue.serves(city, d) for d in catalogue.districts)


def test_keyword_hits_name_the_words_found(catalogue: Catalogue) -> None:
    hits = catalogue.keyword_hits("化工厂晚上偷偷排放废气")
    assert hits == {"生态环境": ["排放", "废气", "化工厂"]}


def test_department_lookup(catalogue: Catalogue) -> None:
    entry = catalogue.by_department("市人力资源和社会保障局")
    assert entry is not None and entry.name == "劳动和社会保障"
    assert catalogue.by_department("市气象局") is None


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (
            'districts = ["城东区"]\n[[category]]\nname = "a"\ndepartment = \n',
            4,
            None,
        ),  # TOML syntax
        (
            'districts = ["城东区"]\n'
            + GOOD_ENTRY
            + '\n[[category]]\nname = "交通"\nkeywords = ["公交"]\n',
            12,
            "category.1.department",
        ),  # missing key: the table's header line
        (
            'districts = ["城东区"]\n' + GOOD_ENTRY.replace('["污染", "废气"]', '"污染"'),
            10,
            "category.0.keywords",
        ),
        (
            'districts = ["城东区"]\n' + GOOD_ENTRY + 'fax = "12345"\n',
            11,
            "category.0.fax",
        ),  # unknown key
        (
            'districts = ["城东区"]\n' + GOOD_ENTRY + 'phone = "66-01"\n',
            11,
            "category.0.phone",
        ),  # a department's transfer number is digits only
        ('districts = ["城东区"]\n' + GOOD_ENTRY + 'areas = ["火星区"]\n', 11, "category.0.areas"),
        (
            'districts = ["城东区"]\n' + GOOD_ENTRY + GOOD_ENTRY,
            13,
            "category.1.name",
        ),  # duplicate category
        ("districts = []\n" + GOOD_ENTRY, 1, "districts"),
    ],
)
def test_malformed_catalogue_names_key_and_line(text: str, line: int, key: str | None) -> None:
    with pytest.raises(CatalogueError) as err:
        parse_catalogue(text, "bad.toml")
    assert err.value.line == line
    assert err.value.key == key
    assert err.value.code == "dispatch.catalogue_invalid"
    assert f"第 {line} 行" in err.value.message and "bad.toml" in err.value.message


def test_catalogue_path_from_settings_and_missing_file(tmp_path: Path) -> None:
    good = tmp_path / "catalogue.toml"
    good.write_text('districts = ["城东区"]\n' + GOOD_ENTRY, encoding="utf-8")
    assert [e.name for e in load_catalogue(with_catalogue(good)).entries] == ["生态环境"]
    with pytest.raises(CatalogueError, match="无法读取"):
        load_catalogue(with_catalogue(tmp_path / "missing.toml"))
