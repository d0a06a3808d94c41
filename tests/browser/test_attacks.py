"""Attacks on the studio through a real browser (headless Chromium), against DEFAULT settings.

A page the user merely visits runs in their browser on their machine, so it can reach
``127.0.0.1``. CONTRACT.md section 11 says such a page can neither read nor change anything:

- a page of another origin (http://127.0.0.2:PORT) that fetches the API and the images, draws
  an image on a canvas, and sends writes (JSON with a preflight, ``text/plain`` without one);
- a sandboxed iframe on such a page, whose origin is ``null``: it points ``storagePath`` at
  ``~`` or ``/``, upscales ``Pictures/private.png`` and fetches the result, spends credit,
  deletes history and changes settings;
- plain HTML forms posting to ``/api/generate/text-to-image`` (``text/plain`` whose body is
  valid JSON, urlencoded, multipart) into a hidden frame;
- a WebSocket to ``/ws/generation`` while the user generates;
- DNS rebinding: the document of http://rebind.test:PORT/ is the attacker's (the test fulfils
  it) while the browser resolves ``rebind.test`` to 127.0.0.1, so the page's own-origin fetches
  reach the server with ``Host: rebind.test:PORT``.

Each page reports what it obtained (``window.report``); the test then reads the server's state
directly and compares it with the state before the attack (history, settings, tasks, every file
of the data dir and of HOME). The last test is the other side: the user's own page on
http://127.0.0.1:OTHER_PORT reads history, generates and watches progress as before.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.browser.conftest import REBIND_HOST, SEEDED_PROMPT, Site, Studio
from tests.browser.pages import page as html_page
from tests.browser.pages import sandboxed_parent

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

Report = list[dict[str, Any]]


def _user_generates(studio: Studio) -> None:
    """The user's own generation (no browser): progress a spying socket would receive."""
    body = {"prompt": "the user's own harbour at dawn", "width": 128, "height": 128, "steps": 2}
    with studio.client() as client:
        answer = client.post("/api/generate/text-to-image", json=body)
    assert answer.status_code == 200, answer.text


def _attack(page: Any, studio: Studio, url: str) -> tuple[Report, Any]:
    """Open ``url``; once its sockets are up, the user generates and the state is taken; then the
    page attacks. Returns the page's report and the state before the attack."""
    page.goto(url)
    page.wait_for_function("window.socketsSettled === true")
    _user_generates(studio)
    before = studio.snapshot()
    page.evaluate("window.release()")
    page.wait_for_function("window.done === true")
    report: Report = page.evaluate("window.report")
    return report, before


def _shown(report: Report) -> str:
    """One line per attempt: what it was and what came of it."""
    lines = []
    for e in report:
        outcome = e.get("error") or e.get("text") or ""
        if "messages" in e:
            outcome = f"opened={e['opened']} close={e.get('closeCode')} messages={e['messages'][:2]}"
        status = e.get("status", "-")
        lines.append(f"  {e['name']}: status {status}, read={e.get('read')}: {str(outcome)[:110]!r}")
    return "\n".join(lines)


def _assert_read_nothing(report: Report, expected: set[str]) -> None:
    names = {entry["name"] for entry in report}
    assert expected <= names, f"the page did not make every attempt: {sorted(expected - names)}"
    assert not [e for e in report if e["name"] in ("script", "sockets")], _shown(report)
    obtained = [e for e in report if e.get("read")]
    assert not obtained, f"the attacker's page read something:\n{_shown(obtained)}"
    sockets = [e for e in report if "messages" in e]
    opened = [e for e in sockets if e["opened"] or e["messages"]]
    assert not opened, f"a WebSocket of the attacker's page was accepted:\n{_shown(opened)}"
    assert SEEDED_PROMPT not in json.dumps(report), "the seeded prompt reached the attacker's page"


def _assert_changed_nothing(studio: Studio, before: Any) -> None:
    after = studio.snapshot()
    assert after.history_total == before.history_total, "the attack changed the history"
    assert after.history_ids == before.history_ids, "the attack changed the history"
    assert after.settings == before.settings, f"the attack changed the settings: {after.settings}"
    assert after.task_ids == before.task_ids, "the attack created or removed tasks"
    assert after.files == before.files, (
        "the attack changed files: "
        f"{sorted(set(after.files) ^ set(before.files)) or 'contents of existing files'}"
    )


# --- a page of another origin -----------------------------------------------------------------------

_FOREIGN = r"""
run(
  async () => { await socket("websocket", WS + "/ws/generation"); },
  async () => {
    for (const path of READS) {
      await attempt("read " + path, API + path);
      await attempt("read with credentials " + path, API + path, {credentials: "include"});
    }
    await canvasRead("canvas " + SEED_FILE, API + SEED_FILE);
    const json = {"Content-Type": "application/json"};
    await attempt("generate json", API + "/api/generate/text-to-image",
      {method: "POST", headers: json, body: JSON.stringify({prompt: "a foreign page spends your credit"})});
    await attempt("generate text/plain", API + "/api/generate/text-to-image",
      {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
       body: JSON.stringify({prompt: "a foreign page spends your credit", width: 128, height: 128})});
    await attempt("settings json", API + "/api/settings",
      {method: "PUT", headers: json, body: JSON.stringify({storagePath: "~"})});
    await attempt("delete", API + "/api/history/" + SEED_ID, {method: "DELETE"});
  },
);
"""


