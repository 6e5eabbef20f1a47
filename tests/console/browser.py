#!/usr/bin/env python3
"""The console in Debian's Chromium, driven by Playwright (tests/tests/console.rs runs it).

    browser.py EXPECTED.json RESULTS.json

EXPECTED (written by the Rust test from the database): the base URL, the login tokens, the
population counts, a hostage's id, the churn queue's first ids in order, customers to compare
with the API, their points (folded from the stored state) and one whose refund clawed points
back, the size of the rewards catalogue, the what-if to run, axe-core's path and the
artefacts directory.

Every page is loaded in English and Japanese; on each: no console error, no request to anything
but 127.0.0.1, axe-core finds no serious or critical violation, and a PNG screenshot is saved.
RESULTS gets the failures and the what-if's figures (the Rust test compares them with a real
recompute). Exit 1 when anything failed.
"""
import csv
import io
import json
import re
import sys
import time
import urllib.parse

from playwright.sync_api import sync_playwright

expected = json.load(open(sys.argv[1]))
results_path = sys.argv[2]
BASE = expected["base"].rstrip("/")
AXE = open(expected["axe"]).read()
ART = expected["artifacts"]
failures = []
results = {"failures": failures, "screenshots": [], "pages": 0}


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


class Watch:
    """Console errors and requests of a page."""

    def __init__(self, page, name):
        self.name = name
        self.errors = []
        self.outside = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", self.request)

    def request(self, req):
        host = urllib.parse.urlparse(req.url).hostname
        if req.url.startswith("data:") or req.url.startswith("about:"):
            return
        if host != "127.0.0.1":
            self.outside.append(req.url)

    def verify(self):
        check(not self.errors, f"{self.name}: browser console errors {self.errors}")
        check(not self.outside, f"{self.name}: requests left the deployment {self.outside}")


def axe(page, name):
    page.evaluate(AXE)
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))"
    )
    bad = [v for v in found if v["impact"] in ("serious", "critical")]
    check(not bad, f"{name}: axe-core serious/critical violations {bad}")


def visit(page, path, name, lang):
    """Loads a page, checks it, screenshots it."""
    resp = page.goto(BASE + path)
    check(resp is not None and resp.status == 200, f"{name} ({lang}): HTTP {resp and resp.status}")
    check(page.locator("html").get_attribute("lang") == lang, f"{name}: html lang is not {lang}")
    axe(page, f"{name} ({lang})")
    shot = f"{ART}/{name}-{lang}.png"
    page.screenshot(path=shot, full_page=True)
    results["screenshots"].append(shot)
    results["pages"] += 1
    return resp


def login(browser, token, lang="en"):
    ctx = browser.new_context(
        locale="ja-JP" if lang == "ja" else "en-US",
        extra_http_headers={"Accept-Language": "ja" if lang == "ja" else "en"},
        bypass_csp=True,  # so axe-core can be injected; the pages themselves run no script
        viewport={"width": 1400, "height": 1000},
    )
    # Anything not on 127.0.0.1 is refused (and recorded by Watch).
    ctx.route(re.compile(r"^(?!http://127\.0\.0\.1[:/]).*"), lambda r: r.abort())
    page = ctx.new_page()
    watch = Watch(page, f"{lang}/{token[:5]}")
    page.goto(BASE + "/console/")
    check("/console/login" in page.url, "an anonymous visit goes to the login page")
    page.fill("#token", token)
    with page.expect_navigation():
        page.click("button[type=submit]")
    return ctx, page, watch


def numbers(page, table):
    out = {}
    for row in page.locator(f"table#{table} tbody tr").all():
        key = row.get_attribute("data-key")
        out[key] = int(row.locator("td").get_attribute("data-value"))
    return out


def api(page, path):
    r = page.request.get(BASE + path, headers={"Authorization": "Bearer " + expected["api_token"]})
    return r.status, (r.json() if r.ok else None)


def close(a, b, tol=1e-6):
    return a is not None and b is not None and abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def field(page, name):
    loc = page.locator(f"[data-field={name}]")
    return loc.get_attribute("data-value") if loc.count() else None


