"""Knowledge-base pages and API (知识库): entries by department, publish/archive, history, the bot's misses.

Who may do what: everyone logged in reads entries (the hotline answers from them); a handler (承办人) edits,
publishes and archives only the entries of their own department and creates entries only for it; an
administrator edits all. The questions the bot failed on (the caller's words, phone numbers masked) are for those
who curate the knowledge base: an administrator sees all, a handler only those whose closest entry is their
department's. They are shown grouped by similarity (:mod:`knowledge.miss_groups`); one click adds a group's
question to an entry the editor may edit as an alternative question (添加为相似问法) and marks the group handled.
An entry whose spoken answer an import derived is marked 自动生成，请审核 until an editor saves it. After every
change the app's ``on_knowledge_change`` hook runs, so the bot's index serves the new content.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, ValidationError, model_validator

from agent_console import keys
from agent_console.errors import Forbidden, NotFound, console_error
from agent_console.roles import ALL_ROLES, Role
from agent_console.routing import Call, RouteTable, render_page
from agent_console.schemas import Model
from agent_console.views.session import see_other
from knowledge import services as kb
from knowledge.errors import InvalidInput as KnowledgeInvalid
from knowledge.errors import KnowledgeError
from knowledge.miss_groups import MissGroup, MissGrouper
from knowledge.models import MISS_REASONS, STATUSES, KnowledgeEntry, KnowledgeMiss
from knowledge.schemas import EntryContent, describe, validate_content

routes = RouteTable("knowledge")
log = logging.getLogger(__name__)

READERS = ALL_ROLES
EDITORS = frozenset({Role.HANDLER, Role.ADMIN})
MISS_READERS = EDITORS
PAGE_SIZE = 50
GROUPED_MISSES = 500  # the newest unhandled misses grouped on one page
RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]
Status = Literal["draft", "published", "archived"]
MissReason = Literal["unanswered", "low_confidence", "not_solved", "ambiguous"]
ACTION_LABELS = {
    "create": "新建",
    "update": "修改",
    "publish": "发布",
    "archive": "归档",
    kb.ALTERNATIVE: "添加相似问法",
}
MISS_GROUPER = web.AppKey("knowledge_miss_grouper", MissGrouper)
MISS_LABELS = {
    "unanswered": "未找到答案",
    "low_confidence": "置信度低",
    "not_solved": "来电人称未解决",
    "ambiguous": "需澄清（两条答案相近）",
}
assert set(STATUSES) == set(Status.__args__) and set(MISS_REASONS) == set(MissReason.__args__)  # type: ignore[attr-defined]


# --- JSON shapes ----------------------------------------------------------------------------------------------


class EntryIn(Model):
    """An entry's content as an editor writes it (``department`` defaults to a handler's own)."""

    question: str = Field(min_length=1, max_length=200)
    answer_speech: str = Field(
        min_length=1, max_length=2000, description="机器人朗读的答案（不含网址、括号）"
    )
    answer_text: str = Field(min_length=1, max_length=4000, description="屏幕显示的答案")
    alt_questions: list[str] = Field(default_factory=list, max_length=30)
    keywords: list[str] = Field(default_factory=list, max_length=30)
    department: str = Field("", max_length=100, description="承办单位（承办人只能填本单位）")
    source: str = Field("", max_length=300, description="依据（法规条款）")
    valid_from: date | None = None
    valid_to: date | None = None


class EntryUpdate(EntryIn):
    expected_version: int = Field(ge=1, description="编辑时看到的版本号（乐观锁）")


class StatusChange(Model):
    expected_version: int = Field(ge=1)


class FilterQuery(Model):
    """A filter form's query: an empty field means no filter."""

    @model_validator(mode="before")
    @classmethod
    def _empty_is_none(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v != ""} if isinstance(data, dict) else data


class EntryQuery(FilterQuery):
    status: Status | None = None
    department: str | None = Field(None, max_length=100)
    text: str | None = Field(None, max_length=100, description="在问题或答案中查找")
    limit: int = Field(PAGE_SIZE, ge=1, le=200)
    offset: int = Field(0, ge=0, le=100_000)


