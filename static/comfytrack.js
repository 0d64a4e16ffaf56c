// comfytrack: the little behaviour htmx does not cover. Loaded from our origin (CSP: no inline scripts,
// no eval — so no htmx trigger filters either: the polling clock lives here).
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  // -- relative times: "just now", "12 s ago", "3 min ago"; the absolute time (viewer's zone) on hover --
  function ago(seconds) {
    if (seconds < 10) return "just now";
    if (seconds < 60) return Math.floor(seconds) + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    if (seconds < 30 * 86400) return Math.floor(seconds / 86400) + " d ago";
    return null; // older: keep the server's date
  }
  var absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "long" });

  function refreshTimes(root) {
    var now = Date.now();
    (root || document).querySelectorAll("time.js-ago").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      if (!el.dataset.local) {
        el.title = absolute.format(new Date(at));
        el.dataset.local = "1";
      }
      var text = ago(Math.max(0, (now - at) / 1000));
      if (text && el.textContent !== text) el.textContent = text;
    });
  }

  // -- live regions: elements with data-poll-every="N" and hx-trigger="poll" ------------------------
  // One clock for the page. Nothing is asked while the page is hidden; on coming back it asks at once.
  var lastPoll = {};
  var clock = null;

  function pollDue(force) {
    var now = Date.now();
    document.querySelectorAll("[data-poll-every]:not([data-poll-off])").forEach(function (el) {
      var every = Number(el.dataset.pollEvery || 5) * 1000;
      var key = el.id || "poll";
      if (el.classList.contains("htmx-request")) return; // the previous answer is still on its way
      if (!force && lastPoll[key] && now - lastPoll[key] < every - 50) return;
      lastPoll[key] = now;
      if (window.htmx) window.htmx.trigger(el, "poll");
    });
  }

  function startClock() {
    if (clock === null && document.querySelector("[data-poll-every]")) clock = window.setInterval(tick, 1000);
  }
  function stopClock() {
    if (clock !== null) window.clearInterval(clock);
    clock = null;
  }
  function tick() {
    refreshTimes();
    pollDue(false);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      stopClock();
    } else {
      refreshTimes();
      pollDue(true);
      startClock();
    }
  });

  // The runs list's poll says what it shows: the unfinished rows (only they can change) and the newest run
  // it knows (new runs are the ones after it).
  document.addEventListener("htmx:configRequest", function (event) {
    var el = event.detail.elt;
    if (!el || el.id !== "runs-live") return;
    var form = event.detail.formData;
    var top = document.querySelector("#run-rows tr.run-row[data-cursor]");
    var since = el.hasAttribute("data-first-page") && top ? top.dataset.cursor : el.dataset.since;
    if (since) form.append("since", since);
    document.querySelectorAll("#run-rows tr.run-row[data-live]").forEach(function (row) {
      form.append("code", row.id.replace(/^run-/, ""));
    });
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    refreshTimes(event.detail.elt && event.detail.elt.parentNode ? event.detail.elt.parentNode : document);
  });
  document.addEventListener("htmx:oobAfterSwap", function () { refreshTimes(); });

  // -- lightbox: a modal <dialog> (focus stays inside; Escape closes; focus returns to the tile) -------
  var opener = null;
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[hx-target='#lightbox']");
    if (link) opener = link;
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target || target.id !== "lightbox") return;
    var dialog = target.querySelector("dialog");
    if (!dialog || typeof dialog.showModal !== "function") return;
    dialog.removeAttribute("open");
    dialog.showModal(); // modal: the rest of the page is inert, Escape fires "cancel"
    var first = dialog.querySelector("[autofocus], button, a[href]");
    if (first) first.focus();
    dialog.addEventListener("click", function (e) { if (e.target === dialog) dialog.close(); });
    dialog.addEventListener("keydown", function (e) {
      if (e.key !== "Tab") return;
      // Keep Tab inside the dialog (showModal makes the page inert, but Tab would leave for the browser UI).
      var items = Array.prototype.filter.call(
        dialog.querySelectorAll("a[href], button, input, select, textarea, video[controls], audio[controls], [tabindex]:not([tabindex='-1'])"),
        function (node) { return !node.disabled && node.getClientRects().length > 0; }
      );
      if (!items.length) return;
      var firstItem = items[0], lastItem = items[items.length - 1];
      if (e.shiftKey && document.activeElement === firstItem) { lastItem.focus(); e.preventDefault(); }
      else if (!e.shiftKey && document.activeElement === lastItem) { firstItem.focus(); e.preventDefault(); }
    });
    dialog.addEventListener("close", function () {
      target.innerHTML = "";
      if (opener && document.contains(opener)) opener.focus();
    });
  });

  ready(function () {
    // Narrow screens: the navigation folds behind a Menu button (CSS decides when; this only toggles).
    var topbar = document.querySelector(".topbar");
    var toggle = topbar && topbar.querySelector(".navtoggle");
    if (toggle) {
      topbar.classList.add("js-nav");
      toggle.hidden = false;
      toggle.addEventListener("click", function () {
        var open = topbar.classList.toggle("open");
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
      });
    }
    // Org switcher: switch on change; the button stays for people without JavaScript.
    document.querySelectorAll(".js-autosubmit").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
    document.querySelectorAll(".js-hide").forEach(function (el) { el.hidden = true; });
    // Forms submit once: a double click must not post twice (the server also dedupes by key).
    document.querySelectorAll("form").forEach(function (form) {
      form.addEventListener("submit", function () {
        form.querySelectorAll("button.js-once").forEach(function (b) {
          window.setTimeout(function () { b.disabled = true; }, 0);
        });
      });
    });
    // Dangerous buttons ask first (data-confirm holds the question).
    document.addEventListener("submit", function (event) {
      var button = event.submitter;
      var question = button && button.dataset.confirm;
      if (question && !window.confirm(question)) event.preventDefault();
    });
    refreshTimes();
    // The page was just rendered: its first poll is one interval away.
    document.querySelectorAll("[data-poll-every]").forEach(function (el) { lastPoll[el.id || "poll"] = Date.now(); });
    if (!document.hidden) startClock();
  });
})();
