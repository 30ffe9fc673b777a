// cloudmig console: refresh a task's live block every 2 s; reload the page when its stage changes.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || live.dataset.running !== "1") { return; }
  var key = live.dataset.key;
  function tick() {
    fetch(live.dataset.src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        if (!r.ok) { return null; }
        if (r.headers.get("X-Console-Key") !== key) { window.location.reload(); return null; }
        return r.text();
      })
      .then(function (html) { if (html !== null && html !== undefined) { live.innerHTML = html; } })
      .catch(function () { /* the service may be restarting: try again on the next tick */ })
      .then(function () { window.setTimeout(tick, 2000); });
  }
  window.setTimeout(tick, 2000);
})();
