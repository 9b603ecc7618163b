// Call control: the agent's transfer buttons beside the softphone (转接) and the supervisors' board (班长席).
// Uses window.hotline.api (console.js: session cookie + CSRF header); the server checks every role.
(() => {
  const $ = (sel) => document.querySelector(sel);
  // One message at a time: the ok line, or the error line when ``failed``.
  const show = (ok, err, text, failed = false) => {
    ok.hidden = failed; err.hidden = !failed;
    (failed ? err : ok).textContent = text;
  };
  const cell = (text) => { const td = document.createElement("td"); td.textContent = text; return td; };
  const button = (label, onClick) => {
    const b = document.createElement("button"); b.type = "button"; b.textContent = label;
    b.addEventListener("click", onClick); return b;
  };

  // 咨询转接 in progress: 完成转接 / 取消转接 send the phone keys *2 / *1 through the softphone (Asterisk's own
  // attended transfer completes or cancels it), shown until the transfer's outcome arrives on the hub (the
  // agent's topic user:<username>, kind "transfer"), which may come before the answer to the POST.
  function attendedControls(phone, ok, err) {
    const box = $("#attended-controls"), ended = new Set();
    box.querySelectorAll("button").forEach((b) => b.addEventListener("click", () =>
      phone.dispatchEvent(new CustomEvent("softphone:dtmf", { detail: { tones: b.dataset.tones } }))));
    const close = () => { box.hidden = true; delete box.dataset.transfer; };
    document.addEventListener("hotline:event", (ev) => {
      const t = ev.detail.data;
      if (!ev.detail.topic.startsWith("user:") || t?.kind !== "transfer") return;
      ended.add(t.id);
      show(ok, err, t.message);
      if (box.dataset.transfer === String(t.id)) close();
    });
    return {
      started(t) {
        if (t.mode !== "attended" || t.outcome !== "dialling" || ended.has(t.id)) return;
        box.dataset.transfer = String(t.id);
        $("#attended-target").textContent = `正在咨询 ${t.target_label}：`;
        box.hidden = false;
      },
      close,
    };
  }

  // 转接 beside the softphone: shown while its call is up (talking or held); the department of the ticket being
  // filed (its first dispatch suggestion) is preselected when the panel opens.
  async function transferPanel(phone) {
    const panel = $("#transfer-panel"), form = $("#transfer-form");
    const ok = $("#transfer-done"), err = $("#transfer-error"), departments = $("#transfer-department");
    const attended = attendedControls(phone, ok, err);
    const send = async (kind, target) => {
      try {
        const t = await window.hotline.api("POST", "/api/v1/console/calls/transfer", { mode: form.mode.value, target_kind: kind, target });
        show(ok, err, `已${t.mode_label}至 ${t.target_label}（${t.outcome_label}）`);
        attended.started(t);
      } catch (e) { show(ok, err, e.message, true); }
    };
    const follow = () => {
      const open = ["talking", "held"].includes(phone.dataset.state);
      if (open && panel.hidden) {
        const suggested = $("#suggest-list li strong")?.textContent;
        if ([...departments.options].some((o) => o.value === suggested)) departments.value = suggested;
      }
      if (!open) attended.close(); // the agent's call ended: no transfer of it to complete
      panel.hidden = !open;
    };
    $("#transfer-to-department").addEventListener("click", () => send("department", departments.value));
    $("#transfer-to-agent").addEventListener("click", () => send("agent", form.agent.value.trim()));
    const targets = await window.hotline.api("GET", "/api/v1/console/transfer-targets");
    departments.append(...targets.departments.map((d) => new Option(`${d.department}（${d.phone}）`, d.department)));
    targets.emergency.forEach((e) => $("#transfer-emergency").append(
      " ", button(`${e.number} ${e.label}`, () => send("emergency", e.number))));
    new MutationObserver(follow).observe(phone, { attributes: true, attributeFilter: ["data-state"] });
    follow();
  }

  async function board() {
    const table = $("#supervision-board"), ok = $("#board-done"), err = $("#board-error");
    const actions = JSON.parse(table.dataset.actions); // [action, label] pairs: 监听, 密语, 强插
    const render = async () => {
      let data;
      try { data = await window.hotline.api("GET", "/api/v1/console/supervision/board"); if (!data.connected) show(ok, err, "未接入电话系统（AMI），无实时状态", true); }
      catch (e) { show(ok, err, e.message, true); return; }
      const rows = table.querySelector("tbody");
      rows.replaceChildren(...data.agents.map((a) => {
        const tr = document.createElement("tr");
        const td = document.createElement("td");
        if (a.uniqueid && a.agent) actions.forEach(([action, label]) => td.append(button(label, async () => {
          try {
            const r = await window.hotline.api("POST", "/api/v1/console/supervision", { action, agent: a.agent });
            show(ok, err, `已发起${r.label}：${a.name}，请接听您的话机`);
          } catch (e) { show(ok, err, e.message, true); }
        }), " "));
        tr.append(cell(a.name), cell(a.state_label), cell(a.talk_s === null ? "—" : `${Math.round(a.talk_s)} 秒`),
          cell(String(a.calls_today)), td);
        return tr;
      }));
    };
    await render();
    setInterval(render, 5000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    if ($("#transfer-panel") && $("#softphone")) transferPanel($("#softphone"));
    if ($("#supervision-board")) board();
  });
})();