def _reads(studio: Studio) -> list[str]:
    """What an attacker wants to read: the history, one generation, settings, tasks, an image."""
    seed = studio.seed
    return ["/api/history", "/api/settings", "/api/tasks", f"/api/history/{seed['id']}", seed["filePath"]]


def test_a_foreign_origin_reads_nothing_and_changes_nothing(
    page: Any, studio: Studio, attacker_site: Site
) -> None:
    reads = _reads(studio)
    values = {
        "API": studio.url,
        "WS": f"ws://127.0.0.1:{studio.port}",
        "SEED_ID": studio.seed["id"],
        "SEED_FILE": studio.seed["filePath"],
        "READS": reads,
    }
    url = attacker_site.serve("/", html_page(_FOREIGN, values))
    report, before = _attack(page, studio, url)
    expected = {f"read {p}" for p in reads} | {f"read with credentials {p}" for p in reads}
    expected |= {"canvas " + studio.seed["filePath"], "websocket", "generate json", "generate text/plain"}
    _assert_read_nothing(report, expected | {"settings json", "delete"})
    _assert_changed_nothing(studio, before)


# --- a sandboxed iframe: Origin null ----------------------------------------------------------------

_SANDBOXED = r"""
window.addEventListener("message", (event) => { if (event.data === "release") window.release(); });
run(
  async () => {
    await socket("websocket", WS + "/ws/generation");
    parent.postMessage({phase: "settled"}, "*");
  },
  async () => {
    const json = {"Content-Type": "application/json"};
    const put = (value) => ({method: "PUT", headers: json, body: JSON.stringify(value)});
    const post = (value) => ({method: "POST", headers: json, body: JSON.stringify(value)});
    const steal = async (label, storagePath, imagePath) => {
      await attempt("settings " + label, API + "/api/settings", put({storagePath}));
      const upscaled = await attempt("upscale " + label, API + "/api/generate/upscale", post({imagePath}));
      if (upscaled.json && upscaled.json.data) {
        await attempt("fetch upscaled " + label, API + upscaled.json.data.filePath);
      }
    };
    await steal("home", "~", "Pictures/private.png");
    await steal("root", "/", PRIVATE_FILE.replace(/^\/+/, ""));
    await attempt("generate", API + "/api/generate/text-to-image",
      post({prompt: "a sandboxed frame spends your credit"}));
    await attempt("settings steps", API + "/api/settings", put({defaultSteps: 100}));
    await attempt("delete", API + "/api/history/" + SEED_ID, {method: "DELETE"});
    await attempt("read history", API + "/api/history");
  },
  () => parent.postMessage({phase: "done", report: window.report}, "*"),
);
"""


def test_a_sandboxed_frame_with_origin_null_can_neither_steal_files_nor_spend(
    page: Any, studio: Studio, attacker_site: Site
) -> None:
    values = {
        "API": studio.url,
        "WS": f"ws://127.0.0.1:{studio.port}",
        "SEED_ID": studio.seed["id"],
        "PRIVATE_FILE": str(studio.private_file),
    }
    frame = attacker_site.serve("/frame", html_page(_SANDBOXED, values))
    url = attacker_site.serve("/", sandboxed_parent(frame))
    report, before = _attack(page, studio, url)
    expected = {"settings home", "upscale home", "settings root", "upscale root", "generate"}
    _assert_read_nothing(report, expected | {"settings steps", "delete", "read history", "websocket"})
    _assert_changed_nothing(studio, before)


# --- HTML forms -------------------------------------------------------------------------------------

_FORMS = r"""
run(
  async () => {},
  async () => {
    const sink = document.getElementById("sink");
    for (const id of ["plain", "urlencoded", "multipart"]) {
      const entry = {name: "form " + id, read: false};
      window.report.push(entry);
      const loaded = new Promise((resolve) => { sink.onload = resolve; });
      document.getElementById(id).submit();
      await loaded;
      entry.submitted = true;
      try {
        entry.text = cut(sink.contentDocument.body.innerText);
        entry.read = true;
      } catch (error) {
        entry.error = cut(error);
      }
    }
  },
);
"""