class EntryOut(Model):
    id: int
    question: str
    alt_questions: list[str]
    answer_speech: str
    answer_text: str
    department: str
    keywords: list[str]
    source: str
    valid_from: date | None
    valid_to: date | None
    status: Status
    status_label: str
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str
    editable: bool = Field(description="当前用户能否编辑")
    speech_derived: bool = Field(description="语音答案由导入自动生成，请审核（编辑保存后清除）")


class EntryList(Model):
    entries: list[EntryOut]
    limit: int
    offset: int


class RevisionOut(Model):
    version: int
    action: str
    action_label: str
    actor: str
    at: datetime
    previous: dict[str, Any] | None = Field(description="修改前的内容（新建时为空）")


class RevisionList(Model):
    revisions: list[RevisionOut]


class MissQuery(FilterQuery):
    reason: MissReason | None = None
    handled: bool | None = Field(None, description="已处理（true）或未处理（false）；不填为全部")
    limit: int = Field(PAGE_SIZE, ge=1, le=200)
    offset: int = Field(0, ge=0, le=100_000)


class MissGroupQuery(FilterQuery):
    reason: MissReason | None = None
    limit: int = Field(GROUPED_MISSES, ge=1, le=2000, description="参与分组的最近未处理问题条数")


class MissOut(Model):
    id: int
    question_text: str
    reason: MissReason
    reason_label: str
    score: float | None
    best_entry_id: int | None
    at: datetime
    handled_at: datetime | None
    handled_by: str | None
    handled_entry_id: int | None


class MissList(Model):
    misses: list[MissOut]


class EntryChoice(Model):
    id: int
    question: str


class MissGroupOut(Model):
    miss_ids: list[int]
    count: int
    question: str = Field(description="最典型的问法（添加为相似问法时的默认文字）")
    examples: list[str]
    latest: datetime
    best_entry: EntryChoice | None = Field(
        description="机器人最常认为最接近、且当前用户可编辑的条目（预选）"
    )
    candidates: list[EntryChoice] = Field(description="该组问题最接近的、当前用户可编辑的条目")


class MissGroupList(Model):
    groups: list[MissGroupOut]


class AlternativeIn(Model):
    """Add a group's question to an entry as an alternative question and mark the group's misses handled."""

    entry_id: RowId
    question: str = Field(min_length=1, max_length=200)
    miss_ids: list[RowId] = Field(min_length=1, max_length=2000)


class AlternativeForm(Model):
    entry_id: RowId
    question: str = Field(min_length=1, max_length=200)
    miss_ids: str = Field(min_length=1, max_length=20_000, description="逗号分隔的未解决问题编号")


class NewEntryQuery(Model):
    miss: int | None = Field(None, ge=1, description="据此未解决问题新建条目")


class EntryForm(Model):
    """The page form: lists are one item per line."""

    question: str = ""
    answer_speech: str = ""
    answer_text: str = ""
    alt_questions: str = ""
    keywords: str = ""
    department: str = ""
    source: str = ""
    valid_from: str = ""
    valid_to: str = ""
    expected_version: int | None = None


class StatusForm(Model):
    expected_version: int


# --- rules ----------------------------------------------------------------------------------------------------


def may_edit(call: Call[Any], department: str) -> bool:
    if call.role == Role.ADMIN:
        return True
    return (
        call.role == Role.HANDLER
        and bool(call.user.department)
        and department == call.user.department
    )


def _require_edit(call: Call[Any], entry: KnowledgeEntry) -> None:
    if not may_edit(call, entry.department):
        raise Forbidden("只能编辑本单位的知识条目")


def _department_for(call: Call[Any], asked: str) -> str:
    """The department a new or edited entry belongs to: a handler's own (asking for another is refused)."""
    if call.role == Role.ADMIN:
        return asked
    own = call.user.department or ""
    if asked and asked != own:
        raise Forbidden("只能编辑本单位的知识条目")
    return own


