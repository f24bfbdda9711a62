// spendgate pages: live refresh and small conveniences. Loaded from /static, never inline (see the CSP).
(function () {
  "use strict";

  // Clicking anywhere on a row with data-href follows it (the first cell also holds a real link).
  document.addEventListener("click", function (e) {
    var row = e.target.closest("tr[data-href]");
    if (!row || e.target.closest("a, button, input, select") || window.getSelection().toString()) return;
    window.location.href = row.getAttribute("data-href");
  });

  // Filter lists apply as soon as they change; the Apply button remains for keyboards and scripts.
  document.addEventListener("change", function (e) {
    var form = e.target.closest("form.auto");
    if (!form) return;
    if (e.target.name === "window" && e.target.value === "custom") return;
    if ((e.target.name === "from" || e.target.name === "to") && !form.elements.from.value) return;
    var data = new FormData(form);
    var custom = data.get("window") === "custom";
    var params = new URLSearchParams();
    data.forEach(function (v, k) {
      if (v === "" || (custom && k === "window") || (!custom && (k === "from" || k === "to"))) return;
      params.append(k, v);
    });
    window.location.href = form.getAttribute("action") + (params.toString() ? "?" + params.toString() : "");
  });

  var main = document.getElementById("live");
  if (!main || !document.body.hasAttribute("data-live") || !window.EventSource) return;
  var status = document.getElementById("live-status");
  var busy = false, again = false;

  function setStatus(ok) {
    if (!status) return;
    status.classList.toggle("off", !ok);
    status.textContent = ok ? "live" : "reconnecting";
  }

  // Re-fetches this very URL as a fragment and swaps the live region in place: no full-page reload.
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    fetch(url.toString(), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          main.innerHTML = html;
          document.dispatchEvent(new CustomEvent("spendgate:updated"));
        }
      })
      .catch(function () { setStatus(false); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  var source = new EventSource("/events");
  source.addEventListener("spend", refresh);
  source.onopen = function () { setStatus(true); };
  source.onerror = function () { setStatus(false); };
})();