def _forms(action: str) -> str:
    # text/plain sends name=value unencoded: this pair makes the body valid JSON that the API
    # would accept, {"prompt": "...", "negativePrompt": "blurry= ugly"}
    name = '{"prompt":"a form spends your credit","width":128,"height":128,"negativePrompt":"blurry'
    return f"""
<iframe name="sink" id="sink"></iframe>
<form id="plain" method="POST" enctype="text/plain" action="{action}" target="sink">
  <input type="hidden" name='{name}' value=' ugly"}}'>
</form>
<form id="urlencoded" method="POST" action="{action}" target="sink">
  <input type="hidden" name="prompt" value="a form spends your credit">
</form>
<form id="multipart" method="POST" enctype="multipart/form-data" action="{action}" target="sink">
  <input type="hidden" name="prompt" value="a form spends your credit">
</form>"""


def test_cross_site_forms_create_no_generation(page: Any, studio: Studio, attacker_site: Site) -> None:
    action = f"{studio.url}/api/generate/text-to-image"
    url = attacker_site.serve("/", html_page(_FORMS, {}).replace("<body>", "<body>" + _forms(action), 1))
    report, before = _attack(page, studio, url)
    assert all(entry.get("submitted") for entry in report), _shown(report)
    _assert_read_nothing(report, {"form plain", "form urlencoded", "form multipart"})
    _assert_changed_nothing(studio, before)


# --- DNS rebinding ----------------------------------------------------------------------------------

_REBINDING = r"""
run(
  async () => { await socket("websocket", "ws://" + location.host + "/ws/generation"); },
  async () => {
    for (const path of READS.concat(["/health"])) {
      await attempt("read " + path, path);
    }
    await canvasRead("canvas " + SEED_FILE, SEED_FILE);
    const json = {"Content-Type": "application/json"};
    await attempt("settings", "/api/settings",
      {method: "PUT", headers: json, body: JSON.stringify({storagePath: "~"})});
    await attempt("upscale", "/api/generate/upscale",
      {method: "POST", headers: json, body: JSON.stringify({imagePath: "Pictures/private.png"})});
    await attempt("generate", "/api/generate/text-to-image",
      {method: "POST", headers: json, body: JSON.stringify({prompt: "a rebound page spends your credit"})});
    await attempt("delete", "/api/history/" + SEED_ID, {method: "DELETE"});
  },
);
"""


def test_dns_rebinding_reads_nothing_and_changes_nothing(page: Any, studio: Studio) -> None:
    origin = f"http://{REBIND_HOST}:{studio.port}"
    reads = _reads(studio)
    values = {"SEED_ID": studio.seed["id"], "SEED_FILE": studio.seed["filePath"], "READS": reads}
    document = html_page(_REBINDING, values)
    # only the document is the attacker's; every other request of the page goes to the real server
    page.route(
        f"{origin}/",
        lambda route: route.fulfill(status=200, content_type="text/html; charset=utf-8", body=document),
    )
    report, before = _attack(page, studio, f"{origin}/")
    assert page.evaluate("location.origin") == origin
    expected = {f"read {p}" for p in [*reads, "/health"]} | {"canvas " + studio.seed["filePath"], "websocket"}
    _assert_read_nothing(report, expected | {"settings", "upscale", "generate", "delete"})
    refused = [e for e in report if e["name"].startswith("read ")]
    refused_by_host = [e.get("status") == 400 and "INVALID_HOST" in e.get("text", "") for e in refused]
    assert all(refused_by_host), _shown(refused)
    _assert_changed_nothing(studio, before)


# --- the user's own page still works ----------------------------------------------------------------

_LEGITIMATE = r"""
run(
  async () => { await socket("websocket", WS + "/ws/generation?taskId=" + TASK); },
  async () => {
    await attempt("history", API + "/api/history");
    await attempt("settings", API + "/api/settings");
    const made = await attempt("generate", API + "/api/generate/text-to-image", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({prompt: "the user's own page draws a kite", width: 128, height: 128,
                            steps: 2, taskId: TASK}),
    });
    if (made.json) await attempt("image", API + made.json.data.filePath);
  },
);
"""


def test_the_users_own_loopback_page_reads_generates_and_watches(
    page: Any, studio: Studio, loopback_site: Site
) -> None:
    task = "browser-legitimate-1"
    values = {"API": studio.url, "WS": f"ws://127.0.0.1:{studio.port}", "TASK": task}
    url = loopback_site.serve("/", html_page(_LEGITIMATE, values))
    report, before = _attack(page, studio, url)
    found = {entry["name"]: entry for entry in report}
    for name in ("history", "settings", "generate", "image"):
        assert found.get(name, {}).get("read"), f"{name} failed for the user's own page:\n{_shown(report)}"
    assert SEEDED_PROMPT in json.dumps(found["history"]["json"])  # the seeded generation
    assert found["image"]["bytes"] > 0
    made = found["generate"]["json"]["data"]
    socket = found["websocket"]
    assert socket["opened"], _shown([socket])
    updates = [json.loads(message) for message in socket["messages"]]
    assert any(u["status"] == "completed" and u["generationId"] == made["id"] for u in updates), updates
    with httpx.Client(base_url=studio.url) as client:
        history = client.get("/api/history").json()
    assert history["total"] == before.history_total + 1
    assert history["data"][0]["id"] == made["id"]