def entry_out(call: Call[Any], e: KnowledgeEntry) -> EntryOut:
    return EntryOut(
        id=e.id,
        question=e.question,
        alt_questions=list(e.alt_questions or []),
        answer_speech=e.answer_speech,
        answer_text=e.answer_text,
        department=e.department,
        keywords=list(e.keywords or []),
        source=e.source,
        valid_from=e.valid_from,
        valid_to=e.valid_to,
        status=e.status,
        status_label=kb.STATUS_LABELS[e.status],
        version=e.version,
        created_at=e.created_at,
        updated_at=e.updated_at,
        updated_by=e.updated_by,
        editable=may_edit(call, e.department),
        speech_derived=e.speech_derived,
    )


def _entry_id(call: Call[Any]) -> int:
    raw = call.request.match_info["entry_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise NotFound("知识条目不存在")
    return int(raw)


async def _changed(call: Call[Any]) -> None:
    """Tell the bot; the edit is committed already, so a failing listener is logged, not reported."""
    try:
        await call.app[keys.KNOWLEDGE_CHANGED]()
    except Exception:
        log.exception("知识库已修改，但通知机器人刷新索引失败")


def _content(call: Call[Any], body: EntryIn, extra: dict[str, Any]) -> EntryContent:
    data = body.model_dump(exclude={"expected_version"}) | {"extra": extra}
    data["department"] = _department_for(call, body.department)
    return validate_content(data, max_speech=call.app[keys.SETTINGS].knowledge.max_speech_chars)


async def _create(call: Call[Any], body: EntryIn) -> KnowledgeEntry:
    async with call.db() as db:
        entry = await kb.create_entry(
            db, _content(call, body, {}), call.user.username, now=call.now
        )
    await _changed(call)
    return entry


async def _update(
    call: Call[Any], entry_id: int, body: EntryIn, expected_version: int
) -> KnowledgeEntry:
    async with call.db() as db:
        current = await kb.get_entry(db, entry_id)
        _require_edit(call, current)
        content = _content(call, body, dict(current.extra or {}))
        entry = await kb.update_entry(
            db,
            entry_id,
            content,
            call.user.username,
            expected_version=expected_version,
            now=call.now,
        )
    await _changed(call)
    return entry


StatusService = Callable[..., Awaitable[KnowledgeEntry]]
STATUS_SERVICES: dict[str, StatusService] = {
    "publish": kb.publish_entry,
    "archive": kb.archive_entry,
}


async def _set_status(
    call: Call[Any], entry_id: int, action: str, expected_version: int
) -> KnowledgeEntry:
    async with call.db() as db:
        _require_edit(call, await kb.get_entry(db, entry_id))
        entry = await STATUS_SERVICES[action](
            db, entry_id, call.user.username, expected_version=expected_version, now=call.now
        )
    await _changed(call)
    return entry


# --- API ------------------------------------------------------------------------------------------------------


@routes.api(
    "GET",
    "/api/v1/knowledge/entries",
    summary="知识条目列表",
    roles=READERS,
    query=EntryQuery,
    response=EntryList,
)
async def entries_api(call: Call[None]) -> EntryList:
    q: EntryQuery = call.query
    async with call.db() as db:
        rows = await kb.list_entries(
            db,
            department=q.department,
            status=q.status,
            text=q.text,
            limit=q.limit,
            offset=q.offset,
        )
    return EntryList(entries=[entry_out(call, e) for e in rows], limit=q.limit, offset=q.offset)


@routes.api(
    "POST",
    "/api/v1/knowledge/entries",
    summary="新建知识条目（草稿）",
    roles=EDITORS,
    request=EntryIn,
    response=EntryOut,
    status=201,
    errors=(409,),
)
async def entry_create_api(call: Call[EntryIn]) -> EntryOut:
    return entry_out(call, await _create(call, call.body))


@routes.api(
    "GET",
    "/api/v1/knowledge/entries/{entry_id}",
    summary="知识条目详情",
    roles=READERS,
    response=EntryOut,
)
async def entry_api(call: Call[None]) -> EntryOut:
    async with call.db() as db:
        return entry_out(call, await kb.get_entry(db, _entry_id(call)))


@routes.api(
    "PUT",
    "/api/v1/knowledge/entries/{entry_id}",
    summary="修改知识条目",
    roles=EDITORS,
    request=EntryUpdate,
    response=EntryOut,
    errors=(409,),
)
async def entry_update_api(call: Call[EntryUpdate]) -> EntryOut:
    return entry_out(
        call, await _update(call, _entry_id(call), call.body, call.body.expected_version)
    )


@routes.api(
    "POST",
    "/api/v1/knowledge/entries/{entry_id}/publish",
    summary="发布知识条目",
    roles=EDITORS,
    request=StatusChange,
    response=EntryOut,
    errors=(409,),
)
async def entry_publish_api(call: Call[StatusChange]) -> EntryOut:
    return entry_out(
        call, await _set_status(call, _entry_id(call), "publish", call.body.expected_version)
    )


@routes.api(
    "POST",
    "/api/v1/knowledge/entries/{entry_id}/archive",
    summary="归档知识条目",
    roles=EDITORS,
    request=StatusChange,
    response=EntryOut,
    errors=(409,),
)
async def entry_archive_api(call: Call[StatusChange]) -> EntryOut:
    return entry_out(
        call, await _set_status(call, _entry_id(call), "archive", call.body.expected_version)
    )


def _revisions(rows: list[Any]) -> list[RevisionOut]:
    return [
        RevisionOut(
            version=r.version,
            action=r.action,
            action_label=ACTION_LABELS.get(r.action, r.action),
            actor=r.actor,
            at=r.at,
            previous=r.previous,
        )
        for r in rows
    ]


@routes.api(
    "GET",
    "/api/v1/knowledge/entries/{entry_id}/history",
    summary="知识条目修改历史",
    roles=READERS,
    response=RevisionList,
)
async def entry_history_api(call: Call[None]) -> RevisionList:
    entry_id = _entry_id(call)
    async with call.db() as db:
        await kb.get_entry(db, entry_id)
        return RevisionList(revisions=_revisions(await kb.entry_history(db, entry_id)))


async def _misses(call: Call[Any], q: MissQuery) -> list[KnowledgeMiss]:
    """The misses this user curates (see the module docstring)."""
    if call.scope.nothing:
        return []
    async with call.db() as db:
        return await kb.list_misses(
            db,
            reason=q.reason,
            department=call.scope.department,
            handled=q.handled,
            limit=q.limit,
            offset=q.offset,
        )


def _miss_out(m: Any) -> MissOut:
    return MissOut(
        id=m.id,
        question_text=m.question_text,
        reason=m.reason,
        reason_label=MISS_LABELS[m.reason],
        score=m.score,
        best_entry_id=m.best_entry_id,
        at=m.at,
        handled_at=m.handled_at,
        handled_by=m.handled_by,
        handled_entry_id=m.handled_entry_id,
    )


@routes.on_setup
def _setup_miss_grouper(app: web.Application) -> None:
    app[MISS_GROUPER] = MissGrouper.from_settings(app[keys.SETTINGS])


async def _miss_groups(call: Call[Any], q: MissGroupQuery) -> list[MissGroupOut]:
    """The unhandled misses this user curates in groups of similar questions, with the entries they may edit
    among the closest ones (the most frequent first, preselected)."""
    if call.scope.nothing:
        return []
    async with call.db() as db:
        misses = await kb.list_misses(
            db, reason=q.reason, department=call.scope.department, handled=False, limit=q.limit
        )
        groups = await asyncio.to_thread(call.app[MISS_GROUPER].group, misses)
        ids = {e for g in groups for e in g.candidate_entry_ids}
        entries = {e.id: e for e in await kb.entries_by_id(db, ids)}
    choices = {
        i: EntryChoice(id=i, question=e.question)
        for i, e in entries.items()
        if may_edit(call, e.department)
    }
    return [
        _group_out(g, [choices[i] for i in g.candidate_entry_ids if i in choices]) for g in groups
    ]


def _group_out(group: MissGroup, candidates: list[EntryChoice]) -> MissGroupOut:
    return MissGroupOut(
        miss_ids=group.miss_ids,
        count=group.count,
        question=group.question[:200],
        examples=group.examples,
        latest=group.latest,
        best_entry=candidates[0] if candidates else None,
        candidates=candidates,
    )


async def _add_alternative(call: Call[Any], body: AlternativeIn) -> KnowledgeEntry:
    """Refused (403) for an entry the user may not edit, (404) for a miss they do not curate or one handled."""
    if call.scope.nothing:
        raise NotFound("该未解决问题不存在")
    async with call.db() as db:
        _require_edit(call, await kb.get_entry(db, body.entry_id))
        entry = await kb.add_alternative(
            db,
            body.entry_id,
            body.question,
            body.miss_ids,
            call.user.username,
            department=call.scope.department,
            now=call.now,
        )
    await _changed(call)
    return entry


@routes.api(
    "GET",
    "/api/v1/knowledge/misses",
    summary="机器人未解决的问题",
    roles=MISS_READERS,
    query=MissQuery,
    response=MissList,
)
async def misses_api(call: Call[None]) -> MissList:
    return MissList(misses=[_miss_out(m) for m in await _misses(call, call.query)])


@routes.api(
    "GET",
    "/api/v1/knowledge/miss-groups",
    summary="机器人未解决的问题（按相似度分组）",
    roles=MISS_READERS,
    query=MissGroupQuery,
    response=MissGroupList,
)
async def miss_groups_api(call: Call[None]) -> MissGroupList:
    return MissGroupList(groups=await _miss_groups(call, call.query))


@routes.api(
    "POST",
    "/api/v1/knowledge/misses/alternative",
    summary="把一组未解决问题添加为条目的相似问法",
    roles=EDITORS,
    request=AlternativeIn,
    response=EntryOut,
    errors=(404, 409),
)
async def miss_alternative_api(call: Call[AlternativeIn]) -> EntryOut:
    return entry_out(call, await _add_alternative(call, call.body))


# --- pages ----------------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [
        part.strip()
        for part in text.replace("，", "\n").replace(",", "\n").splitlines()
        if part.strip()
    ]


