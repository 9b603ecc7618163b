// 12345 坐席控制台: live updates over /ws and JSON calls with the CSRF token.
// Pages work without this file; it only adds live state. Page scripts listen for
// `hotline:event` on document (detail: {topic, data}) and call window.hotline.subscribe([...]).
"use strict";

(function () {
  const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const listeners = new Set(["broadcast"]);
  let socket = null;
  let retryMs = 1000;

  function setState(on) {
    const el = document.getElementById("live-status");
    if (!el) return;
    el.dataset.state = on ? "on" : "off";
    el.textContent = on ? "实时" : "离线";
  }

  function showNotice(text) {
    const box = document.getElementById("notices");
    if (!box) return;
    const p = document.createElement("p");
    p.className = "notice";
    p.textContent = text; // never innerHTML: event data is untrusted
    box.prepend(p);
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/ws`);
    socket.addEventListener("open", () => {
      retryMs = 1000;
      setState(true);
      const extra = [...listeners].filter((t) => t !== "broadcast");
      if (extra.length) send({ type: "subscribe", topics: extra });
    });
    socket.addEventListener("message", (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.type === "event") {
        if ((msg.topic === "broadcast" || msg.topic.startsWith("user:")) && msg.data && typeof msg.data.message === "string") showNotice(msg.data.message);
        document.dispatchEvent(new CustomEvent("hotline:event", { detail: { topic: msg.topic, data: msg.data } }));
      }
    });
    socket.addEventListener("close", (ev) => {
      setState(false);
      if (ev.code === 1008) return; // session ended: the next page load goes to the login page
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  }

  async function api(method, url, body) {
    const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken() } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(url, init);
    const data = res.headers.get("Content-Type")?.includes("application/json") ? await res.json() : null;
    if (!res.ok) throw Object.assign(new Error(data?.error?.message || res.statusText), { status: res.status, data });
    return data;
  }

  window.hotline = {
    api,
    csrfToken,
    subscribe(topics) {
      topics.forEach((t) => listeners.add(t));
      send({ type: "subscribe", topics });
    },
  };

  document.addEventListener("DOMContentLoaded", () => {
    if (document.body.dataset.live === "on" && "WebSocket" in window) connect();
  });
})();
