"""Caller numbers and the category tree."""

from __future__ import annotations

import pytest

from tickets.categories import CategoryTree, load_categories
from tickets.errors import InvalidInput
from tickets.phone import normalise_phone

GOOD = [
    ("13812345678", "13812345678"),
    ("138 1234 5678", "13812345678"),
    ("+86 138-1234-5678", "13812345678"),
    ("0086 13812345678", "13812345678"),
    ("8613812345678", "13812345678"),
    ("0931-1234567", "0931-1234567"),
    ("09318765432", "0931-8765432"),
    ("(0931)8765432", "0931-8765432"),
    ("010-12345678", "010-12345678"),
    ("021 6123 4567", "021-61234567"),
    ("0755-88889999", "0755-88889999"),
    ("+86 10 12345678", "010-12345678"),
    ("+86-931-1234567", "0931-1234567"),
]
BAD = [
    "",
    "12345",
    "1381234567",
    "138123456789",
    "12812345678",
    "23812345678",
    "010-1234567",
    "0931-0234567",
    "0931-123456",
    "abc13812345678",
    "+1 415 555 0000",
    "138-1234-567x",
]


@pytest.mark.parametrize(("raw", "expected"), GOOD)
def test_good_numbers_are_normalised(raw: str, expected: str) -> None:
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize("raw", BAD)
def test_bad_numbers_are_refused_with_a_hint(raw: str) -> None:
    with pytest.raises(InvalidInput) as err:
        normalise_phone(raw)
    assert (err.value.code, err.value.field) == ("ticket.invalid_phone", "caller_phone")
    assert "手机号" in err.value.message and "区号" in err.value.message


def test_shipped_tree_has_the_13_livelihood_domains() -> None:
    tree = load_categories()
    assert list(tree.children) == [
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
    ]
    assert all(len(kids) >= 3 for kids in tree.children.values())
    assert tree.validate(" 交通出行 / 停车管理 ") == "交通出行/停车管理"
    assert tree.validate("公共安全") == "公共安全"
    for bad in ("交通", "交通出行/物业服务", "交通出行/停车管理/路边", ""):
        with pytest.raises(InvalidInput) as err:
            tree.validate(bad)
        assert err.value.code == "ticket.unknown_category"


def test_edited_tree_file_is_reread(tmp_path) -> None:
    path = tmp_path / "categories.toml"
    path.write_text('[[category]]\nname = "住房安居"\nchildren = ["物业服务"]\n', encoding="utf-8")
    assert load_categories(path).paths() == ["住房安居", "住房安居/物业服务"]
    path.write_text('[[category]]\nname = "民生"\nchildren = ["水电"]\n', encoding="utf-8")
    assert load_categories(path).paths() == ["民生", "民生/水电"]
    with pytest.raises(ValueError, match="duplicate"):
        CategoryTree.from_toml('[[category]]\nname = "a"\n[[category]]\nname = "a"\n')
