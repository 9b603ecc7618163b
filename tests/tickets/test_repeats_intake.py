"""What intake stores for cheap repeat detection."""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import update

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, GARBAGE, GARBAGE_AGAIN, MONDAY_10AM, NOISE
from tickets.models import Ticket
from tickets.repeats import TokenBag, similarity, tokenize
from tickets.services import create_ticket


def test_token_bag_cosine_is_the_bag_similarity() -> None:
    for a, b in ((GARBAGE, GARBAGE_AGAIN), (GARBAGE, NOISE), ("垃圾 垃圾 清理", "垃圾 清理 清理")):
        ta, tb = tokenize(a), tokenize(b)
        bag = TokenBag.of(ta)
        assert math.isclose(bag.cosine(" ".join(tb), TokenBag.of(tb).norm), similarity(ta, tb))
        assert math.isclose(
            bag.cosine(" ".join(tb), None), similarity(ta, tb)
        )  # norm not stored: counted
    assert TokenBag.of(["垃圾", "垃圾", "清理"]).norm == math.sqrt(5)
    assert TokenBag.of([]).cosine("垃圾", 1.0) == 0.0


async def test_intake_stores_the_token_norm_and_old_rows_without_one_still_match(
    session, draft
) -> None:
    first = await create_ticket(
        session, draft(content=GARBAGE), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    assert first.token_norm == TokenBag.of(first.content_tokens.split()).norm > 0
    await session.execute(
        update(Ticket).where(Ticket.id == first.id).values(token_norm=None)
    )  # a pre-norm row
    await session.commit()
    other = await create_ticket(
        session,
        draft(content=GARBAGE_AGAIN, caller_phone="0931-7654321"),
        AGENT,
        now=MONDAY_10AM + timedelta(hours=1),
        settings=SETTINGS,
    )
    assert other.repeat_of == [first.id] and other.repeat_links[0].similarity >= 0.6
