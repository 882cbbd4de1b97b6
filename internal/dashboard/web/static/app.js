// Live updates without inline script (the CSP forbids it): the part of a
// page marked #live is re-fetched every 2 s, and a Pod's log is streamed.
"use strict";

function refresh() {
  const main = document.querySelector("main[data-refresh]");
  const live = document.getElementById("live");
  if (!main || !live) return;
  const url = main.dataset.refresh;
  setInterval(async () => {
    // Do not replace a form the user is typing into.
    const a = document.activeElement;
    if (a && live.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT")) return;
    try {
      const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { location.href = "/login"; return; }
      if (r.ok) live.innerHTML = await r.text();
    } catch (e) { /* the next poll tries again */ }
  }, 2000);
}

function logs() {
  const pre = document.getElementById("logs");
  if (!pre) return;
  const follow = document.getElementById("follow");
  const sel = document.getElementById("container");
  const state = document.getElementById("logstate");
  let ctl = null;
  async function start() {
    stop();
    pre.textContent = "";
    ctl = new AbortController();
    let url = pre.dataset.src + "&follow=" + (follow.checked ? "1" : "0");
    if (sel) url += "&container=" + encodeURIComponent(sel.value);
    state.textContent = follow.checked ? "following" : "";
    try {
      const r = await fetch(url, { credentials: "same-origin", signal: ctl.signal });
      if (!r.ok) { pre.textContent = await r.text(); state.textContent = ""; return; }
      const rd = r.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { value, done } = await rd.read();
        if (done) break;
        const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.appendChild(document.createTextNode(dec.decode(value, { stream: true })));
        if (pre.childNodes.length > 2000) pre.removeChild(pre.firstChild);
        if (stick) pre.scrollTop = pre.scrollHeight;
      }
      state.textContent = follow.checked ? "stream ended" : "";
    } catch (e) {
      if (e.name !== "AbortError") state.textContent = "log stream failed: " + e.message;
    }
  }
  function stop() { if (ctl) { ctl.abort(); ctl = null; } state.textContent = "paused"; }
  follow.addEventListener("change", () => { if (follow.checked) start(); else stop(); });
  if (sel) sel.addEventListener("change", start);
  start();
}

function nsSelect() {
  const s = document.querySelector("select#ns");
  if (s) s.addEventListener("change", () => s.form.submit());
}

document.addEventListener("DOMContentLoaded", () => { refresh(); logs(); nsSelect(); });
