// Gatehouse web UI: small improvements; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Password rules ticked off while typing (the server still decides).
  document.querySelectorAll("[data-rules-for]").forEach(function (list) {
    var input = document.getElementById(list.getAttribute("data-rules-for"));
    if (!input) return;
    var tests = {
      length: function (v, li) { var n = Array.from(v).length; return n >= +li.dataset.min && n <= +li.dataset.max; },
      lower: function (v) { return /\p{Ll}/u.test(v); },
      upper: function (v) { return /\p{Lu}/u.test(v); },
      digit: function (v) { return /[0-9]/.test(v); },
      symbol: function (v) { return /[^\p{L}\p{N}]/u.test(v); }
    };
    list.setAttribute("aria-live", "polite");
    input.addEventListener("input", function () {
      list.querySelectorAll("[data-rule]").forEach(function (li) {
        li.classList.toggle("met", tests[li.dataset.rule](input.value, li));
      });
    });
  });
  // Ask before destructive actions.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) e.preventDefault();
    });
  });
  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { window.print(); });
  });
  document.querySelectorAll("[data-dismiss]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { b.parentElement.remove(); });
  });
});
