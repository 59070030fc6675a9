// authproxy console: progressive enhancement only; every page works without it.
"use strict";

// Copy buttons: <button data-copy="ID"> copies the value of the element #ID.
function setUpCopyButtons() {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.classList.remove("hidden");
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy"));
      if (!field) { return; }
      var text = field.value !== undefined ? field.value : field.textContent;
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () {
          field.select(); document.execCommand("copy"); done();
        });
      } else {
        field.select(); document.execCommand("copy"); done();
      }
    });
  });
}

// Selecting a key kind shows the fields it needs (password, public key).
function setUpKindFields() {
  var kind = document.getElementById("kind");
  if (!kind) { return; }
  var sync = function () {
    document.querySelectorAll("[data-kind]").forEach(function (el) {
      el.classList.toggle("hidden", el.getAttribute("data-kind") !== kind.value);
    });
  };
  kind.addEventListener("change", sync);
  sync();
}

// Live pages: a tbody with data-poll="URL" refreshes from that HTML fragment.
function setUpPolling() {
  document.querySelectorAll("tbody[data-poll]").forEach(function (body) {
    var url = body.getAttribute("data-poll");
    var every = parseInt(body.getAttribute("data-every") || "2000", 10);
    var last = null;
    var tick = function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        // Unchanged rows stay as they are (no flicker, a selection survives).
        .then(function (html) { if (html !== last) { body.innerHTML = html; last = html; } })
        .catch(function () {})
        .finally(function () { window.setTimeout(tick, every); });
    };
    window.setTimeout(tick, every);
  });
}

document.addEventListener("DOMContentLoaded", function () {
  setUpCopyButtons();
  setUpKindFields();
  setUpPolling();
});
