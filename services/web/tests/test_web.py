"""The viewer's pages against a small real campaign (see conftest.py): what a user reads on each page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from warrior.common.security import TokenSource
from warrior.web.app import create_app
from warrior.web.main import BindRefused, check_bind, is_loopback

CAMPAIGN = "webtest"


def _attr(html: str, testid: str, **data: str) -> list[str]:
    """The text of the cells (td/span/p, no nesting) with data-testid=testid and the given data-* attributes."""
    found = []
    for match in re.finditer(r"<(td|span|p|strong)([^>]*)>(.*?)</\1>", html, re.S):
        attrs = match.group(2)
        if f'data-testid="{testid}"' in attrs and all(f'data-{k}="{v}"' in attrs for k, v in data.items()):
            found.append(re.sub(r"<[^>]+>", "", match.group(3)).strip())
    return found


def test_leaderboard_shows_the_snapshot_order_and_intervals(web: TestClient, arena: dict[str, Any]) -> None:
    snapshot = arena["store"].get_json(arena["synthetic"].ratings_key)
    page = web.get(f"/campaigns/{CAMPAIGN}/leaderboard")
    assert page.status_code == 200
    experts = re.findall(r'data-testid="leaderboard-row" data-expert="([^"]+)"', page.text)
    # The synthetic experts' pass rates order them; the page keeps the snapshot's (rating) order.
    assert experts == [r["expert"] for r in snapshot["leaderboard"]] == ["alpha-coder", "beta-coder", "gamma-coder",
                                                                         "delta-coder"]  # fmt: skip
    top = snapshot["leaderboard"][0]
    row = re.search(r'data-expert="alpha-coder" data-rank="1">(.*?)</tr>', page.text, re.S)
    assert row
    assert f'data-testid="rating">{top["rating"]}<' in row.group(1)
    assert f'data-testid="ci-low">{top["ci_low"]}<' in row.group(1)
    assert f'data-testid="ci-high">{top["ci_high"]}<' in row.group(1)
    assert top["ci_low"] < top["rating"] < top["ci_high"]
    assert '<svg id="interval-plot"' in page.text and page.text.count('data-testid="interval"') == 4
    assert 'id="category-win-rates"' in page.text and ">generation<" in page.text
    judges = re.findall(r'data-testid="judge-row" data-judge="([^"]+)"', page.text)
    assert sorted(judges) == sorted(snapshot["judges"])


def test_preload_reads_the_newest_snapshots(arena: dict[str, Any]) -> None:
    from warrior.web.data import Viewer

    viewer = Viewer(arena["client"], arena["store"])
    viewer.preload(campaigns=10)
    key = arena["synthetic"].ratings_key
    assert viewer._snapshots.get(key, lambda: pytest.fail("the snapshot was not preloaded"))["battles"] > 0


def test_battle_page_shows_answers_tests_and_every_verdict(web: TestClient, arena: dict[str, Any]) -> None:
    iid = arena["synthetic"].instructions[0]
    battle = arena["store"].get_json(f"runs/{CAMPAIGN}/battles/{iid}.json")
    page = web.get(f"/campaigns/{CAMPAIGN}/battles/{iid}")
    assert page.status_code == 200
    assert battle["instruction"].split("`")[1] in page.text
    for name in battle["competitors"]:
        assert f'data-testid="answer" data-expert="{name}"' in page.text
    assert 'class="hl"' in page.text  # the code is highlighted by Pygments
    for test in battle["execution"]["tests"]:
        assert f'data-testid="test-row" data-test="{test["id"]}"' in page.text
    rows = re.findall(r'data-testid="verdict-row" data-judge="([^"]+)" data-a="([^"]+)" data-b="([^"]+)"', page.text)
    assert sorted(rows) == sorted((j["judge"], j["a"], j["b"]) for j in battle["judgments"])
    llm = next(j for j in battle["judgments"] if j["source"] == "llm")
    row = re.search(rf'data-judge="{llm["judge"]}" data-a="{llm["a"]}" data-b="{llm["b"]}"[^>]*>(.*?)</tr>',
                    page.text, re.S)  # fmt: skip
    assert row
    assert f'data-testid="forward">{llm["forward"]["verdict"]}<' in row.group(1)
    assert f'data-testid="backward">{llm["backward"]["verdict"]} ' in row.group(1)
    for pair in battle["pairs"]:
        row = re.search(
            rf'data-testid="pair-row" data-a="{pair["a"]}" data-b="{pair["b"]}">(.*?)</tr>', page.text, re.S
        )
        assert row and _attr(row.group(1), "source") == [pair["source"]]
        assert _attr(row.group(1), "votes-a") == [str(pair["votes_a"])]
    snapshot = arena["store"].get_json(arena["synthetic"].ratings_key)
    assert f'id="winner" class="winner" data-final="true">{snapshot["winners"][iid]["winner"]}<' in page.text


def test_battle_list_pages_with_a_cursor(web: TestClient, arena: dict[str, Any]) -> None:
    ids = arena["synthetic"].instructions
    seen: list[str] = []
    url = f"/campaigns/{CAMPAIGN}/battles?limit=15"
    while url:
        page = web.get(url)
        assert page.status_code == 200
        seen += re.findall(r'data-testid="battle-row" data-battle="([^"]+)"', page.text)
        nxt = re.search(r'id="next-page" href="([^"]+)"', page.text)
        url = f"/campaigns/{CAMPAIGN}/battles" + nxt.group(1).replace("&amp;", "&") if nxt else ""
    assert seen == ids  # every battle once, in id order, over pages of 15
    first = web.get(f"/campaigns/{CAMPAIGN}/battles?limit=15")
    assert f"?after={ids[14]}&amp;limit=15" in first.text


def test_dataset_rows_link_to_their_battles_and_versions_diff(web: TestClient, arena: dict[str, Any]) -> None:
    synthetic = arena["synthetic"]
    old, new = synthetic.versions
    page = web.get(f"/datasets/{synthetic.dataset}/versions/{new}?limit=10&offset=5")
    assert page.status_code == 200
    links = re.findall(r'<a data-testid="lineage-link" href="([^"]+)"', page.text)
    assert len(links) == 10
    assert links[0].startswith(f"/campaigns/{CAMPAIGN}/battles/")
    assert web.get(links[0]).status_code == 200  # the row's battle opens
    assert 'id="next-page" href="?offset=15&amp;limit=10"' in page.text
    assert 'id="card"' not in page.text and 'id="card"' in web.get(f"/datasets/{synthetic.dataset}/versions/{new}").text
    diff = web.get(f"/datasets/{synthetic.dataset}/diff?a={old}&b={new}")
    summary = re.search(r'id="diff-summary" data-added="(\d+)" data-removed="(\d+)" data-changed="(\d+)"', diff.text)
    assert summary and int(summary.group(2)) > 0 and int(summary.group(3)) > 0


def test_campaign_page_and_progress_fragment(web: TestClient, arena: dict[str, Any]) -> None:
    synthetic = arena["synthetic"]
    page = web.get(f"/campaigns/{CAMPAIGN}")
    assert page.status_code == 200
    kept = len(synthetic.instructions)
    assert _attr(page.text, "stage-count", stage="kept") == [str(kept)]
    assert f'id="progress-bar" data-done="{kept}" data-total="{kept}"' in page.text
    assert 'data-testid="drop-reason"' in page.text and 'id="timing"' in page.text
    fragment = web.get(f"/campaigns/{CAMPAIGN}/progress")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert _attr(fragment.text, "stage-count", stage="finished") == [str(kept)]
    assert f'data-campaign="{CAMPAIGN}"' in web.get("/").text
    assert web.get("/campaigns/no-such-campaign").status_code == 404


def test_flywheel_report_shows_pass_at_1_before_and_after(web: TestClient) -> None:
    page = web.get("/flywheel/fw-test")
    assert page.status_code == 200
    row = re.search(r'data-testid="pass-row" data-benchmark="humaneval">(.*?)</tr>', page.text, re.S)
    assert row and 'data-testid="before">0.250' in row.group(1) and 'data-testid="after">0.299' in row.group(1)
    # The paired evidence: trained - base per benchmark and combined, and against each ablation.
    paired = re.findall(r'<tr data-compared="([^"]+)" data-benchmark="(\w+)" data-above-zero="(\w+)">', page.text)
    assert paired == [("trained - base", "humaneval", "true"), ("trained - base", "mbpp", "false"),
                      ("trained - base", "combined", "false"), ("trained - random", "humaneval", "false")]  # fmt: skip
    assert 'data-testid="overlap">0</strong>' in page.text and "alpha-coder 20, beta-coder 7" in page.text
    assert 'data-flywheel="fw-test"' in web.get("/flywheel").text
    assert web.get("/flywheel/%2E%2E").status_code == 404 and web.get("/flywheel/nope").status_code == 404


def test_a_configured_token_is_required(arena: dict[str, Any]) -> None:
    web = TestClient(create_app(arena["viewer"], "s3cret-token"))
    refused = web.get("/", headers={"accept": "text/html"})
    assert refused.status_code == 401 and 'form id="login"' in refused.text and CAMPAIGN not in refused.text
    assert web.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert (
        web.get(f"/campaigns/{CAMPAIGN}/leaderboard", headers={"authorization": "Bearer s3cret-token"}).status_code
        == 200
    )
    assert web.get("/healthz").status_code == 200
    bad = web.post("/login", data={"token": "nope", "next": "/"}, follow_redirects=False)
    assert bad.status_code == 401 and "s3cret" not in bad.headers.get("set-cookie", "")
    good = web.post("/login", data={"token": "s3cret-token", "next": "//evil.example/"}, follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/"
    assert "s3cret-token" not in good.headers["set-cookie"]  # the cookie holds an HMAC, not the token
    assert CAMPAIGN in web.get("/").text  # the client now sends the cookie


def test_non_loopback_bind_needs_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    check_bind("127.0.0.1", None, insecure=False)
    with pytest.raises(BindRefused, match="WARRIOR_GRPC_TOKEN"):
        check_bind("0.0.0.0", None, insecure=False)
    check_bind("0.0.0.0", TokenSource.of("t0ken"), insecure=False)
    check_bind("0.0.0.0", None, insecure=True)


def test_warrior_web_refuses_a_public_address_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from warrior.cli.main import main

    monkeypatch.delenv("WARRIOR_GRPC_TOKEN", raising=False)
    monkeypatch.delenv("WARRIOR_GRPC_TOKEN_FILE", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["web", "--host", "0.0.0.0", "--port", "0"])
    assert exit_.value.code == 2
    assert "refusing to serve on 0.0.0.0 without a token" in capsys.readouterr().err


def test_a_running_campaign_without_ratings_yet(arena: dict[str, Any]) -> None:
    from warrior.common.campaign_state import CampaignState

    state = CampaignState(arena["client"], "fresh-one")
    state.create({"campaign": "fresh-one", "experts": []}, expected_mine=4)
    state.mark("mined", "i1")
    web = TestClient(create_app(arena["viewer"]))
    board = web.get("/campaigns/fresh-one/leaderboard")
    assert board.status_code == 200 and 'id="no-ratings"' in board.text
    progress = web.get("/campaigns/fresh-one/progress")
    assert 'data-finished="false"' in progress.text and _attr(progress.text, "stage-count", stage="mined") == ["1"]
    battles = web.get("/campaigns/fresh-one/battles")
    assert battles.status_code == 200 and 'id="no-battles"' in battles.text


def test_record_text_is_escaped(arena: dict[str, Any]) -> None:
    """Instructions and answers are model output: shown as text, never as markup."""
    from warrior.common.campaign_state import CampaignState

    battle = arena["store"].get_json(f"runs/{CAMPAIGN}/battles/{arena['synthetic'].instructions[1]}.json")
    battle |= {"id": "x55", "campaign": "xss", "instruction": "<script>alert(1)</script> make it <b>bold</b>"}
    battle["answers"]["alpha-coder"]["text"] = "<img src=x onerror=alert(2)>\n```python\nprint('<i>')\n```"
    CampaignState(arena["client"], "xss").create({"campaign": "xss", "experts": []}, expected_mine=1)
    arena["store"].put_json("runs/xss/battles/x55.json", battle)
    web = TestClient(create_app(arena["viewer"]))
    page = web.get("/campaigns/xss/battles/x55").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<i>" not in page.split("</style>", 1)[1]
    listing = web.get("/campaigns/xss/battles").text
    assert "<script>alert(1)" not in listing and 'data-battle="x55"' in listing


def test_unreachable_redis_is_a_503_that_says_so(arena: dict[str, Any], tmp_path: Any) -> None:
    from warrior.common.redis_client import connect
    from warrior.web.data import Viewer

    web = TestClient(create_app(Viewer(connect(f"unix://{tmp_path}/no.sock"), arena["store"])))
    page = web.get("/")
    assert page.status_code == 503 and "cannot reach Redis" in page.text
    assert web.get("/healthz").status_code == 200


def test_a_compacted_campaign_shows_the_same_pages(redis_server: str, tmp_path: Any) -> None:
    """Once the controller moved a finished campaign's per-instruction state to the store, the campaign
    list, its progress, overview and battles (categories included) read the same as before."""
    from warrior.common.campaign_state import CampaignState
    from warrior.common.redis_client import connect
    from warrior.common.store import LocalStore
    from warrior.web.data import Viewer
    from warrior.web.synthetic import write_campaign

    client, store = connect(redis_server), LocalStore(tmp_path / "store")
    write_campaign(client, store, "webcompact", 30, bootstrap_rounds=0)
    viewer = Viewer(client, store)

    def pages() -> dict[str, Any]:
        first = viewer.battles_page("webcompact", limit=5)
        return {
            "list": [c for c in viewer.campaigns() if c["campaign"] == "webcompact"],
            "progress": viewer.progress("webcompact"),
            "overview": viewer.overview("webcompact"),
            "snapshot": viewer.snapshot("webcompact"),
            "battles": first,
            "battle": viewer.battle("webcompact", first["rows"][0]["id"]),
        }

    before = pages()
    assert before["battles"]["rows"][0]["category"] is not None
    CampaignState(client, "webcompact").compact(store)
    assert not client.exists("warrior:campaign:webcompact:categories")
    assert pages() == before
    client.close()
