"use strict";
// Shared by the overview and the bed page. Every string from the feed goes in as text
// (textContent), never as HTML.

const MARK = { high: "!!!", medium: "!!", low: "!", advisory: "" };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function fmtAge(s) {
  if (s === null || s === undefined) return "--";
  if (s < 100) return Math.round(s) + " s";
  if (s < 6000) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}

function fmtNum(x, digits) {
  return x === null || x === undefined ? "--" : Number(x).toFixed(digits || 0);
}

function alarmText(alarm, count) {
  if (!alarm) return "";
  const mark = MARK[alarm.priority] || "";
  const more = count > 1 ? " (+" + (count - 1) + ")" : "";
  return (mark ? mark + " " : "") + String(alarm.priority).toUpperCase() + " " + alarm.message + more;
}

// Ages arrive as of the moment the server sent them; they grow here until the next update.
function agedBy(age, receivedAt) {
  return age === null || age === undefined ? null : age + (performance.now() - receivedAt) / 1000;
}
