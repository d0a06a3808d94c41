"""The attacker's pages (and one of the user's own), as HTML with inline scripts.

Every page runs the same small library, :data:`LIBRARY`. It records each attempt in
``window.report``: a fetch (``read`` is true when the script got a 2xx answer it may read, with
the start of its text), the pixels of an image drawn on a canvas, a WebSocket (``opened``,
``messages``). A page goes in three steps the test drives, so that a socket can spy on a real
generation: it opens its sockets, sets ``window.socketsSettled``; the test generates and takes its
"before" snapshot, then calls ``window.release()``; the page makes its attempts, closes its
sockets and sets ``window.done``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["LIBRARY", "page", "sandboxed_parent"]

LIBRARY = r"""
window.report = [];
window.done = false;
window.socketsSettled = false;
let releaseNow;
const released = new Promise((resolve) => { releaseNow = resolve; });
window.release = () => releaseNow();
const sockets = [];

function cut(text) { return String(text).slice(0, 300); }

async function attempt(name, url, init) {
  const entry = {name, url, method: (init && init.method) || "GET", read: false};
  window.report.push(entry);
  try {
    const answer = await fetch(url, init);
    entry.type = answer.type;
    entry.status = answer.status;
    const body = await answer.arrayBuffer();
    entry.bytes = body.byteLength;
    entry.text = cut(new TextDecoder().decode(body.slice(0, 300)));
    entry.read = answer.ok;
    if (answer.ok && (answer.headers.get("content-type") || "").includes("json")) {
      entry.json = JSON.parse(new TextDecoder().decode(body));
    }
  } catch (error) {
    entry.error = cut(error);
  }
  return entry;
}

function canvasRead(name, url) {
  const entry = {name, url, read: false};
  window.report.push(entry);
  return new Promise((resolve) => {
    const image = new Image();
    image.onload = () => {
      entry.loaded = true;
      try {
        const canvas = document.createElement("canvas");
        canvas.width = image.width;
        canvas.height = image.height;
        const context = canvas.getContext("2d");
        context.drawImage(image, 0, 0);
        const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
        entry.read = true;
        entry.text = Array.from(pixels.slice(0, 12)).join(",");
      } catch (error) {
        entry.error = cut(error);
      }
      resolve(entry);
    };
    image.onerror = () => { entry.error = "the image did not load"; resolve(entry); };
    image.src = url;
  });
}

function socket(name, url) {
  const entry = {name, url, opened: false, messages: [], read: false};
  window.report.push(entry);
  return new Promise((resolve) => {
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (error) {
      entry.error = cut(error);
      resolve(entry);
      return;
    }
    sockets.push(ws);
    ws.onopen = () => { entry.opened = true; resolve(entry); };
    ws.onmessage = (message) => { entry.read = true; entry.messages.push(cut(message.data)); };
    ws.onerror = () => { entry.error = "error event"; };
    ws.onclose = (event) => { entry.closed = true; entry.closeCode = event.code; resolve(entry); };
  });
}

async function closeSockets() {
  await new Promise((resolve) => setTimeout(resolve, 300));  // messages still on their way
  for (const ws of sockets) { try { ws.close(); } catch (error) { /* closed already */ } }
}

async function run(openSockets, attacks, finish) {
  try { await openSockets(); } catch (error) { window.report.push({name: "sockets", error: cut(error)}); }
  window.socketsSettled = true;
  await released;
  try { await attacks(); } catch (error) { window.report.push({name: "script", error: cut(error)}); }
  await closeSockets();
  window.done = true;
  if (finish) finish();
}
"""


def page(script: str, values: dict[str, Any]) -> str:
    """A page running :data:`LIBRARY`, then ``script`` with ``values`` as JavaScript constants."""
    constants = "\n".join(f"const {name} = {json.dumps(value)};" for name, value in values.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>attack</title></head><body>"
        f"<script>{LIBRARY}\n{constants}\n{script}</script></body></html>"
    )


def sandboxed_parent(frame_url: str) -> str:
    """A page that embeds ``frame_url`` in ``<iframe sandbox="allow-scripts">`` (its origin is
    ``null``) and relays the frame's progress: settled, release, done with its report."""
    return f"""<!doctype html><html><head><meta charset='utf-8'><title>host</title></head><body>
<script>
window.report = [];
window.done = false;
window.socketsSettled = false;
window.addEventListener("message", (event) => {{
  if (event.data && event.data.phase === "settled") window.socketsSettled = true;
  if (event.data && event.data.phase === "done") {{ window.report = event.data.report; window.done = true; }}
}});
window.release = () => document.getElementById("frame").contentWindow.postMessage("release", "*");
</script>
<iframe id="frame" sandbox="allow-scripts" src="{frame_url}"></iframe>
</body></html>"""