def _form_body(form: EntryForm) -> EntryIn:
    """The page form as an API body; a date that does not parse is reported by the content rules."""
    data: dict[str, Any] = form.model_dump(
        exclude={"expected_version", "alt_questions", "keywords"}
    )
    data |= {"alt_questions": _lines(form.alt_questions), "keywords": _lines(form.keywords)}
    for name in ("valid_from", "valid_to"):
        data[name] = data[name] or None
    try:
        return EntryIn.model_validate(data)
    except ValidationError as exc:
        raise KnowledgeInvalid("kb.invalid_entry", describe(exc)) from None


def _form_of(entry: KnowledgeEntry | None) -> dict[str, str]:
    if entry is None:
        return {}
    return {
        "question": entry.question,
        "answer_speech": entry.answer_speech,
        "answer_text": entry.answer_text,
        "alt_questions": "\n".join(entry.alt_questions or []),
        "keywords": "\n".join(entry.keywords or []),
        "department": entry.department,
        "source": entry.source,
        "valid_from": entry.valid_from.isoformat() if entry.valid_from else "",
        "valid_to": entry.valid_to.isoformat() if entry.valid_to else "",
    }


@routes.page(
    "GET",
    "/knowledge",
    title="知识库",
    roles=READERS,
    nav="知识库",
    template="kb_list.html",
    query=EntryQuery,
    name="knowledge_page",
)
async def knowledge_page(call: Call[None]) -> dict[str, Any]:
    q: EntryQuery = call.query
    async with call.db() as db:
        rows = await kb.list_entries(
            db,
            department=q.department,
            status=q.status,
            text=q.text,
            limit=q.limit,
            offset=q.offset,
        )
    return {
        "entries": [entry_out(call, e) for e in rows],
        "q": q,
        "statuses": kb.STATUS_LABELS,
        "can_create": call.role in EDITORS,
        "can_see_misses": call.role in MISS_READERS,
        "next_offset": q.offset + q.limit if len(rows) == q.limit else None,
    }


