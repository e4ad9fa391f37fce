"use strict";
// The overview: one tile per bed from /events (server-sent events), highest alarm first.

const VITALS = [["hr", "HR", "/min"], ["spo2", "SpO2", "%"], ["rr", "RR", "/min"], ["etco2", "EtCO2", "mmHg"]];
const tiles = new Map();      // bed -> {node, data, at}
const knownHighs = new Map(); // bed -> Set of HIGH rule ids already announced
const central = window.central = { alerts: 0, beeps: 0, updates: 0, audio: null };
let order = [];

// ---- sound: Web Audio; browsers may block it until the user clicks ------------------------
const soundButton = document.getElementById("sound");

function audioContext() {
  if (!central.audio) {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    central.audio = new AC();
    central.audio.onstatechange = showSoundState;
  }
  return central.audio;
}

function showSoundState() {
  const ctx = audioContext();
  soundButton.hidden = !!ctx && ctx.state === "running";
  if (!ctx) soundButton.textContent = "This browser cannot play alarm sounds";
}

// IEC 60601-1-8 high-priority burst: 10 pulses, 3 + 2, pause, 3 + 2.
function highBurst() {
  const ctx = audioContext();
  if (!ctx || ctx.state !== "running") { showSoundState(); return false; }
  const at = [0, .2, .4, .8, 1.0, 1.6, 1.8, 2.0, 2.4, 2.6];
  const t0 = ctx.currentTime + 0.05;
  for (const dt of at) {
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0, t0 + dt);
    gain.gain.linearRampToValueAtTime(0.4, t0 + dt + 0.01);
    gain.gain.setValueAtTime(0.4, t0 + dt + 0.11);
    gain.gain.linearRampToValueAtTime(0, t0 + dt + 0.13);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0 + dt);
    osc.stop(t0 + dt + 0.15);
  }
  central.beeps += 1;
  return true;
}

soundButton.addEventListener("click", () => {
  const ctx = audioContext();
  if (!ctx) return;
  ctx.resume().then(() => {
    showSoundState();
    for (const highs of knownHighs.values()) if (highs.size) { highBurst(); break; }
  });
});

function announce(bed, highs) {
  const before = knownHighs.get(bed) || new Set();
  const fresh = highs.filter((h) => !before.has(h));
  knownHighs.set(bed, new Set(highs));
  if (fresh.length) { central.alerts += 1; highBurst(); }
}

// ---- tiles ---------------------------------------------------------------------------------
function build(bed) {
  const node = el("a", "tile");
  node.href = "/bed/" + encodeURIComponent(bed);
  node.dataset.bed = bed;
  const top = el("div", "top");
  top.append(el("span", "bed", bed), el("span", "status"), el("span", "age"));
  const vals = el("div", "vals");
  const val = (key, label, unit) => {
    const d = el("div", "val " + key);
    d.append(el("span", "k", label + " " + unit), el("span", "v"), el("span", "a"));
    vals.append(d);
  };
  val("dose", "Dose", "mg/kg/h");
  for (const [key, label, unit] of VITALS) val(key, label, unit);
  val("nibp", "NIBP", "mmHg");
  node.append(top, el("div", "alarm"), vals, el("div", "session"));
  return node;
}

function setVal(node, key, text, age) {
  const d = node.querySelector(".val." + key);
  d.querySelector(".v").textContent = text;
  d.querySelector(".a").textContent = age === null ? "\u00a0" : fmtAge(age);
}

function paint(entry) {
  const { node, data: t } = entry;
  const live = t.cond === "online";
  const pr = live && t.alarm ? t.alarm.priority : "none";
  node.className = "tile p-" + pr + (live ? "" : " stale " + t.cond);
  node.querySelector(".status").textContent = t.label;
  node.querySelector(".status").title = t.reason || "";
  node.querySelector(".alarm").textContent = live ? (alarmText(t.alarm, t.count) || "no alarm")
    : "values hidden: not current" + (t.reason ? " (" + t.reason + ")" : "");
  const interlock = !live || !t.interlock ? "" : (t.interlock === "armed" ? " | interlock armed"
    : " | INTERLOCK " + t.interlock.toUpperCase());
  node.querySelector(".session").textContent = live && t.session ? "session: " + t.session + interlock : "";
  node.setAttribute("aria-label", t.bed + ": " + (live ? (alarmText(t.alarm, t.count) || "no alarm") : t.label));
  ages(entry);
}

function ages(entry) {
  const { node, data: t, at } = entry;
  node.querySelector(".age").textContent = fmtAge(agedBy(t.age, at)) + " ago";
  const age = (pair) => (pair[0] === null ? null : agedBy(pair[1], at));
  setVal(node, "dose", fmtNum(t.dose[0], 2), age(t.dose));
  for (const [key] of VITALS) setVal(node, key, fmtNum(t.vitals[key][0]), age(t.vitals[key]));
  const s = t.vitals.sbp, d = t.vitals.dbp;
  const nibp = s[0] === null && d[0] === null ? "--" : fmtNum(s[0]) + "/" + fmtNum(d[0]);
  setVal(node, "nibp", nibp, s[0] === null ? age(d) : age(s));
}

function apply(msg) {
  const box = document.getElementById("tiles");
  const now = performance.now();
  if (msg.full) {
    const keep = new Set(msg.order);
    for (const [bed, entry] of tiles) if (!keep.has(bed)) { entry.node.remove(); tiles.delete(bed); }
  }
  for (const t of msg.tiles) {
    let entry = tiles.get(t.bed);
    if (!entry) { entry = { node: build(t.bed) }; tiles.set(t.bed, entry); }
    entry.data = t;
    entry.at = now;
    paint(entry);
    announce(t.bed, t.highs);
  }
  if (msg.order) {
    order = msg.order;
    for (const bed of order) { const e = tiles.get(bed); if (e) box.append(e.node); }
  }
  const n = msg.count;
  document.getElementById("count").textContent = n === 1 ? "1 bed" : n + " beds";
  link(msg.connected ? "" : "BROKER DISCONNECTED: nothing shown is current");
  central.updates += 1;
}

function link(problem) {
  const banner = document.getElementById("link");
  banner.textContent = problem;
  banner.hidden = !problem;
  document.body.classList.toggle("lost", !!problem);
}

const source = new EventSource("/events");
source.onmessage = (e) => apply(JSON.parse(e.data));
source.onerror = () => link("CONNECTION TO THE CENTRAL SERVER LOST: nothing shown is current");
setInterval(() => { for (const entry of tiles.values()) ages(entry); }, 1000);
showSoundState();
