"""The route registry: every page, API route and socket declares who may use it, deny by default.

A feature module makes a :class:`RouteTable` and decorates its handlers::

    routes = RouteTable()

    @routes.api("GET", "/api/v1/tickets/{ticket_no}", summary="工单详情",
                roles={Role.AGENT, Role.DISPATCHER}, response=TicketOut)
    async def ticket(call: Call[None]) -> TicketOut: ...

    @routes.page("GET", "/tickets", title="工单", nav="工单", roles=ALL_ROLES, template="tickets.html")
    async def tickets_page(call: Call[None]) -> dict[str, Any]: ...

and ``app.FEATURES`` lists the table. The wrapper checks, in order: the session (401, or a redirect to the
login page for pages), the role (403), the CSRF token of a write (403), then parses the query and the body
into the declared pydantic models (400/422) and serialises the declared response model. The same
declarations generate the OpenAPI document and drive the role-matrix tests.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from agent_console import keys
from agent_console.auth import Origin
from agent_console.client import client_address
from agent_console.errors import (
    BadRequest,
    ConsoleError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooDeeplyNested,
    Unauthenticated,
    invalid_input,
)
from agent_console.models import User, UserSession
from agent_console.roles import ALL_ROLES, DataScope, Role
from agent_console.security import CSRF_FIELD, LOGIN_CSRF_COOKIE, UNSAFE_METHODS, require_csrf
from agent_console.ticket_feed import ticket_topic

SESSION_COOKIE = "hotline_session"
Kind = Literal["api", "page", "socket", "ops"]
Csrf = Literal[
    "session", "login", "none"
]  # a write needs the session's token, or the login form's double-submit
# cookie; "none" only for public API routes that ignore cookies altogether (the citizens' API)
PUBLIC: frozenset[Role] = (
    frozenset()
)  # marker: no login needed (only login, health, metrics, API document)
MAX_JSON_DEPTH = 32  # arrays and objects inside each other in a request body

B = TypeVar("B")


@dataclass
class Call(Generic[B]):
    """What a handler gets: the request, who calls, the parsed query and body, and the app's services."""

    request: web.Request
    route: Route
    session: UserSession | None
    query: Any
    body: B
    now: datetime
    form: dict[str, str] = field(
        default_factory=dict
    )  # a page form's raw fields (to show them again)
    invalid: InvalidInput | None = (
        None  # a page form that failed validation: body is None, show the errors
    )

    @property
    def user(self) -> User:
        if self.session is None:
            raise Unauthenticated()
        return self.session.user

    @property
    def role(self) -> Role:
        return Role(self.user.role)

    @property
    def scope(self) -> DataScope:
        """The slice of data this user may see (a handler's department, a grid worker's grid)."""
        return DataScope.for_user(self.user)

    def ensure_visible(self, *, department: str | None = None, grid: str | None = None) -> None:
        """Ownership check for one record: NotFound (not Forbidden, so existence is not revealed) when the
        record's department/grid lies outside this user's scope."""
        if not self.scope.allows(department=department, grid=grid):
            raise NotFound()

    @property
    def origin(self) -> Origin:
        user = self.session.user.username if self.session else None
        return Origin(user, client_address(self.request), self.request.headers.get("User-Agent"))

    @property
    def app(self) -> web.Application:
        return self.request.app

    def db(self) -> AsyncSession:
        """A new database session (``async with call.db() as db: ...``)."""
        return self.request.app[keys.SESSIONMAKER]()


