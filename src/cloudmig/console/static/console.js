// cloudmig console: refresh a task's live block every 2 s; reload the page when its stage changes.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || live.dataset.running !== "1") { return; }
  var key = live.dataset.key;
  // Once a form is submitted (a switchover request may take seconds to answer), a reload here would
  // cancel that navigation: stop refreshing and let the answer load.
  var leaving = false;
  document.addEventListener("submit", function () { leaving = true; });
  function tick() {
    if (leaving) { return; }
    fetch(live.dataset.src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (leaving) { return null; }
        if (r.status === 401) { window.location.reload(); return null; }
        if (!r.ok) { return null; }
        if (r.headers.get("X-Console-Key") !== key) { window.location.reload(); return null; }
        return r.text();
      })
      .then(function (html) { if (!leaving && html !== null && html !== undefined) { live.innerHTML = html; } })
      .catch(function () { /* the service may be restarting: try again on the next tick */ })
      .then(function () { window.setTimeout(tick, 2000); });
  }
  window.setTimeout(tick, 2000);
})();
