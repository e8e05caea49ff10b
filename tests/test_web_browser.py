"""The viewer in a real browser (Playwright driving Debian's chromium, which `make install` installs).

`warrior web` runs as a subprocess on a free loopback port while two campaigns run on the real local
stack with the zero-latency test engine (instant fake outputs: the pages are about the records, not
model quality), the first one's page open in the browser; the second builds a second version of the
same dataset, so there are two versions to compare. Each test opens pages and checks what they show
against the records the CLI reads. The page checks are scripts/screenshots.py's, the ones `make
screenshots` runs on the demo. A screenshot of every page goes to $WARRIOR_SCREENSHOTS_DIR (default:
the test's temporary folder).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[1]
ZLT = "zero-latency-test"
PAGE = 3  # battles and rows a page: small, so that there are pages to move through


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("warrior_screenshots_script", ROOT / "scripts" / "screenshots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


shots = _load_script()


def _config(campaign: str, per_expert: int) -> dict[str, Any]:
    return {
        "campaign": campaign,
        "experts": [{"name": n, "engine": ZLT} for n in ("alpha", "beta", "gamma")],
        "mining": {"per_expert": per_expert},
        # The test engine's ratings are hash-random around 5.5: some instructions are dropped at screening.
        "screening": {"rating": {"min_score": 5.0}},
        # Its verdicts are hash-random too: count every judge, so the judge panel shows each as trusted.
        "scoring": {"bootstrap_rounds": 20, "max_flip_rate": 1.0},
        "dataset": {"name": "arena-web"},
    }


@dataclass
class Arena:
    records: Any  # scripts/screenshots.py's Records
    base: str
    shots: Path
    tour: Any
    live: Any  # the first campaign's page, opened while it ran
    opened_as: str  # the status that page showed when it opened


@pytest.fixture(scope="module")
def arena(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    import redis

    from warrior.cli import campaign as ops
    from warrior.cli.stack import LocalStack
    from warrior.common.campaign_config import parse_campaign_config
    from warrior.common.celery_app import make_celery
    from warrior.common.runtime import get_runtime

    shots.require_chromium()  # before the campaigns: a missing browser fails at once
    folder = tmp_path_factory.mktemp("web-browser")
    redis.Redis.from_url(redis_server).flushall()
    env = {
        "REDIS_URL": redis_server,
        "WARRIOR_HOME": str(folder / "home"),
        "WARRIOR_STORE_URL": f"file://{folder / 'store'}",
        "WARRIOR_REGISTRY_TTL_S": "3",
    }
    shots_dir = Path(os.environ.get("WARRIOR_SCREENSHOTS_DIR") or folder / "screenshots")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        get_runtime.cache_clear()
        rt = get_runtime()
        app = make_celery("tests-web")
        first = parse_campaign_config(_config("web-arena", per_expert=5))
        stack = LocalStack()
        stack.up(first, timeout_s=180, echo=lambda *_: None)
        try:
            with shots.viewer(dict(os.environ), folder / "web.log") as base, shots.chromium_page() as page:
                live = page.context.new_page()
                for config in (first, parse_campaign_config(_config("web-arena-2", per_expert=2))):
                    campaign = ops.start(rt, app, config)
                    if live.url == "about:blank":
                        # The first campaign's page, opened while it runs and never reloaded after.
                        live.goto(f"{base}/campaigns/{campaign}")
                        live.evaluate("window.openedWhileRunning = true")
                        opened_as = live.locator("[data-testid=campaign-status]").inner_text()
                    ops.wait(rt, campaign, timeout_s=120, interval_s=0.5, until="finished")
                    ops.build_dataset(app, campaign, "arena-web")  # the controller's version: the same one
                # The leaderboard as `warrior leaderboard --json` reads it: the scorer's finalize.
                final = ops.finalize(app, "web-arena")
                records = shots.read_records(rt, "web-arena", leaderboard=final, dataset="arena-web")
                tour = shots.Tour(page, base, shots_dir, page_size=PAGE)
                yield Arena(records=records, base=base, shots=shots_dir, tour=tour, live=live, opened_as=opened_as)
        finally:
            stack.down(echo=lambda *_: None)
            app.close()
            get_runtime.cache_clear()


def test_the_fixture_has_what_the_pages_need(arena: Arena) -> None:
    r = arena.records
    assert r.status["status"] == "finished"
    assert r.status["instructions"]["dropped"], "no instruction dropped at screening: the drop table is untested"
    assert len(r.battle_ids) > PAGE, "one page of battles: paging is untested"
    assert len(r.rows) > PAGE and len(r.versions) == 2 and r.diff is not None
    assert {j["judge"] for j in r.battle["judgments"]} == {"alpha", "beta", "gamma"}


def test_campaign_list_links_to_the_campaign_page_with_progress_and_drop_reasons(arena: Arena) -> None:
    arena.tour.campaigns(arena.records)
    arena.tour.campaign(arena.records)


def test_campaign_page_opened_while_running_follows_it_to_the_end_without_reloading(arena: Arena) -> None:
    from playwright.sync_api import expect

    assert arena.opened_as != "finished", "the campaign had finished before its page opened: nothing to follow"
    status = arena.records.status
    # The page polls its progress fragment every 3 s until the campaign is finished.
    expect(arena.live.locator("[data-testid=campaign-status]")).to_have_text("finished", timeout=20_000)
    finished = arena.live.locator("[data-testid=stage-count][data-stage=finished]")
    expect(finished).to_have_text(str(status["finished"]))
    expect(arena.live.locator("#progress-bar")).to_have_attribute("data-done", str(status["instructions"]["kept"]))
    assert arena.live.evaluate("window.openedWhileRunning") is True, "the page was reloaded"


def test_leaderboard_order_and_intervals_are_the_scorers(arena: Arena) -> None:
    arena.tour.leaderboard(arena.records)


def test_battles_page_through_every_battle_once(arena: Arena) -> None:
    arena.tour.battles(arena.records)


def test_battle_shows_every_answer_and_every_judges_verdicts_in_both_orders(arena: Arena) -> None:
    arena.tour.battle(arena.records)


def test_dataset_rows_page_and_their_lineage_links_to_the_battle(arena: Arena) -> None:
    arena.tour.datasets(arena.records)
    arena.tour.dataset(arena.records)
    arena.tour.version(arena.records)


def test_diff_of_the_two_versions_counts_what_changed(arena: Arena) -> None:
    arena.tour.diff(arena.records)


def test_flywheel_page_says_there_is_no_report_yet(arena: Arena) -> None:
    assert arena.records.flywheels == []
    arena.tour.flywheel(arena.records)


def test_a_viewer_with_a_token_asks_for_it_once_and_keeps_it_out_of_the_cookie(arena: Arena, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    token = "web-browser-test-token-4f1c"
    env = dict(os.environ) | {"WARRIOR_GRPC_TOKEN": token}
    leaderboard = f"/campaigns/{arena.records.campaign}/leaderboard"
    with shots.viewer(env, tmp_path / "web-token.log") as base:
        context = arena.tour.page.context.browser.new_context(viewport=shots.VIEWPORT)  # its own cookie jar
        try:
            page = context.new_page()
            reply = page.goto(base + leaderboard)
            assert reply is not None and reply.status == 401
            expect(page.locator("table#leaderboard")).to_have_count(0)
            page.locator("#token").fill("not-the-token")
            page.locator("#login-submit").click()
            expect(page.locator("#login-error")).to_be_visible()
            page.locator("#token").fill(token)
            page.locator("#login-submit").click()
            page.wait_for_url(f"**{leaderboard}")  # back to the page first asked for
            rows = page.locator("table#leaderboard tr[data-testid=leaderboard-row]")
            expect(rows).to_have_count(len(arena.records.leaderboard))
            again = page.goto(base + "/datasets")  # the cookie opens the other pages too
            assert again is not None and again.status == 200
            cookies = context.cookies()
            assert cookies and all(token not in c["value"] for c in cookies)
        finally:
            context.close()
