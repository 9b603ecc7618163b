// 领导驾驶舱: each panel loads its own JSON route (data-api) and renders with ECharts (served from
// static/vendor). The live queue listens on hub topic "queue": each PBX's controller publishes its snapshot; the
// page keeps the latest of each and shows the centre's sums over the PBXs heard within queue_stale_s, with a row
// per PBX (#queue-pbxes, tr.queue-pbx[data-pbx][data-online]) when there is more than one or one is 离线. Event
// and API data are untrusted: text goes in with textContent only, and tooltips render on the canvas (renderMode
// "richText"), never as HTML.
"use strict";

(function () {
  const REFRESH_MS = 60000;
  const CALLS_REFRESH_MS = 10000; // today's service levels follow the live queue, at most this often
  const QUEUE_CHECK_MS = 2000; // a silent PBX drops out of the sums within this much of queue_stale_s
  const AGENT_STATES = ["available", "busy", "wrap_up", "paused", "unavailable"];
  // A member in the queues of several PBXs counts once, in the first of these states it has (MEMBER_STATES).
  const MEMBER_STATES = ["leader", "busy", "wrap_up", "paused", "available", "unavailable"];
  const queueBoard = new Map(); // PBX name → { data: its latest snapshot, heardAt: when (Date.now()) }
  const COLORS = ["#1f4e8c", "#c8161d", "#1d7a46", "#b7791f", "#6b4fa0", "#2b8a9e", "#8c5a1f", "#5b6474"];
  const charts = {};
  let departments = [];
  let callsLoadedAt = 0;

  const $ = (id) => document.getElementById(id);
  const pct = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`);

  function setText(id, value) {
    const el = $(id);
    if (el) el.textContent = value === null || value === undefined ? "—" : String(value);
  }

  function chart(id) {
    if (!charts[id]) charts[id] = echarts.init($(id), null, { renderer: "canvas" });
    return charts[id];
  }

  function listItem(parts) {
    const li = document.createElement("li");
    for (const [text, cls] of parts) {
      const span = document.createElement("span");
      if (cls) span.className = cls;
      span.textContent = text;
      li.append(span);
    }
    return li;
  }

  const tooltip = { trigger: "item", renderMode: "richText" };

  function heardQueue(snapshot, silentS = 0) {
    queueBoard.set(snapshot.pbx || "", { data: snapshot, heardAt: Date.now() - silentS * 1000 });
  }

  // The centre from each PBX's latest snapshot (as agent_console.views.cockpit.centre_of does on the server).
  function centreQueue() {
    const staleMs = Number($("cockpit").dataset.queueStaleS) * 1000;
    const now = Date.now();
    const pbxes = [...queueBoard.entries()].sort(([a], [b]) => a.localeCompare(b))
      .map(([, s]) => ({ ...s.data, online: now - s.heardAt < staleMs }));
    const live = pbxes.filter((p) => p.online);
    const sum = (pick) => live.reduce((total, p) => total + pick(p), 0);
    const members = new Map(); // interface → its state on the centre's board
    for (const p of live) {
      for (const [iface, state] of Object.entries(p.members || {})) {
        const held = members.get(iface);
        if (held === undefined || MEMBER_STATES.indexOf(state) < MEMBER_STATES.indexOf(held)) members.set(iface, state);
      }
    }
    const counted = [...members.values()];
    // a snapshot without members (an older controller) adds its counts as they are
    const agents = Object.fromEntries(AGENT_STATES.map((k) => [k,
      counted.filter((s) => s === k).length + sum((p) => (Object.keys(p.members || {}).length ? 0 : p.agents[k]))]));
    const times = live.filter((p) => p.at).map((p) => Date.parse(p.at));
    return {
      at: times.length ? Math.max(...times) : null,
      waiting: live.flatMap((p) => p.waiting).sort((a, b) => a.position - b.position || b.wait_s - a.wait_s),
      longest_wait_s: Math.max(0, ...live.map((p) => p.longest_wait_s)),
      agents, bot_calls: sum((p) => p.bot_calls), leader_calls: sum((p) => p.leader_calls), pbxes,
    };
  }

  function pbxRow(p) {
    const tr = document.createElement("tr");
    tr.className = "queue-pbx";
    tr.dataset.pbx = p.pbx;
    tr.dataset.online = String(p.online);
    const cells = p.online
      ? [p.pbx || "默认", "在线", p.waiting.length, Math.round(p.longest_wait_s), p.agents.available, p.agents.busy]
      : [p.pbx || "默认", "离线", "—", "—", "—", "—"];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = String(text);
      tr.append(td);
    }
    tr.children[1].className = p.online ? "pbx-state" : "pbx-state card-red";
    return tr;
  }

  function drawQueue() {
    const data = centreQueue();
    const several = data.pbxes.length > 1 || data.pbxes.some((p) => !p.online);
    const timeZone = $("cockpit").dataset.tz;
    setText("queue-at",
      data.at ? `更新于 ${new Date(data.at).toLocaleTimeString("zh-CN", { timeZone })}` : "等待话务数据");
    setText("queue-waiting", data.waiting.length);
    setText("queue-longest", Math.round(data.longest_wait_s));
    setText("queue-available", data.agents.available);
    setText("queue-busy", data.agents.busy);
    setText("queue-wrap-up", data.agents.wrap_up);
    setText("queue-paused", data.agents.paused);
    setText("queue-bot", data.bot_calls);
    setText("queue-leader", data.leader_calls);
    $("queue-list").replaceChildren(...data.waiting.map((w) => listItem([
      [several ? `${w.pbx || "默认"} · ${w.position}.` : `${w.position}.`, "muted"], [w.caller, null],
      [`等待 ${Math.round(w.wait_s)} 秒`, "muted"], [w.menu ? `菜单 ${w.menu}` : "", "muted"]])));
    $("queue-pbxes").hidden = !several;
    $("queue-pbxes").querySelector("tbody").replaceChildren(...(several ? data.pbxes.map(pbxRow) : []));
  }

  const render = {
    queue(data) {
      queueBoard.clear();
      for (const p of data.pbxes) heardQueue(p, p.silent_s);
      drawQueue();
    },
    calls(data) {
      callsLoadedAt = Date.now();
      setText("calls-threshold", `及时接通：等待不超过 ${data.service_level_s} 秒`);
      setText("calls-offered", data.offered);
      setText("calls-connection-rate", pct(data.connection_rate));
      setText("calls-service-level-rate", pct(data.service_level_rate));
      setText("calls-abandoned", data.abandoned);
      setText("calls-abandoned-detail",
        `菜单 ${data.abandoned_menu} · 排队 ${data.abandoned_queue} · 振铃 ${data.abandoned_ringing}`);
      setText("calls-avg-wait", data.avg_wait_s === null ? null : data.avg_wait_s.toFixed(1));
      setText("calls-bot", `${data.bot_sessions} / ${data.bot_transfers}`);
    },
    today(data) {
      for (const key of ["received", "instant", "closed", "open", "overdue"]) setText(`today-${key}`, data[key]);
    },
    trend(data) {
      chart("chart-trend").setOption({
        color: COLORS, tooltip: { trigger: "axis", renderMode: "richText" }, legend: { top: 0, data: ["受理", "办结"] },
        grid: { left: 48, right: 24, top: 36, bottom: 32 },
        xAxis: { type: "category", data: data.days.map((d) => d.day.slice(5)) },
        yAxis: { type: "value", minInterval: 1 },
        series: [
          { name: "受理", type: "line", data: data.days.map((d) => d.received) },
          { name: "办结", type: "line", data: data.days.map((d) => d.closed) },
        ],
      }, true);
    },
    categories(data) {
      chart("chart-categories").setOption({
        color: COLORS, tooltip,
        series: [{ type: "pie", radius: ["35%", "68%"], label: { formatter: "{b}\n{c}" },
                   data: data.categories.map((c) => ({ name: c.name, value: c.received })) }],
      }, true);
    },
    "hot-topics"(data) {
      const topics = data.topics.slice(0, 15).reverse();
      chart("chart-hot-topics").setOption({
        color: [COLORS[1]], tooltip,
        grid: { left: 200, right: 24, top: 12, bottom: 24 },
        xAxis: { type: "value", minInterval: 1, name: "工单" },
        yAxis: { type: "category", data: topics.map((t) => t.text),
                 axisLabel: { width: 190, overflow: "truncate" } },
        series: [{ type: "bar", data: topics.map((t) => t.tickets), label: { show: true, position: "right" } }],
      }, true);
    },
    departments(data) {
      departments = data.departments;
      drawDepartments();
    },
    heatmap(data) {
      drawHeatmap(data);
      setText("heatmap-unplaced", data.unplaced ? `另有 ${data.unplaced} 件未填或区县不在图中` : "");
    },
    warnings(data) {
      setText("warnings-red", data.red);
      setText("warnings-yellow", data.yellow);
      $("warnings-list").replaceChildren(...data.items.map((w) => listItem([
        [w.level === "red" ? "红牌" : "黄牌", `card-${w.level}`], [w.ticket_no, null], [w.reason_label, null],
        [w.department || "未派发", "muted"]])));
    },
    "frequent-problems"(data) {
      const body = document.querySelector("#problems-table tbody");
      body.replaceChildren(...data.problems.map((p) => {
        const tr = document.createElement("tr");
        for (const text of [p.category, p.tickets, pct(p.repeat_rate), p.topics.map((t) => t.text).join("；")]) {
          const td = document.createElement("td");
          td.textContent = String(text);
          tr.append(td);
        }
        return tr;
      }));
    },
  };

  function drawDepartments() {
    const key = $("department-sort").value;
    const rows = [...departments].sort((a, b) => (b[key] ?? -1) - (a[key] ?? -1)).slice(0, 20);
    const series = [["响应率", "response_rate"], ["办结率", "closure_rate"], ["满意率", "satisfaction_rate"]];
    chart("chart-departments").setOption({
      color: COLORS, tooltip: { trigger: "axis", renderMode: "richText" }, legend: { top: 0, data: series.map((s) => s[0]) },
      grid: { left: 48, right: 24, top: 36, bottom: 80 },
      xAxis: { type: "category", data: rows.map((d) => d.name), axisLabel: { rotate: 30, interval: 0 } },
      yAxis: { type: "value", max: 100, axisLabel: { formatter: "{value}%" } },
      series: series.map(([name, field]) => ({
        name, type: "bar", data: rows.map((d) => (d[field] === null ? null : +(d[field] * 100).toFixed(1))),
      })),
    }, true);
  }

  // Tile map: one cell per street, coloured by its tickets; thick lines where the district changes.
  function drawHeatmap(data) {
    const cells = [];
    const owner = new Map();
    data.districts.forEach((d, di) => d.streets.forEach((s) => {
      cells.push({ x: s.cell[0], y: s.cell[1], tickets: s.tickets, street: s.name, district: d.name, di });
      owner.set(`${s.cell[0]},${s.cell[1]}`, di);
    }));
    const labels = data.districts.map((d, di) => {
      const own = cells.filter((c) => c.di === di);
      const cx = own.reduce((a, c) => a + c.x + 0.5, 0) / own.length;
      const cy = own.reduce((a, c) => a + c.y + 0.5, 0) / own.length;
      return { x: cx, y: cy, text: `${d.name} ${d.tickets}` };
    });
    const max = Math.max(1, ...cells.map((c) => c.tickets));
    const sides = [[0, -1, [0, 0], [1, 0]], [0, 1, [0, 1], [1, 1]], [-1, 0, [0, 0], [0, 1]], [1, 0, [1, 0], [1, 1]]];

    function renderCell(params, api) {
      const c = cells[params.dataIndex];
      const p0 = api.coord([c.x, c.y]);
      const p1 = api.coord([c.x + 1, c.y + 1]);
      const children = [
        { type: "rect", shape: { x: p0[0], y: p0[1], width: p1[0] - p0[0], height: p1[1] - p0[1] },
          style: { fill: api.visual("color"), stroke: "#ffffff", lineWidth: 1 } },
        { type: "text", style: { text: `${c.street}\n${c.tickets}`, x: (p0[0] + p1[0]) / 2, y: (p0[1] + p1[1]) / 2,
                                 align: "center", verticalAlign: "middle", fontSize: 11, fill: "#1d2433" } },
      ];
      for (const [dx, dy, a, b] of sides) {
        if (owner.get(`${c.x + dx},${c.y + dy}`) === c.di) continue;
        const q0 = api.coord([c.x + a[0], c.y + a[1]]);
        const q1 = api.coord([c.x + b[0], c.y + b[1]]);
        children.push({ type: "line", shape: { x1: q0[0], y1: q0[1], x2: q1[0], y2: q1[1] },
                        style: { stroke: "#1f4e8c", lineWidth: 2.5 } });
      }
      return { type: "group", children };
    }

    function renderLabel(params, api) {
      const l = labels[params.dataIndex];
      const p = api.coord([l.x, l.y]);
      return { type: "text", z2: 10, style: { text: l.text, x: p[0], y: p[1], align: "center", verticalAlign: "middle",
                                               fontSize: 13, fontWeight: "bold", fill: "#ffffff",
                                               backgroundColor: "rgba(31,78,140,0.85)", padding: [2, 6],
                                               borderRadius: 3 } };
    }

    chart("chart-heatmap").setOption({
      tooltip: { trigger: "item", renderMode: "richText",
                 formatter: (p) => (p.seriesIndex === 0
                   ? `${cells[p.dataIndex].district} ${cells[p.dataIndex].street}：${cells[p.dataIndex].tickets} 件`
                   : labels[p.dataIndex].text) },
      grid: { left: 8, right: 8, top: 8, bottom: 48 },
      xAxis: { type: "value", min: 0, max: data.columns, show: false },
      yAxis: { type: "value", min: 0, max: data.rows, inverse: true, show: false },
      visualMap: { type: "continuous", min: 0, max, dimension: 2, seriesIndex: 0, orient: "horizontal", left: "center",
                   bottom: 4, text: ["多", "少"], calculable: true,
                   inRange: { color: ["#f3f6fb", "#fde0c5", "#f59e5b", "#c8161d"] } },
      series: [
        { type: "custom", renderItem: renderCell, data: cells.map((c) => [c.x, c.y, c.tickets]),
          encode: { x: 0, y: 1 } },
        { type: "custom", renderItem: renderLabel, data: labels.map((l) => [l.x, l.y]), encode: { x: 0, y: 1 },
          silent: false },
      ],
    }, true);
  }

  async function load(panel) {
    const name = panel.dataset.api.split("/").pop();
    const url = panel.dataset.period ? `${panel.dataset.api}?period=${$("cockpit-period").value}` : panel.dataset.api;
    panel.dataset.state = "loading";
    try {
      const data = await window.hotline.api("GET", url);
      render[name](data);
      const label = panel.querySelector(".period-label");
      if (label && data.span) label.textContent = data.span.label;
      panel.dataset.state = "ready";
    } catch (err) {
      panel.dataset.state = "error";
      let box = panel.querySelector(".panel-error");
      if (!box) {
        box = document.createElement("p");
        box.className = "panel-error";
        panel.append(box);
      }
      box.textContent = `加载失败：${err.message}`;
    }
  }

  function loadAll(onlyPeriod) {
    document.querySelectorAll(".panel[data-api]").forEach((panel) => {
      if (!onlyPeriod || panel.dataset.period) load(panel);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    loadAll(false);
    window.hotline.subscribe(["queue"]);
    document.addEventListener("hotline:event", (ev) => {
      if (ev.detail.topic === "queue") {
        heardQueue(ev.detail.data);
        drawQueue();
        $("panel-queue").dataset.state = "ready";
        if (Date.now() - callsLoadedAt > CALLS_REFRESH_MS) {
          callsLoadedAt = Date.now();
          load($("panel-calls"));
        }
      }
    });
    $("cockpit-period").addEventListener("change", () => loadAll(true));
    $("department-sort").addEventListener("change", drawDepartments);
    window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
    setInterval(() => loadAll(false), REFRESH_MS);
    setInterval(drawQueue, QUEUE_CHECK_MS);
  });
})();
