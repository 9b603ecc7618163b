"""The spoken answer derived from a written one: citations, links, numbers, tables, a short version."""

from __future__ import annotations

import pytest

from knowledge.speech import derive_speech, speakable


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("居民身份证有效期为长期（依据：《居民身份证法》第二条）。", "居民身份证有效期为长期。"),
        ("申请材料见附件[1]。请带户口簿【2】。", "申请材料见附件。请带户口簿。"),
        ("详见《社会保险法》第十条（参见：人社部令第13号）", "详见《社会保险法》第十条。"),
        ("【办理地点】派出所户籍窗口", "办理地点：派出所户籍窗口。"),
        ("办理时间（周一至周五）为2个工作日。", "办理时间，周一至周五，为两个工作日。"),
        ("（自2023-01-01起执行，依据：国发〔2023〕13号）", "自二零二三年一月一日起执行。"),
    ],
)
def test_citations_and_reference_marks_go_other_brackets_keep_their_words(
    written: str, spoken: str
) -> None:
    assert derive_speech(written, 300) == spoken


def test_links_become_the_official_website() -> None:
    spoken = derive_speech(
        "网上预约：https://zwfw.example.gov.cn/sfz?a=1 。也可登录www.example.gov.cn办理。", 300
    )
    assert spoken == "网上预约：官方网站。也可登录官方网站办理。"
    assert speakable(spoken)


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("自2024年1月1日起施行。", "自二零二四年一月一日起施行。"),
        ("自2024-03-01起施行。", "自二零二四年三月一日起施行。"),
        ("有效期为10年。", "有效期为十年。"),
        ("缴费比例为20%，其中8%记入个人账户。", "缴费比例为百分之二十，其中百分之八记入个人账户。"),
        ("补贴为每月1200.50元，共12000元。", "补贴为每月一千二百点五元，共一万二千元。"),
        ("请拨打12345热线或110。", "请拨打幺二三四五热线或幺幺零。"),
        (
            "咨询电话：0571-87654321，手机13812345678。",
            "咨询电话零五七幺八七六五四三二幺，手机幺三八幺二三四五六七八。",
        ),
        ("面积120平方米，依第119条办理。", "面积一百二十平方米，依第一百一十九条办理。"),
        ("工作时间9:00-17:30，收费￥1,500。", "工作时间九点至十七点三十分，收费一千五百元。"),
        ("缴费基数为60%~300%。", "缴费基数为百分之六十至百分之三百。"),
    ],
)
def test_numbers_dates_percent_money_and_phone_numbers_are_spoken(
    written: str, spoken: str
) -> None:
    assert derive_speech(written, 300) == spoken


def test_a_long_answer_is_cut_at_a_sentence_end_within_the_limit() -> None:
    written = (
        "第一句说明申请条件。" + "第二句说明所需材料和办理地点，" * 3 + "结束。第三句说明时限。"
    )
    spoken = derive_speech(written, 30)
    assert spoken == "第一句说明申请条件。"
    assert derive_speech(written, len(written)) == written


def test_a_first_sentence_longer_than_the_limit_is_cut_at_a_clause_end() -> None:
    spoken = derive_speech(
        "无雇工的个体工商户、非全日制从业人员，可以参加基本养老保险，由个人缴费。", 30
    )
    assert spoken == "无雇工的个体工商户、非全日制从业人员，可以参加基本养老保险。"
    assert len(spoken) <= 30


@pytest.mark.parametrize(
    "table",
    [
        "收费标准如下：\n| 项目 | 收费 |\n|---|---|\n| 首次申领 | 20元 |\n| 补领 | 40元 |",
        "收费标准如下：\n项目\t收费\n首次申领\t20元\n补领\t40元",
    ],
)
def test_a_table_is_read_row_by_row(table: str) -> None:
    spoken = derive_speech(table, 300)
    assert spoken.startswith("收费标准如下：")
    assert spoken.endswith("首次申领：二十元。补领：四十元。")
    assert "|" not in spoken and "\t" not in spoken and "---" not in spoken


def test_a_numbered_list_is_read_with_chinese_ordinals() -> None:
    spoken = derive_speech("可以提取的情形：\n1. 购买自住住房的；\n2. 离休、退休的。", 300)
    assert spoken == "可以提取的情形：一、购买自住住房的。二、离休、退休的。"