async def _entry_page(
    call: Call[Any],
    entry: KnowledgeEntry | None,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
    history: list[RevisionOut] | None = None,
    saved: bool = False,
) -> web.Response:
    editable = may_edit(call, entry.department) if entry else call.role in EDITORS
    context = {
        "entry": entry_out(call, entry) if entry else None,
        "form": form if form is not None else _form_of(entry),
        "error": error,
        "editable": editable,
        "history": history or [],
        "saved": saved,
        "own_department": call.user.department if call.role == Role.HANDLER else None,
    }
    return render_page(call, "kb_entry.html", context, status=status)


async def _misses_view(
    call: Call[Any],
    q: MissGroupQuery,
    *,
    added: int | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    context = {
        "groups": await _miss_groups(call, q),
        "q": q,
        "reasons": MISS_LABELS,
        "can_create": call.role in EDITORS,
        "added": added,
        "error": error,
        "form": form or {},
    }
    return render_page(call, "kb_misses.html", context, status=status)


class MissesPageQuery(MissGroupQuery):
    added: int | None = Field(None, ge=1, description="刚添加了相似问法的条目")


@routes.page(
    "GET",
    "/knowledge/misses",
    title="机器人未解决的问题",
    roles=MISS_READERS,
    query=MissesPageQuery,
    name="knowledge_misses_page",
)
async def knowledge_misses_page(call: Call[None]) -> web.Response:
    return await _misses_view(call, call.query, added=call.query.added)


def _alternative_body(form: AlternativeForm) -> AlternativeIn:
    """The page form as an API body: ``miss_ids`` is comma-separated there."""
    parts = [p.strip() for p in form.miss_ids.split(",") if p.strip()]
    if not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in parts):
        raise KnowledgeInvalid("kb.invalid_entry", "未解决问题编号有误")
    try:
        return AlternativeIn(
            entry_id=form.entry_id, question=form.question, miss_ids=[int(p) for p in parts]
        )
    except ValidationError as exc:
        raise KnowledgeInvalid("kb.invalid_entry", describe(exc)) from None


