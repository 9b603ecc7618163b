"""Hot topics (热点): requests grouped by meaning, each labelled by its most central request."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sqlalchemy import update

from config.settings import replace_settings
from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, MONDAY_10AM
from tickets.hot_topics import frequent_problems, group, hot_topics
from tickets.models import Ticket
from tickets.services import create_ticket
from tickets.voice_messages import LeftMessage, file_message, record_transcript

GARBAGE = [
    "咱们小区门口垃圾好几天没人收了",
    "春节期间我们楼下的垃圾桶满了一直没清运",
    "垃圾堆在小区里好多天了没人来拉走",
]
NOISE = ["咱们这边工地夜间施工噪音太大", "国庆期间隔壁工地晚上施工吵得没法休息"]
# One ticket each, every one with a filler word (咱们, 期间) that the old keyword count put on top.
SINGLE = [
    "疫情期间社保卡丢了怎么补办",
    "咱们这里公交车班次太少",
    "咱们孩子入学报名需要什么材料",
    "暑假期间图书馆开放时间是几点",
]
FILLERS = {"咱们", "期间"}


async def _file_all(session, draft, texts: list[str], settings=SETTINGS) -> None:  # type: ignore[no-untyped-def]
    for n, text in enumerate(texts):
        await create_ticket(
            session,
            draft(
                content=text,
                caller_phone=f"1390000{n:04d}",
                category="城乡建设/市政设施" if text in GARBAGE else None,
                street=f"街道{n}",
            ),
            AGENT,
            now=MONDAY_10AM + timedelta(minutes=n),
            settings=settings,
        )


def _period() -> tuple:  # type: ignore[type-arg]
    return MONDAY_10AM - timedelta(days=1), MONDAY_10AM + timedelta(days=1)


async def test_paraphrases_make_one_topic_and_filler_words_are_never_one(session, draft) -> None:
    await _file_all(session, draft, GARBAGE + NOISE + SINGLE)
    found = await hot_topics(session, *_period(), settings=SETTINGS)
    assert found.tickets_read == 9
    garbage, noise = found.topics  # the single requests make no topic
    assert (garbage.tickets, garbage.weight, noise.tickets, noise.weight) == (3, 1.0, 2, 0.6667)
    assert garbage.label in GARBAGE and noise.label in NOISE
    assert (garbage.category, garbage.district, noise.category) == (
        "城乡建设/市政设施",
        "城关区",
        None,
    )
    assert not FILLERS & {t.label for t in found.topics}


async def test_tickets_stored_without_a_vector_are_embedded_when_read(session, draft) -> None:
    await _file_all(session, draft, GARBAGE + NOISE + SINGLE)
    await session.execute(
        update(Ticket).values(content_vector=None)
    )  # stored before migration 0010
    await session.commit()
    found = await hot_topics(session, *_period(), settings=SETTINGS)
    assert [t.tickets for t in found.topics] == [3, 2]


async def test_without_the_embedding_model_the_same_words_make_a_topic(session, draft) -> None:
    lexical = replace_settings(SETTINGS, {"language": {"embedding_model": "none"}})
    await _file_all(session, draft, [GARBAGE[0], GARBAGE[0] + "，臭得很", *SINGLE], lexical)
    found = await hot_topics(session, *_period(), settings=lexical)
    assert [(t.label, t.tickets) for t in found.topics] in (
        [(GARBAGE[0], 2)],
        [(GARBAGE[0] + "，臭得很", 2)],
    )


async def test_transcribed_voice_messages_are_grouped_by_their_words_not_the_placeholder(
    session,
) -> None:
    """A message is filed as 「语音留言（转写中）」; once transcribed, what it says decides its topic."""
    for n, said in enumerate(GARBAGE[:2] + NOISE):
        call = f"1741053600.{n}"
        await file_message(
            session,
            LeftMessage(call, f"{call}-1390000000{n}.wav", f"1390000000{n}", "SILENCE"),
            settings=SETTINGS,
            now=MONDAY_10AM,
            sms=False,
        )
        await record_transcript(session, call, said, now=MONDAY_10AM)
        await session.commit()
    found = await hot_topics(session, *_period(), settings=SETTINGS)
    assert sorted((t.label in GARBAGE, t.tickets) for t in found.topics) == [(False, 2), (True, 2)]


async def test_a_frequent_problem_lists_what_its_tickets_ask_for(session, draft) -> None:
    await _file_all(session, draft, GARBAGE + NOISE)
    [problem] = await frequent_problems(session, *_period(), settings=SETTINGS)
    assert (problem.category, problem.tickets) == ("城乡建设/市政设施", 3)
    assert [(t.label in GARBAGE, t.tickets) for t in problem.topics] == [(True, 3)]


def test_grouping_takes_the_densest_request_first_and_labels_by_the_most_central() -> None:
    angles = np.radians([0, 10, 20, 90])  # 1 is within 10° of 0 and 2; 0 and 2 are 20° apart
    vecs = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    groups = group(vecs, 0.95, 2)  # cos 10° ≈ 0.985, cos 20° ≈ 0.94
    assert [list(g) for g in groups] == [[1, 0, 2]]  # 3 is alone


def test_a_request_joins_the_nearest_topic_not_the_first_that_reaches_it() -> None:
    """0° is the densest centre; 20° is a second one; 12° is within reach of both and closer to 20°."""
    angles = np.radians([0, 2, -2, 4, -4, 12, 20, 22])
    vecs = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    groups = group(vecs, float(np.cos(np.radians(13))), 2)
    assert [sorted(g.tolist()) for g in groups] == [[0, 1, 2, 3, 4], [5, 6, 7]]