Handler = Callable[[Call[Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    name: str
    summary: str
    kind: Kind
    roles: frozenset[Role]
    handler: Handler
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    csrf: Csrf = "session"
    template: str | None = None
    nav: str | None = None  # label in the navigation bar (pages), shown to the roles allowed
    errors: tuple[
        int, ...
    ] = ()  # error statuses beyond those implied by the declaration (e.g. 409, 429)
    tags: tuple[str, ...] = ()

    @property
    def public(self) -> bool:
        return self.roles == PUBLIC

    def allows(self, role: str | None) -> bool:
        return self.public or (role is not None and role in self.roles)


class RouteTable:
    """The routes of one feature module."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag
        self.routes: list[Route] = []
        self.setups: list[
            Callable[[web.Application], None]
        ] = []  # run by the app factory (caches, tasks)

    def on_setup(self, fn: Callable[[web.Application], None]) -> Callable[[web.Application], None]:
        """Register ``fn(app)``, called once by ``create_app`` before the app starts (e.g. to add a cache)."""
        self.setups.append(fn)
        return fn

    def _add(
        self,
        method: str,
        path: str,
        *,
        kind: Kind,
        summary: str,
        roles: Iterable[Role],
        name: str | None,
        **extra: Any,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.routes.append(
                Route(
                    method=method.upper(),
                    path=path,
                    name=name or handler.__name__,
                    summary=summary,
                    kind=kind,
                    roles=frozenset(roles),
                    handler=handler,
                    tags=(self.tag,) if self.tag else (),
                    **extra,
                )
            )
            return handler

        return decorate

    def api(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        roles: Iterable[Role],
        request: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        name: str | None = None,
        errors: Iterable[int] = (),
        csrf: Csrf = "session",
    ) -> Callable[[Handler], Handler]:
        """A JSON route; the handler returns an instance of ``response`` (or a web response)."""
        return self._add(
            method,
            path,
            kind="api",
            summary=summary,
            roles=roles,
            name=name,
            request=request,
            query=query,
            response=response,
            status=status,
            csrf=csrf,
            errors=tuple(errors),
        )

    def page(
        self,
        method: str,
        path: str,
        *,
        title: str,
        roles: Iterable[Role],
        template: str | None = None,
        form: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        nav: str | None = None,
        name: str | None = None,
        errors: Iterable[int] = (),
        csrf: Csrf = "session",
    ) -> Callable[[Handler], Handler]:
        """An HTML page (GET) or form target (POST); the handler returns the template's context or a response.

        A form that fails validation still reaches the handler, with ``call.invalid`` set and ``call.body`` None.
        """
        return self._add(
            method,
            path,
            kind="page",
            summary=title,
            roles=roles,
            name=name,
            template=template,
            request=form,
            query=query,
            nav=nav,
            csrf=csrf,
            errors=tuple(errors),
        )

    def socket(
        self, path: str, *, summary: str, roles: Iterable[Role] = ALL_ROLES, name: str | None = None
    ) -> Callable[[Handler], Handler]:
        return self._add("GET", path, kind="socket", summary=summary, roles=roles, name=name)

    def ops(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        roles: Iterable[Role] = PUBLIC,
        response: type[BaseModel] | None = None,
        name: str | None = None,
    ) -> Callable[[Handler], Handler]:
        """Machine endpoints (health, metrics, the API document)."""
        return self._add(
            method, path, kind="ops", summary=summary, roles=roles, name=name, response=response
        )


@dataclass
class RouteRegistry:
    """All routes of the app, in declaration order."""

    routes: list[Route] = field(default_factory=list)

    @classmethod
    def of(cls, tables: Iterable[RouteTable]) -> RouteRegistry:
        routes = [r for t in tables for r in t.routes]
        seen: set[tuple[str, str]] = set()
        names: set[str] = set()
        for r in routes:
            if (r.method, r.path) in seen or r.name in names:
                raise ValueError(f"route declared twice: {r.method} {r.path} ({r.name})")
            seen.add((r.method, r.path))
            names.add(r.name)
        return cls(routes)

    def install(self, app: web.Application) -> None:
        for route in self.routes:
            app.router.add_route(route.method, route.path, _endpoint(route), name=route.name)

    def nav_for(self, role: str) -> list[Route]:
        return [r for r in self.routes if r.nav and r.method == "GET" and r.allows(role)]


REGISTRY = web.AppKey[RouteRegistry]("registry")


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """JSON with Chinese left readable (UTF-8, not \\u escapes)."""
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def is_registered(handler: Any) -> bool:
    return getattr(handler, "__console_route__", None) is not None


async def current_session(request: web.Request) -> UserSession | None:
    """The live session of the request's cookie (looked up once per request)."""
    if keys.SESSION in request:
        return request[keys.SESSION]
    token = request.cookies.get(SESSION_COOKIE)
    session = None
    if token:
        async with request.app[keys.SESSIONMAKER]() as db:
            session = await request.app[keys.ACCOUNTS].resolve(db, token, request.app[keys.CLOCK]())
    request[keys.SESSION] = session
    return session


def login_redirect(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='/')}")


def _parse(model: type[BaseModel] | None, data: Any) -> Any:
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc) from None


async def _read_form(
    route: Route, request: web.Request
) -> tuple[Any, dict[str, str], InvalidInput | None]:
    try:
        posted = await request.post()
    except ValueError:  # e.g. multipart/form-data without a boundary
        raise BadRequest("表单格式不正确") from None
    form = {k: v for k, v in posted.items() if isinstance(v, str) and k != CSRF_FIELD}
    try:
        return _parse(route.request, form), form, None
    except InvalidInput as exc:
        return None, form, exc


def _nesting_depth(data: Any) -> int:
    """How many arrays and objects lie inside each other in ``data`` (iterative: any depth is safe)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = (
            value.values()
            if isinstance(value, dict)
            else value
            if isinstance(value, list)
            else None
        )
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


async def read_json(request: web.Request) -> Any:
    """The request's JSON body: BadRequest when it is not JSON or nested deeper than ``MAX_JSON_DEPTH``,
    PayloadTooLarge (413) past the app's ``client_max_size``."""
    if request.content_type != "application/json":
        raise BadRequest("请求体须为 JSON（Content-Type: application/json）")
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("请求体不是有效的 JSON") from None
    except RecursionError:  # the decoder's own limit, far beyond MAX_JSON_DEPTH
        raise TooDeeplyNested() from None
    if _nesting_depth(data) > MAX_JSON_DEPTH:
        raise TooDeeplyNested()
    return data


async def _read_body(route: Route, request: web.Request) -> Any:
    if route.request is None:
        return None
    return _parse(route.request, await read_json(request))


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        session = await current_session(request)
        if not route.public:
            if session is None:
                if route.kind == "page" and request.method == "GET":
                    raise login_redirect(request)
                raise Unauthenticated()
            if session.user.role not in route.roles:
                raise Forbidden()
        if request.method in UNSAFE_METHODS and not (route.csrf == "none" and route.public):
            expected = (
                request.cookies.get(LOGIN_CSRF_COOKIE)
                if route.csrf == "login"
                else (session.csrf_token if session else None)
            )
            await require_csrf(request, expected)
        query = _parse(route.query, dict(request.query)) if route.query else None
        now = request.app[keys.CLOCK]()
        if route.kind == "page" and route.request is not None:
            body, form, invalid = await _read_form(route, request)
            call: Call[Any] = Call(request, route, session, query, body, now, form, invalid)
        else:
            call = Call(request, route, session, query, await _read_body(route, request), now)
        result = await route.handler(call)
        if isinstance(result, web.StreamResponse):
            return result
        if route.kind == "page":
            return render_page(call, route.template or "", result)
        if isinstance(result, BaseModel):
            return json_response(result.model_dump(mode="json"), status=route.status)
        raise TypeError(f"{route.name} returned {type(result).__name__}")

    endpoint.__console_route__ = route  # type: ignore[attr-defined]
    return endpoint


def page_context(request: web.Request, session: UserSession | None, title: str) -> dict[str, Any]:
    """What the base layout needs: the user, the navigation for their role, the CSRF token."""
    registry = request.app[REGISTRY]
    user = session.user if session else None
    role = Role(user.role) if user else None
    nav = (
        [
            {"label": r.nav, "path": r.path, "active": r.path == request.path}
            for r in registry.nav_for(role)
        ]
        if role
        else []
    )
    return {
        "title": title,
        "user": user,
        "role": role,
        "role_label": role.label if role else "",
        "nav": nav,
        "csrf_token": session.csrf_token if session else "",
        "ticket_topic": ticket_topic(user) if user else "",  # live ticket changes (ticket_feed)
        "static": _static_url(request),
    }


def render_page(
    call: Call[Any], template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    full = page_context(call.request, call.session, call.route.summary) | dict(context)
    return aiohttp_jinja2.render_template(template, call.request, full, status=status)


def render_error(
    request: web.Request, session: UserSession | None, error: ConsoleError
) -> web.Response:
    context = page_context(request, session, error.message) | {"error": error}
    return aiohttp_jinja2.render_template("error.html", request, context, status=error.status)


def _static_url(request: web.Request) -> Callable[[str], str]:
    static = request.app.router["static"]

    def url(filename: str) -> str:
        return str(static.url_for(filename=filename))

    return url