@routes.page(
    "POST",
    "/knowledge/misses/alternative",
    title="添加为相似问法",
    roles=EDITORS,
    form=AlternativeForm,
    name="knowledge_miss_alternative",
    errors=(403, 404, 409, 422),
)
async def knowledge_miss_alternative(call: Call[AlternativeForm]) -> web.Response:
    if call.body is None:
        return await _misses_view(
            call,
            MissGroupQuery(),
            error=call.invalid.message if call.invalid else "输入有误",
            form=call.form,
            status=422,
        )
    try:
        entry = await _add_alternative(call, _alternative_body(call.body))
    except (KnowledgeError, Forbidden, NotFound) as exc:
        refusal = console_error(exc)
        return await _misses_view(
            call, MissGroupQuery(), error=refusal.message, form=call.form, status=refusal.status
        )
    return see_other(f"/knowledge/misses?added={entry.id}")


@routes.page(
    "GET",
    "/knowledge/new",
    title="新建知识条目",
    roles=EDITORS,
    query=NewEntryQuery,
    name="knowledge_new_page",
    errors=(404,),
)
async def knowledge_new_page(call: Call[None]) -> web.Response:
    form: dict[str, str] = {}
    if call.query.miss is not None:
        miss = None
        if not call.scope.nothing:
            async with call.db() as db:
                miss = await kb.get_miss(db, call.query.miss, department=call.scope.department)
        if miss is None:
            raise NotFound("该未解决问题不存在")
        form = {"question": miss.question_text[:200]}
    return await _entry_page(call, None, form=form)


