"use strict";
// One bed: its tile, trends (uPlot) and the alarm history, from /api/beds/<id> every 2 s.

const bedId = decodeURIComponent(location.pathname.split("/").pop());
const CHARTS = [
  ["HR /min", [["hr", "HR", "#c62828"]]],
  ["SpO2 %", [["spo2", "SpO2", "#1565c0"]]],
  ["RR /min", [["rr", "RR", "#2e7d32"]]],
  ["EtCO2 mmHg", [["etco2", "EtCO2", "#6a1b9a"]]],
  ["NIBP mmHg", [["sbp", "sys", "#ef6c00"], ["dbp", "dia", "#8d6e63"], ["map", "mean", "#455a64"]]],
  ["Dose mg/kg/h", [["dose", "dose", "#00838f"]]],
];
const plots = [];
const TREND_WINDOW_S = 3600; // as kept by the server (feed.TREND_WINDOW_S)
window.bedPage = { loads: 0 };
document.getElementById("bed").textContent = bedId;
document.title = "monitord central: " + bedId;

function makeCharts() {
  const box = document.getElementById("charts");
  for (const [title, series] of CHARTS) {
    const wrap = el("div", "chart");
    wrap.append(el("h3", "", title));
    box.append(wrap);
    const opts = {
      width: Math.max(380, wrap.clientWidth - 10), height: 170,
      series: [{}, ...series.map(([, label, stroke]) => ({ label, stroke, width: 2, spanGaps: true }))],
      scales: { x: { time: true, auto: false } },
      axes: [{}, { size: 45 }],
    };
    plots.push([typeof uPlot !== "undefined" ? new uPlot(opts, [[], ...series.map(() => [])], wrap) : null, series]);
  }
}

function render(d) {
  const t = d.tile;
  const live = t.cond === "online";
  const status = document.getElementById("status");
  status.textContent = t.label;
  status.title = t.reason || "";
  status.className = "status" + (live ? "" : " banner");
  document.getElementById("age").textContent = "last message " + fmtAge(t.age) + " ago";
  const alarm = document.getElementById("alarm");
  alarm.className = "alarm p-" + (live && t.alarm ? t.alarm.priority : "none");
  alarm.textContent = live ? (alarmText(t.alarm, t.count) || "no active alarm") : t.label + ": nothing shown is current";
  const banner = document.getElementById("link");
  banner.hidden = d.connected;
  banner.textContent = d.connected ? "" : "BROKER DISCONNECTED";

  // A fixed window ending at the newest sample (the bed's clock), or now when there is none.
  const end = d.trend.t.length ? d.trend.t[d.trend.t.length - 1] + 5 : d.now;
  for (const [plot, series] of plots) {
    if (!plot) continue;
    plot.setData([d.trend.t, ...series.map(([key]) => d.trend[key])], false);
    plot.setScale("x", { min: end - TREND_WINDOW_S, max: end });
  }
  const body = document.querySelector("#history tbody");
  body.replaceChildren();
  for (const h of d.history) {
    const tr = el("tr");
    const pr = el("td", "pr-" + h.priority, (MARK[h.priority] ? MARK[h.priority] + " " : "") + String(h.priority).toUpperCase());
    tr.append(el("td", "", h.time), pr, el("td", "", h.transition), el("td", "", h.message),
              el("td", "", h.rule_id), el("td", "", h.actor));
    body.append(tr);
  }
  document.getElementById("nohistory").hidden = d.history.length > 0;
}

async function load() {
  try {
    const r = await fetch("/api/beds/" + encodeURIComponent(bedId), { cache: "no-store" });
    if (r.status === 404) {
      document.getElementById("status").textContent = "UNKNOWN BED";
      return;
    }
    render(await r.json());
    window.bedPage.loads += 1;
  } catch (e) {
    const banner = document.getElementById("link");
    banner.hidden = false;
    banner.textContent = "CONNECTION TO THE CENTRAL SERVER LOST";
  }
}

makeCharts();
load();
setInterval(load, 2000);
