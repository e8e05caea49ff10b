"""The viewer's pages: FastAPI routes rendering Jinja2 templates, every page a plain GET URL.

With a token configured (WARRIOR_GRPC_TOKEN or WARRIOR_GRPC_TOKEN_FILE, as the experts read it) every
page except /healthz needs it: an ``Authorization: Bearer <token>`` header, or the cookie the /login
form sets (an HMAC of the token, never the token itself), both compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from warrior.common.security import TokenSource, bearer_matches
from warrior.common.store import InvalidKey, StoreUnavailable
from warrior.scorer.judge_panel import order_verdict
from warrior.web import render
from warrior.web.data import NotFound, Viewer

COOKIE = "warrior_web"
PAGE_SIZE = 50
MAX_PAGE = 500
_OPEN = ("/healthz", "/login")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals.update(
    highlight_css=render.highlight_css(),
    answer=render.answer,
    code=render.code,
    quote=lambda s: quote(str(s), safe=""),
)
TEMPLATES.env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(t or 0)))
TEMPLATES.env.filters["pct"] = lambda v: "" if v is None else f"{100.0 * float(v):.1f}%"
TEMPLATES.env.filters["num"] = lambda v: "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _session(token: str) -> str:
    """The cookie value for a token: an HMAC of it, so the cookie never holds the token."""
    return hmac.new(token.encode("ascii"), b"warrior-web-session", hashlib.sha256).hexdigest()


def _cookie_ok(value: str, tokens: tuple[str, ...]) -> bool:
    found = False
    for token in tokens:  # compare every candidate: the time taken does not tell which matched
        found |= hmac.compare_digest(value.encode("utf-8", "replace"), _session(token).encode("ascii"))
    return found


def _safe_next(target: str) -> str:
    """Only a path on this site (no scheme, no host, no //host) is a place to go back to after logging in."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def create_app(viewer: Viewer, token: TokenSource | str | None = None) -> FastAPI:
    """The viewer's application over `viewer`; with `token`, every page but /healthz and /login needs it."""
    tokens = TokenSource.of(token)
    app = FastAPI(title="WarriorCoder Arena viewer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.viewer = viewer

    def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context |= {"auth": tokens is not None}
        return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if tokens is None or request.url.path in _OPEN:
            return await call_next(request)
        accepted = tokens.accepted()
        header = request.headers.getlist("authorization")
        cookie = request.cookies.get(COOKIE, "")
        if bearer_matches(header, accepted) or (cookie and _cookie_ok(cookie, accepted)):
            return await call_next(request)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return page(request, "login.html", 401, next=target, error=bool(header or cookie))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> HTMLResponse:
        return page(request, "error.html", 404, message=str(exc), title="Not found")

    @app.exception_handler(InvalidKey)
    async def not_a_key(request: Request, exc: InvalidKey) -> HTMLResponse:
        return page(request, "error.html", 404, message=f"nothing is stored under {exc.key!r}", title="Not found")

    @app.exception_handler(redis.exceptions.ConnectionError)
    async def redis_down(request: Request, exc: redis.exceptions.ConnectionError) -> HTMLResponse:
        message = f"cannot reach Redis: {exc}; start the stack (`warrior up`) or point REDIS_URL at one"
        return page(request, "error.html", 503, title="Redis unreachable", message=message)

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable) -> HTMLResponse:
        return page(request, "error.html", 503, title="Object store unreachable", message=str(exc))

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Redis and store reads block: keep them off the event loop.
        return await run_in_threadpool(fn, *args, **kwargs)

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return page(request, "login.html", next=_safe_next(next), error=False)

    @app.post("/login")
    async def login(request: Request, token: str = Form(""), next: str = Form("/")) -> Response:
        if tokens is None:
            return RedirectResponse(_safe_next(next), status_code=303)
        if not bearer_matches([f"Bearer {token}"], tokens.accepted()):
            return page(request, "login.html", 401, next=_safe_next(next), error=True)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(COOKIE, _session(token.strip()), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", max_age=7 * 24 * 3600)  # fmt: skip
        return response

    @app.get("/", response_class=HTMLResponse)
    async def campaigns(request: Request) -> HTMLResponse:
        return page(request, "campaigns.html", campaigns=await run(viewer.campaigns))

    @app.get("/campaigns/{campaign}", response_class=HTMLResponse)
    async def campaign(request: Request, campaign: str) -> HTMLResponse:
        overview = await run(viewer.overview, campaign)
        progress = await run(viewer.progress, campaign)
        return page(request, "campaign.html", campaign=campaign, snap=overview, p=progress)

    @app.get("/campaigns/{campaign}/progress", response_class=HTMLResponse)
    async def progress(request: Request, campaign: str) -> HTMLResponse:
        return page(request, "progress.html", campaign=campaign, p=await run(viewer.progress, campaign))

    @app.get("/campaigns/{campaign}/leaderboard", response_class=HTMLResponse)
    async def leaderboard(request: Request, campaign: str) -> HTMLResponse:
        snapshot = await run(viewer.ratings, campaign)
        board = snapshot["leaderboard"] if snapshot else []
        categories = sorted({c for row in board for c in row.get("categories", {})})
        return page(request, "leaderboard.html", campaign=campaign, snapshot=snapshot, board=board,
                    categories=categories, judges=(snapshot or {}).get("judges", {}),
                    plot=render.interval_plot(board), key=viewer.ratings_key(campaign))  # fmt: skip

    @app.get("/campaigns/{campaign}/battles", response_class=HTMLResponse)
    async def battles(
        request: Request, campaign: str, after: str = "", limit: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE)
    ) -> HTMLResponse:
        result = await run(viewer.battles_page, campaign, after, limit)
        return page(request, "battles.html", campaign=campaign, result=result, limit=limit)

    @app.get("/campaigns/{campaign}/battles/{iid}", response_class=HTMLResponse)
    async def battle(request: Request, campaign: str, iid: str) -> HTMLResponse:
        b = await run(viewer.battle, campaign, iid)
        execution = b.get("execution") or {}
        runs = {(r["answer"], r["test"]): r for r in execution.get("runs", [])}
        verdicts = []
        for j in b["judgments"]:
            llm = j.get("source", "llm") == "llm"
            verdicts.append(j | {
                "forward_verdict": order_verdict(j["forward"]) if llm and "forward" in j else None,
                "backward_verdict": order_verdict(j["backward"]) if llm and "backward" in j else None,
            })  # fmt: skip
        return page(request, "battle.html", campaign=campaign, b=b, execution=execution, runs=runs,
                    verdicts=verdicts, language=str(execution.get("language") or "python"))  # fmt: skip

    @app.get("/datasets", response_class=HTMLResponse)
    async def datasets(request: Request) -> HTMLResponse:
        return page(request, "datasets.html", datasets=await run(viewer.datasets))

    @app.get("/datasets/{name}", response_class=HTMLResponse)
    async def dataset(request: Request, name: str) -> HTMLResponse:
        versions = await run(viewer.versions, name)
        return page(request, "dataset.html", name=name, versions=list(reversed(versions)))

    @app.get("/datasets/{name}/versions/{version}", response_class=HTMLResponse)
    async def version(
        request: Request, name: str, version: str, offset: int = Query(0, ge=0),
        limit: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE),
    ) -> HTMLResponse:  # fmt: skip
        manifest = await run(viewer.manifest, name, version)
        rows = await run(viewer.rows, manifest, offset, limit)
        card = render.markdown(await run(viewer.card, manifest)) if offset == 0 else None
        return page(request, "version.html", name=name, m=manifest, rows=rows, offset=offset, limit=limit,
                    card=card, next=offset + limit if offset + limit < manifest["rows"] else None)  # fmt: skip

    @app.get("/datasets/{name}/diff", response_class=HTMLResponse)
    async def diff(request: Request, name: str, a: str = "", b: str = "") -> HTMLResponse:
        if not a or not b:
            versions = [v["version"] for v in await run(viewer.versions, name)]
            if len(versions) < 2:
                raise NotFound(f"dataset {name!r} has {len(versions)} version(s): nothing to compare")
            a, b = a or versions[-2], b or versions[-1]
        d = await run(viewer.diff, name, a, b)
        return page(request, "diff.html", name=name, a=a, b=b, d=d, shown=200, status_code=200 if d else 202)

    @app.get("/flywheel", response_class=HTMLResponse)
    async def flywheels(request: Request) -> HTMLResponse:
        return page(request, "flywheels.html", flywheels=await run(viewer.flywheels), evals=await run(viewer.evals))

    @app.get("/flywheel/{flywheel}", response_class=HTMLResponse)
    async def flywheel(request: Request, flywheel: str) -> HTMLResponse:
        report = await run(viewer.flywheel, flywheel)
        return page(request, "flywheel.html", id=flywheel, turns=report.get("turns") or [report],
                    bars=render.pass_bars, comparisons=render.ablation_comparisons)  # fmt: skip

    return app