@routes.page(
    "POST",
    "/knowledge/new",
    title="新建知识条目",
    roles=EDITORS,
    form=EntryForm,
    name="knowledge_create",
    errors=(409, 422),
)
async def knowledge_create(call: Call[EntryForm]) -> web.Response:
    if call.body is None:
        return await _entry_page(
            call,
            None,
            form=call.form,
            error=call.invalid.message if call.invalid else None,
            status=422,
        )
    try:
        entry = await _create(call, _form_body(call.body))
    except (KnowledgeError, Forbidden) as exc:
        refusal = console_error(exc)
        return await _entry_page(
            call, None, form=call.form, error=refusal.message, status=refusal.status
        )
    return see_other(f"/knowledge/{entry.id}?saved=1")


class SavedQuery(Model):
    saved: int | None = None


@routes.page(
    "GET",
    "/knowledge/{entry_id}",
    title="知识条目",
    roles=READERS,
    query=SavedQuery,
    name="knowledge_entry_page",
    errors=(404,),
)
async def knowledge_entry_page(call: Call[None]) -> web.Response:
    entry_id = _entry_id(call)
    async with call.db() as db:
        entry = await kb.get_entry(db, entry_id)
        history = _revisions(await kb.entry_history(db, entry_id))
    return await _entry_page(call, entry, history=history, saved=bool(call.query.saved))


async def _reload_page(call: Call[Any], entry_id: int, error: str, status: int) -> web.Response:
    async with call.db() as db:
        entry = await kb.get_entry(db, entry_id)
        history = _revisions(await kb.entry_history(db, entry_id))
    return await _entry_page(
        call, entry, form=call.form or None, error=error, status=status, history=history
    )


async def _refused(call: Call[Any], entry_id: int, exc: KnowledgeError | Forbidden) -> web.Response:
    """The entry page again with the refusal; a missing entry stays a 404."""
    refusal = console_error(exc)
    if refusal.status == 404:
        raise exc
    return await _reload_page(call, entry_id, refusal.message, refusal.status)


@routes.page(
    "POST",
    "/knowledge/{entry_id}",
    title="修改知识条目",
    roles=EDITORS,
    form=EntryForm,
    name="knowledge_update",
    errors=(404, 409, 422),
)
async def knowledge_update(call: Call[EntryForm]) -> web.Response:
    entry_id = _entry_id(call)
    if call.body is None or call.body.expected_version is None:
        return await _reload_page(
            call,
            entry_id,
            call.invalid.message if call.invalid else "缺少版本号，请刷新后重试",
            422,
        )
    try:
        await _update(call, entry_id, _form_body(call.body), call.body.expected_version)
    except (KnowledgeError, Forbidden) as exc:
        return await _refused(call, entry_id, exc)
    return see_other(f"/knowledge/{entry_id}?saved=1")


async def _status_form(call: Call[StatusForm], action: str) -> web.Response:
    entry_id = _entry_id(call)
    if call.body is None:
        return await _reload_page(
            call, entry_id, call.invalid.message if call.invalid else "输入有误", 422
        )
    try:
        await _set_status(call, entry_id, action, call.body.expected_version)
    except (KnowledgeError, Forbidden) as exc:
        return await _refused(call, entry_id, exc)
    return see_other(f"/knowledge/{entry_id}?saved=1")


@routes.page(
    "POST",
    "/knowledge/{entry_id}/publish",
    title="发布知识条目",
    roles=EDITORS,
    form=StatusForm,
    name="knowledge_publish",
    errors=(404, 409, 422),
)
async def knowledge_publish(call: Call[StatusForm]) -> web.Response:
    return await _status_form(call, "publish")


@routes.page(
    "POST",
    "/knowledge/{entry_id}/archive",
    title="归档知识条目",
    roles=EDITORS,
    form=StatusForm,
    name="knowledge_archive",
    errors=(404, 409, 422),
)
async def knowledge_archive(call: Call[StatusForm]) -> web.Response:
    return await _status_form(call, "archive")
