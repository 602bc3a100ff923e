// Live updates from the console's event stream: the runners table and the list of runs
// that just ended follow the bus without reloading. Every page also reads without this.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  if (!window.EventSource) { return; }
  var source = new EventSource("/console/events");
  source.onopen = function () { if (status) { status.textContent = "live"; } };
  source.onerror = function () { if (status) { status.textContent = "reconnecting"; } };

  function row(runner) {
    return document.querySelector('#runners tr[data-runner="' + CSS.escape(runner) + '"]');
  }

  function ended(event) {
    var data = JSON.parse(event.data);
    var list = document.getElementById("live-runs");
    if (list) {
      var item = document.createElement("li");
      item.dataset.run = data.run_id;
      item.textContent = data.run_id + " " + data.outcome + " in " + data.duration_ms + " ms" +
        (data.summary ? ": " + data.summary : "") + (data.error ? " (" + data.error + ")" : "");
      list.insertBefore(item, list.firstChild);
      while (list.children.length > 50) { list.removeChild(list.lastChild); }
    }
    var tr = row(data.runner);
    if (tr) {
      var last = tr.querySelector(".last");
      if (last) {
        last.textContent = "";
        var badge = document.createElement("span");
        badge.className = "badge " + data.outcome;
        badge.textContent = data.outcome;
        last.appendChild(badge);
        last.appendChild(document.createTextNode(" just now, " + Math.round(data.duration_ms) + " ms"));
      }
    }
  }

  function paused(on) {
    return function (event) {
      var data = JSON.parse(event.data);
      var tr = row(data.runner);
      if (!tr) { return; }
      var state = tr.querySelector(".state");
      if (state) {
        state.innerHTML = on ? '<span class="badge paused">paused</span>' : '<span class="badge idle">idle</span>';
      }
      // The pause button becomes resume (and back), as a reload would show it.
      var form = tr.querySelector('form[action$="/pause"], form[action$="/resume"]');
      if (form) {
        var verb = on ? "resume" : "pause";
        form.action = form.action.replace(/\/(pause|resume)$/, "/" + verb);
        var button = form.querySelector("button");
        if (button) {
          button.textContent = on ? "Resume" : "Pause";
          button.setAttribute("aria-label", (on ? "Resume " : "Pause ") + data.runner);
        }
      }
    };
  }

  ["run.finished", "run.failed", "run.cancelled", "run.stuck"].forEach(function (name) {
    source.addEventListener(name, ended);
  });
  source.addEventListener("runner.paused", paused(true));
  source.addEventListener("runner.resumed", paused(false));
})();
