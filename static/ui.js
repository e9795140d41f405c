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
  // Ask before destructive actions, in a dialog. Where a link to a confirmation page
  // (data-confirm-link) stands for the form, as it must without this script, the
  // form takes its place.
  var dialog = null;
  function confirmDialog() {
    if (dialog) return dialog;
    dialog = document.createElement("dialog");
    dialog.className = "confirm-dialog";
    dialog.setAttribute("aria-labelledby", "confirm-title");
    dialog.setAttribute("aria-describedby", "confirm-detail");
    dialog.innerHTML = '<h2 id="confirm-title"></h2><p id="confirm-detail"></p>' +
      '<div class="actions"><button type="button" class="button danger" data-yes></button>' +
      '<button type="button" class="button secondary" data-no autofocus>Cancel</button></div>';
    dialog.querySelector("[data-no]").addEventListener("click", function () { dialog.close(); });
    document.body.appendChild(dialog);
    return dialog;
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    var link = form.previousElementSibling;
    if (form.hidden && link && link.hasAttribute("data-confirm-link")) {
      link.hidden = true;
      form.hidden = false;
    }
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (typeof HTMLDialogElement !== "function") {
        if (window.confirm(form.dataset.confirm)) form.submit();
        return;
      }
      var d = confirmDialog();
      d.querySelector("h2").textContent = form.dataset.confirm;
      d.querySelector("p").textContent = form.dataset.confirmDetail || "";
      var yes = d.querySelector("[data-yes]");
      yes.textContent = form.dataset.confirmButton || "Confirm";
      yes.onclick = function () { d.close(); yes.disabled = true; form.submit(); };
      yes.disabled = false;
      d.showModal();
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
