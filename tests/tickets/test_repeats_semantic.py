"""Repeat detection by meaning (sentence embeddings), with the words as the second signal and the fallback."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sqlalchemy import select, update

from config.settings import replace_settings
from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, GARBAGE, GARBAGE_AGAIN, MONDAY_10AM
from tickets.models import Ticket
from tickets.repeats import matter
from tickets.services import create_ticket

GARBAGE_SAID = "小区门口垃圾好几天没人收了"
GARBAGE_PARAPHRASED = (
    "我们楼下的垃圾桶满了一直没清运"  # no content word in common with GARBAGE_SAID
)
LIFT_SAME_PLACE = "幸福小区电梯坏了一个星期没人修"
LAMP_SAME_PLACE = "幸福小区门口的路灯坏了好久"


async def _file(session, draft, content: str, phone: str, hours: int, settings=SETTINGS, **place):  # type: ignore[no-untyped-def]
    return await create_ticket(
        session,
        draft(content=content, caller_phone=phone, **place),
        AGENT,
        now=MONDAY_10AM + timedelta(hours=hours),
        settings=settings,
    )


def test_the_place_is_taken_out_of_the_text_before_it_is_embedded() -> None:
    places = ("城关区幸福路12号幸福小区", "幸福路街道", "城关区")
    assert matter("幸福小区门口的路灯坏了好久", places) == "门口的路灯坏了好久"
    assert matter("城关区幸福路12号电梯坏了", places) == "电梯坏了"
    assert matter("路灯坏了", places) == "路灯坏了"  # a shared 路 alone stays


async def test_a_paraphrase_at_the_same_address_is_a_repeat_and_the_same_words_elsewhere_are_not(
    session, draft
) -> None:
    first = await _file(session, draft, GARBAGE_SAID, "13900000001", 0)
    paraphrase = await _file(session, draft, GARBAGE_PARAPHRASED, "13900000002", 2)
    elsewhere = await _file(
        session,
        draft,
        GARBAGE_SAID,
        "13900000003",
        3,
        district="七里河区",
        address="七里河区某小区",
    )
    assert paraphrase.repeat_of == [first.id]
    link = paraphrase.repeat_links[0]
    assert (
        link.reason == "similar_content" and link.similarity >= SETTINGS.repeat.semantic_similarity
    )
    assert not elsewhere.is_repeat


async def test_other_matters_at_the_same_place_are_not_repeats(session, draft) -> None:
    """The place both complaints name does not make them alike (it is taken out before embedding)."""
    await _file(session, draft, GARBAGE, "13900000001", 0)
    lift = await _file(session, draft, LIFT_SAME_PLACE, "13900000002", 1)
    lamp = await _file(session, draft, LAMP_SAME_PLACE, "13900000003", 2)
    assert not lift.is_repeat and not lamp.is_repeat


async def test_intake_stores_the_vector_and_old_rows_without_one_match_by_words(
    session, draft
) -> None:
    first = await _file(session, draft, GARBAGE, "13900000001", 0)
    stored = await session.scalar(select(Ticket.content_vector).where(Ticket.id == first.id))
    vector = np.frombuffer(stored, np.float32)
    assert vector.shape == (512,) and abs(float(vector @ vector) - 1.0) < 1e-4
    await session.execute(update(Ticket).where(Ticket.id == first.id).values(content_vector=None))
    await session.commit()  # a ticket stored before migration 0010
    again = await _file(session, draft, GARBAGE_AGAIN, "13900000002", 1)
    assert again.repeat_of == [first.id]


async def test_without_the_embedding_model_only_the_words_count(session, draft) -> None:
    lexical = replace_settings(SETTINGS, {"language": {"embedding_model": "none"}})
    first = await _file(session, draft, GARBAGE_SAID, "13900000001", 0, lexical)
    paraphrase = await _file(session, draft, GARBAGE_PARAPHRASED, "13900000002", 1, lexical)
    same_words = await _file(session, draft, GARBAGE_SAID + "。", "13900000003", 2, lexical)
    assert not paraphrase.is_repeat and paraphrase.content_vector is None
    assert same_words.repeat_of == [first.id]


async def test_meaning_alone_links_tickets_of_one_street_and_words_the_whole_district(
    session, draft
) -> None:
    first = await _file(session, draft, GARBAGE_SAID, "13900000001", 0)
    other_street = {"street": "临夏路街道", "address": "城关区临夏路3号"}
    paraphrase = await _file(session, draft, GARBAGE_PARAPHRASED, "13900000002", 1, **other_street)
    same_words = await _file(session, draft, GARBAGE_SAID, "13900000003", 2, **other_street)
    assert not paraphrase.is_repeat  # another street: the meaning alone does not reach
    assert set(same_words.repeat_of) == {
        first.id,
        paraphrase.id,
    }  # words: the district; meaning: its street
