// tandem default site: show when the page loaded and a live clock.
// No network access; everything runs locally in the browser.
(function () {
  "use strict";

  function fmt(d) {
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function start() {
    var loaded = document.getElementById("loaded");
    var clock = document.getElementById("clock");
    var now = new Date();
    if (loaded) {
      loaded.textContent = fmt(now);
      loaded.setAttribute("datetime", now.toISOString());
      if (window.performance && performance.now) {
        loaded.title = "load took " + Math.round(performance.now()) + " ms";
      }
    }
    if (clock) {
      var tick = function () {
        var t = new Date();
        clock.textContent = fmt(t);
        clock.setAttribute("datetime", t.toISOString());
      };
      tick();
      setInterval(tick, 1000);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