with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])

    # Login: a wrong token is refused, on the login page.
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(BASE + "/console/login")
    page.fill("#token", "not-a-token")
    with page.expect_navigation():
        page.click("button[type=submit]")
    check(page.locator("#login-error").count() == 1, "a wrong token is refused")
    cookies = [c for c in ctx.cookies() if c["name"] == "kizuna_session"]
    check(not cookies, "no session cookie for a wrong token")
    # The demo's login link logs in and drops the token from the address bar.
    page.goto(BASE + "/console/login?token=" + urllib.parse.quote(expected["viewer_token"]))
    check(page.url == BASE + "/console/", f"the login link opens the overview: {page.url}")
    ctx.close()

    for lang in ("en", "ja"):
        ctx, page, watch = login(browser, expected["viewer_token"], lang)
        check(page.url.rstrip("/").endswith("/console"), f"login lands on the overview ({page.url})")
        cookie = [c for c in ctx.cookies() if c["name"] == "kizuna_session"]
        check(cookie and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Strict",
              f"session cookie is HttpOnly and SameSite=Strict: {cookie}")

        # Overview: the counts equal the database's (the snapshot refreshes every second).
        deadline = time.time() + 20
        while True:
            visit(page, "/console/", "overview", lang)
            tiers = numbers(page, "tiers")
            segments = numbers(page, "segments")
            levels = numbers(page, "levels")
            want_t = {k: v for k, v in expected["tiers"].items()}
            got_t = {k: v for k, v in tiers.items() if v}
            ok = got_t == want_t and all(segments.get(k, 0) == v for k, v in expected["segments"].items()) \
                and all(levels.get(k, 0) == v for k, v in expected["levels"].items())
            if ok or time.time() > deadline:
                break
            time.sleep(0.5)
        check(got_t == want_t, f"overview tiers {got_t} == database {want_t}")
        for k, v in expected["segments"].items():
            check(segments.get(k, 0) == v, f"overview grid cell {k}: {segments.get(k)} == {v}")
        for k, v in expected["levels"].items():
            check(levels.get(k, 0) == v, f"overview churn level {k}: {levels.get(k)} == {v}")
        check(page.locator("svg.grid").count() == 1, "the grid is drawn")
        dead = numbers(page, "dead-letters") if page.locator("table#dead-letters").count() else {}
        check(dead == expected["dead_letters"], f"overview dead letters {dead} == database {expected['dead_letters']}")
        check(page.locator("#model dd[data-value]").count() == 1, "the overview names the model version")

        # Churn queue: the database's order, CSV of exactly these rows, filters.
        visit(page, "/console/churn", "churn", lang)
        ids = [r.get_attribute("data-customer") for r in page.locator("#queue tbody tr").all()]
        check(ids == expected["queue"][: len(ids)] and len(ids) == len(expected["queue"]),
              f"queue order {ids[:5]}… == database {expected['queue'][:5]}…")
        values = [float(r.get_attribute("data-value-at-risk") or 0) for r in page.locator("#queue tbody tr").all()]
        check(all(a >= b for a, b in zip(values, values[1:])), "the queue is sorted by value at risk")
        check(page.locator("#queue tbody tr td ul.drivers li").count() >= len(ids), "every row has drivers in words")
        href = page.locator("#csv").get_attribute("href")
        r = page.request.get(BASE + href)
        rows = list(csv.DictReader(io.StringIO(r.text())))
        check([x["customer_id"] for x in rows] == ids, "the CSV has exactly the rows shown")
        page.select_option("#play", "vip_outreach")
        with page.expect_navigation():
            page.click("form.filters button[type=submit]")
        plays = {c.get_attribute("data-play") for c in page.locator("#queue tbody td[data-play]").all()}
        check(plays <= {"vip_outreach"}, f"the play filter keeps only vip_outreach: {plays}")
        if lang == "en":
            visit(page, page.url.replace(BASE, ""), "churn-vip", lang)

        # Customers: the API's numbers; the hostage as a hostage, with its reason.
        for i, cid in enumerate(expected["customers"]):
            name = "customer" if i == 0 else f"customer-{i}"
            visit(page, "/console/customers/" + urllib.parse.quote(cid, safe=""), name, lang)
            status, body = api(page, "/v1/customers/" + urllib.parse.quote(cid, safe=""))
            check(status == 200, f"API answers for {cid}")
            if body is None:
                continue
            a = body["churn_assessment"]
            check(field(page, "tier") == body["tier"], f"{cid}: tier {field(page, 'tier')} == API {body['tier']}")
            check(field(page, "segment") == (body["segment"] or "none"), f"{cid}: segment == API {body['segment']}")
            check(field(page, "churn_level") == ((body["churn"] or {}).get("level") or "none"), f"{cid}: churn level == API")
            check(close(field(page, "score"), a["score"]), f"{cid}: score {field(page, 'score')} == API {a['score']}")
            if a.get("p_alive") is not None:
                check(close(field(page, "p_alive"), a["p_alive"]), f"{cid}: P(alive) == API {a['p_alive']}")
            if a.get("clv_minor") is not None:
                check(close(field(page, "clv_minor"), a["clv_minor"]), f"{cid}: CLV == API {a['clv_minor']}")
            check(int(field(page, "lifetime_spend_minor")) == body["metrics"]["lifetime_spend_minor"], f"{cid}: spend == API")
            drivers = [d.get_attribute("data-driver") for d in page.locator("#drivers tr").all()]
            check(drivers == [d["name"] for d in a["drivers"]], f"{cid}: drivers {drivers} == API")
            # Points: the stored state folded at the engine's "now" (the Rust test's figures).
            want = expected["points"][cid]
            for k in ("available", "pending", "debt"):
                got = field(page, "points_" + k)
                check(got is not None and int(got) == want[k], f"{cid}: points {k} {got} == state {want[k]}")
            status, pts = api(page, "/v1/customers/" + urllib.parse.quote(cid, safe="") + "/points")
            if status == 200 and pts is not None:  # the points API, where it has landed
                check(pts.get("available") == want["available"], f"{cid}: points API available {pts.get('available')} == {want['available']}")
            rows = page.locator("#points-movements tbody tr")
            if want["movements"]:
                shown = int(page.locator("#points-movements").get_attribute("data-count") or 0)
                check(shown >= want["movements"], f"{cid}: {shown} point movements listed, the book has {want['movements']}")
                reasons = [r.locator("td").nth(3).inner_text().strip() for r in rows.all()]
                check(reasons and all(reasons), f"{cid}: every point movement has a reason")
            if cid == expected["clawed_back"]:
                claw = page.locator("#points-movements tr[data-kind=clawback]")
                check(claw.count() >= 1, f"{cid}: the refund's clawback is listed")
                if claw.count():
                    words = claw.first.inner_text()
                    check("refund" in words.lower() or "返金" in words, f"{cid}: the clawback says why: {words!r}")
            if cid == expected["hostage"]:
                check(field(page, "segment") == "hostage", f"{cid} shows as a hostage")
                reason = page.locator("#segment-reason").inner_text()
                word = "detractor" if lang == "en" else "批判者"
                check(word in reason or ("bad service" in reason if lang == "en" else "不満" in reason),
                      f"the hostage's reason says why: {reason!r}")
                check(page.locator("#override-form").count() == 0, "a viewer sees no override form")

        # Search from the header, by keyboard.
        page.goto(BASE + "/console/")
        page.keyboard.press("Tab")
        check(page.evaluate("document.activeElement.className") == "skip", "the first Tab reaches the skip link")
        reached = set()
        for _ in range(12):
            page.keyboard.press("Tab")
            reached.add(page.evaluate("document.activeElement.id || document.activeElement.getAttribute('href') || ''"))
        check("q" in reached, f"Tab reaches the search box: {reached}")
        check({"/console/churn", "/console/programme"} <= reached, f"Tab reaches the main links: {reached}")
        page.focus("#q")
        page.keyboard.type(expected["hostage"])
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.wait_for_load_state()
        check(page.url.endswith("/console/customers/" + urllib.parse.quote(expected["hostage"], safe="")),
              f"search by id opens the customer: {page.url}")
        visit(page, "/console/search?q=" + urllib.parse.quote(expected["hostage"] + "0"), "search", lang)
        visit(page, "/console/programme", "programme", lang)
        check(page.locator("#whatif-form").count() == 0, "a viewer sees no what-if form")
        check(page.locator("#points-rules[data-enabled=true]").count() == 1, "the programme page shows the points rules")
        check(page.locator("#points-pending-days").get_attribute("data-value") == "14", "the pending period is shown")
        check(page.locator("#points-rewards tbody tr").count() == expected["rewards"],
              f"the rewards catalogue lists {expected['rewards']} rewards")
        check(page.locator("#points-expiry").inner_text().strip() != "", "the expiry mode is in words")

        # A viewer cannot post the override, even with their own CSRF token.
        csrf = page.locator("form.logout input[name=csrf]").get_attribute("value")
        target = "/console/customers/" + urllib.parse.quote(expected["hostage"], safe="") + "/override"
        r = page.request.post(BASE + target, form={"csrf": csrf, "tier": "platinum", "reason": "x", "expires": "2030-01-01"}, max_redirects=0)
        check(r.status == 403, f"a viewer's override is refused with 403 (got {r.status})")
        r = page.request.post(BASE + "/console/programme/what-if", form={"csrf": csrf}, max_redirects=0)
        check(r.status == 403, f"a viewer's what-if is refused with 403 (got {r.status})")
        # The language toggle switches and remembers.
        page.goto(BASE + "/console/")
        with page.expect_navigation():
            page.click("a.lang")
        other = "ja" if lang == "en" else "en"
        check(page.locator("html").get_attribute("lang") == other, f"the toggle switches to {other}")
        watch.verify()
        ctx.close()

    # Admin: a forged form is refused; the override works and is audited; the what-if.
    ctx, page, watch = login(browser, expected["admin_token"], "en")
    cid = expected["hostage"]
    path = "/console/customers/" + urllib.parse.quote(cid, safe="")
    visit(page, path, "customer-admin", "en")
    check(page.locator("#override-form").count() == 1, "an admin sees the override form")
    r = page.request.post(BASE + path + "/override", form={"csrf": "forged", "tier": "platinum", "reason": "x", "expires": "2030-01-01"}, max_redirects=0)
    check(r.status == 403, f"a forged CSRF token is refused with 403 (got {r.status})")
    status, before = api(page, "/v1/customers/" + urllib.parse.quote(cid, safe=""))
    check(before and before.get("override") is None, "no override before the form is sent")
    page.select_option("#o-tier", "platinum")
    page.fill("#o-reason", "console test: VIP recovery")
    page.fill("#o-expires", "2030-01-01")
    with page.expect_navigation():
        page.click("#override-form button[type=submit]")
    check(page.locator("p.notice").count() == 1, "the override is confirmed")
    check(field(page, "tier") == "platinum", "the page shows the overridden tier")
    check(page.locator("#audit tbody tr").count() >= 1, "the override is in the audit trail")
    status, after = api(page, "/v1/customers/" + urllib.parse.quote(cid, safe=""))
    check(after and after["tier"] == "platinum" and after["override"] and after["override"]["reason"] == "console test: VIP recovery",
          f"the API shows the override: {after and after.get('override')}")

    visit(page, "/console/programme", "programme-admin", "en")
    page.fill(f"#spend_{expected['whatif']['tier_index']}", str(expected["whatif"]["min_spend"]))
    page.click("#whatif-form button[type=submit]")
    deadline = time.time() + 300
    state = None
    while time.time() < deadline:
        page.goto(BASE + "/console/programme")
        state = page.locator("#whatif-status").get_attribute("data-state")
        if state in ("done", "failed"):
            break
        time.sleep(1)
    check(state == "done", f"the what-if finished (state {state})")
    visit(page, "/console/programme", "whatif", "en")
    moves = [[r.get_attribute("data-from"), r.get_attribute("data-to"), int(r.get_attribute("data-value"))]
             for r in page.locator("#whatif-moves tbody tr").all()]
    sample = [li.get_attribute("data-customer") for li in page.locator("#whatif-sample li").all()]
    changed = int(page.locator("#whatif-status").get_attribute("data-changed") or 0)
    check(sum(m[2] for m in moves) == changed, "the moves add up to the customers who move")
    check(len(sample) == min(100, changed), "the first 100 movers are listed")
    check(sample == sorted(sample), "movers are listed in id order")
    # The what-if's "now" is the engine's (event-time) clock: the Rust test recomputes at it.
    now = page.locator("#whatif-status").get_attribute("data-now")
    results["whatif"] = {"moves": moves, "sample": sample, "changed": changed, "now": now}
    page.goto(BASE + "/console/lang/ja?next=/console/programme")
    visit(page, "/console/programme", "whatif", "ja")
    watch.verify()
    ctx.close()
    browser.close()

results["ok"] = not failures
json.dump(results, open(results_path, "w"), indent=2)
print(f"{results['pages']} page loads checked, {len(failures)} failures", file=sys.stderr)
sys.exit(1 if failures else 0)
