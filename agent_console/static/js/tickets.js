// 12345 工单页面增强：来电弹屏、坐席状态、派单建议、知识库检索、签收倒计时、附件上传。
// Pages work without this file. Untrusted text (ticket content, transcripts, caller data) is only ever set
// with textContent — never innerHTML — so it renders literally.
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  // --- 签收倒计时 ---------------------------------------------------------------------------------------
  function formatLeft(ms) {
    const late = ms < 0;
    let s = Math.floor(Math.abs(ms) / 1000);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60);
    const span = (d ? `${d}天` : "") + `${h}小时${m}分`;
    return late ? `已超时 ${span}` : `剩余 ${span}`;
  }

  function tickCountdowns() {
    document.querySelectorAll(".countdown[data-due]").forEach((node) => {
      const due = Date.parse(node.dataset.due);
      if (Number.isNaN(due)) return;
      const left = due - Date.now();
      node.textContent = formatLeft(left);
      node.dataset.level = left < 0 ? "late" : left < 3600 * 1000 ? "soon" : "ok";
    });
  }

  // --- 来电弹屏 -----------------------------------------------------------------------------------------
  function showScreenPop(data) {
    const box = $("#screenpop");
    if (!box || !data) return;
    box.hidden = false;
    $("#pop-caller").textContent = data.caller || "";
    const warning = $("#pop-warning");
    warning.hidden = !data.repeat_warning;
    warning.textContent = data.repeat_warning || "";
    const hasTranscript = Boolean(data.transcript);
    $("#pop-transcript-box").hidden = !hasTranscript;
    $("#pop-transcript").textContent = data.transcript || "";
    const list = $("#pop-history");
    list.replaceChildren();
    (data.earlier || []).forEach((t) => {
      const li = el("li");
      const a = el("a", t.ticket_no);
      a.href = `/tickets/${encodeURIComponent(t.ticket_no)}`;
      li.append(a, " ", el("span", t.state_label, "state"), " ", el("span", t.summary, "summary"));
      if (t.warning) li.append(" ", el("span", t.warning === "red" ? "红牌" : "黄牌", `badge badge-${t.warning}`));
      list.append(li);
    });
    if (!(data.earlier || []).length) list.append(el("li", "无历史工单", "muted"));
    const fill = (id, value) => { const f = $(id); if (f && value) f.value = value; };
    fill("#f-caller_phone", data.phone || data.caller);
    fill("#f-call_id", data.call_id);
    fill("#f-transcript", data.transcript);
    if (data.from_bot) fill("#f-channel", "bot");
    if (hasTranscript && !$("#f-content").value) $("#f-content").value = data.transcript;
  }

  // --- 坐席状态 -----------------------------------------------------------------------------------------
  function enhanceStateButtons() {
    document.querySelectorAll("form.state-form").forEach((form) => {
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const msg = $("#state-message");
        try {
          const body = { state: form.dataset.state };
          if (form.reason) body.reason = form.reason.value; // 示忙: the centre's pause reason
          const out = await window.hotline.api("POST", "/api/v1/console/workspace/state", body);
          $("#current-state").textContent = out.label;
          document.querySelectorAll("form.state-form button").forEach((b) => b.removeAttribute("aria-pressed"));
          form.querySelector("button").setAttribute("aria-pressed", "true");
          msg.textContent = "";
        } catch (err) {
          msg.textContent = err.message;
        }
      });
    });
  }

  // --- 派单建议与知识库 ---------------------------------------------------------------------------------
  let suggestTimer = null;
  function scheduleSuggestions() {
    clearTimeout(suggestTimer);
    suggestTimer = setTimeout(async () => {
      const text = $("#f-content").value.trim();
      const box = $("#suggest-box");
      if (!text) { box.hidden = true; return; }
      const params = new URLSearchParams({ text: text.slice(0, 4000) });
      const district = $("#f-district").value.trim();
      if (district) params.set("district", district);
      try {
        const out = await window.hotline.api("GET", `/api/v1/console/dispatch-suggestions?${params}`);
        const list = $("#suggest-list");
        list.replaceChildren();
        out.suggestions.forEach((s) => {
          const li = el("li");
          li.append(el("strong", s.department), ` ${Math.round(s.score * 100)}% `, el("span", s.why, "muted small"));
          list.append(li);
        });
        box.hidden = out.suggestions.length === 0;
      } catch { box.hidden = true; }
    }, 600);
  }

  function enhanceKnowledge() {
    const form = $("#knowledge-form");
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const q = $("#knowledge-q").value.trim();
      const out = $("#knowledge-result");
      out.replaceChildren();
      if (!q) return;
      try {
        const a = await window.hotline.api("GET", `/api/v1/console/knowledge?${new URLSearchParams({ q })}`);
        if (a.answer_id === null) { out.append(el("p", "知识库中没有找到相关答案", "muted")); return; }
        out.append(el("h3", a.question), el("p", a.answer, "ticket-text"),
          el("p", `${a.department} · 匹配度 ${Math.round(a.score * 100)}%${a.confident ? "" : "（仅供参考）"}`, "muted small"));
      } catch (err) {
        out.append(el("p", err.message, "muted"));
      }
    });
  }

  // --- 附件上传 -----------------------------------------------------------------------------------------
  function enhanceUpload() {
    const form = $("#upload-form");
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const input = $("#upload-file");
      const status = $("#upload-status");
      if (!input.files.length) { status.textContent = "请选择文件"; return; }
      const data = new FormData();
      data.append("file", input.files[0]);
      status.textContent = "上传中…";
      const res = await fetch(form.dataset.url, { method: "POST", body: data, credentials: "same-origin",
        headers: { "X-CSRF-Token": window.hotline.csrfToken() } });
      const body = await res.json().catch(() => null);
      if (!res.ok) { status.textContent = body?.error?.message || "上传失败"; return; }
      status.textContent = "已上传";
      const li = el("li");
      const a = el("a", body.file_name);
      a.href = body.url;
      li.append(a);
      const list = $("#attachments");
      list.querySelector("li.muted")?.remove();
      list.append(li);
      input.value = "";
    });
  }

  // --- 工单状态实时更新: the state badge of this ticket and of the listed ones ---------------------------
  function followTicketChanges() {
    const topic = document.body.dataset.ticketTopic;
    const badge = $("#ticket-state");
    if (!topic || (!badge && !document.querySelector("tr.ticket-row"))) return;
    window.hotline.subscribe([topic]);
    document.addEventListener("hotline:event", (ev) => {
      const change = ev.detail.data;
      if (ev.detail.topic !== topic || change?.kind !== "ticket") return;
      const badges = [...document.querySelectorAll("tr.ticket-row")]
        .filter((row) => row.dataset.ticket === change.ticket_no)
        .map((row) => row.querySelector(".state"));
      if (badge?.dataset.ticket === change.ticket_no) {
        badges.push(badge);
        const notice = $("#ticket-live");
        notice.textContent = `工单状态已由 ${change.by} 更新为“${change.state_label}”，刷新页面可查看最新办理信息`;
        notice.hidden = false;
      }
      for (const b of badges.filter(Boolean)) {
        b.textContent = change.state_label;
        b.className = `state state-${change.state}`;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    tickCountdowns();
    setInterval(tickCountdowns, 30000);
    const pop = $("#screenpop");
    if (pop && window.hotline) {
      const topic = pop.dataset.topic;
      window.hotline.subscribe([topic]);
      document.addEventListener("hotline:event", (ev) => {
        if (ev.detail.topic === topic) showScreenPop(ev.detail.data);
      });
    }
    if ($("#state-message") && window.hotline) enhanceStateButtons();
    if ($("#f-content") && window.hotline) {
      $("#f-content").addEventListener("input", scheduleSuggestions);
      $("#f-district").addEventListener("change", scheduleSuggestions);
    }
    if (window.hotline) { enhanceKnowledge(); enhanceUpload(); followTicketChanges(); }
  });
})();
