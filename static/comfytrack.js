// comfytrack: the little behaviour htmx does not cover. Loaded from our origin (CSP: no inline scripts).
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
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
  });

  // Lightbox: htmx swaps a <dialog open> into #lightbox; make it modal (Escape, focus trap, backdrop).
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target || target.id !== "lightbox") return;
    var dialog = target.querySelector("dialog");
    if (!dialog || typeof dialog.showModal !== "function") return;
    dialog.removeAttribute("open");
    dialog.showModal();
    dialog.addEventListener("click", function (e) { if (e.target === dialog) dialog.close(); });
    dialog.addEventListener("close", function () { target.innerHTML = ""; });
  });
})();
