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
  if (document.getElementById("board")) kanban();
});

// Kanban boards: drag and drop and keyboard moves (posting the arrow buttons' form,
// rolled back when refused), and the board kept current by the server's events.
function kanban() {
  var base = "/ui/boards/" + document.getElementById("board").dataset.board;
  var status = document.getElementById("board-live");
  var busy = 0, stale = false, drag = null, lifted = null;
  function root() { return document.getElementById("board"); }
  function editable() { return !!root().dataset.csrf; }
  function say(text) { status.textContent = text; }
  function problem(text) {
    var p = document.getElementById("board-error");
    if (!text) { if (p) p.remove(); return; }
    if (!p) {
      p = document.createElement("p");
      p.id = "board-error";
      p.className = "flash flash-error board-error";
      p.setAttribute("role", "alert");
      root().parentNode.insertBefore(p, root());
    }
    p.textContent = text;
  }
  function enhance() {
    if (!editable()) return;
    root().querySelectorAll(".ticket").forEach(function (t) {
      t.draggable = true;
      t.tabIndex = 0;
      t.setAttribute("aria-describedby", "board-help");
    });
    root().querySelectorAll(".column-head").forEach(function (h) {
      h.draggable = true;
      h.tabIndex = 0;
      h.setAttribute("aria-describedby", "board-help");
    });
  }
  function cards(list) { return Array.prototype.slice.call(list.querySelectorAll(":scope > .ticket")); }
  function columns() { return Array.prototype.slice.call(root().querySelectorAll(".column[data-column]")); }
  function name(el) { return el.querySelector("h2, h3").textContent.trim(); }
  function where(card) {
    var list = card.parentNode;
    return name(card) + ": column " + name(list.closest(".column")) + ", place " +
      (cards(list).indexOf(card) + 1) + " of " + cards(list).length + ".";
  }
  function columnAt(column) {
    return "Column " + name(column) + ", place " + (columns().indexOf(column) + 1) + " of " + columns().length + ".";
  }
  function post(url, fields) {
    var body = new URLSearchParams(fields);
    body.set("csrf_token", root().dataset.csrf);
    return fetch(url, { method: "POST", body: body, headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 204) return;
        if (r.redirected) throw new Error("you are no longer signed in; reload the page.");
        return r.json().then(function (j) { throw new Error(j.message); },
          function () { throw new Error("the server answered " + r.status + "."); });
      });
  }
  // Sends a move already shown; puts the element back where it was if refused.
  function send(el, origin, url, fields) {
    if (el.parentNode === origin.parent && el.nextElementSibling === origin.next) return;
    busy++;
    post(url, fields).then(function () {
      problem(null);
    }, function (e) {
      origin.parent.insertBefore(el, origin.next);
      problem("The move was undone: " + e.message);
      say("The move was undone.");
    }).then(function () { busy--; stale = true; refresh(); });
  }
  function sendTicket(card, origin) {
    var list = card.parentNode;
    send(card, origin, base + "/tickets/" + card.id.slice(7) + "/move",
      { column: list.dataset.column, position: cards(list).indexOf(card) + 1 });
  }
  function sendColumn(column, origin) {
    send(column, origin, base + "/columns/" + column.dataset.column + "/move",
      { position: columns().indexOf(column) + 1 });
  }
  function originOf(el) { return { parent: el.parentNode, next: el.nextElementSibling }; }

  document.addEventListener("dragstart", function (e) {
    if (!editable() || !e.target.closest) return;
    var card = e.target.closest(".ticket"), head = e.target.closest(".column-head");
    var el = card || (head && head.closest(".column"));
    if (!el || !root().contains(el)) return;
    drag = { el: el, ticket: !!card, origin: originOf(el), dropped: false };
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", el.id);
    el.classList.add("dragging");
  });
  document.addEventListener("dragover", function (e) {
    if (!drag || !e.target.closest) return;
    var column = e.target.closest(".column[data-column]");
    if (!column) return;
    e.preventDefault();
    if (drag.ticket) {
      var list = column.querySelector(".tickets");
      var before = cards(list).filter(function (c) {
        var r = c.getBoundingClientRect();
        return c !== drag.el && e.clientY < r.top + r.height / 2;
      })[0] || null;
      if (drag.el.parentNode !== list || drag.el.nextElementSibling !== before) list.insertBefore(drag.el, before);
    } else if (column !== drag.el) {
      var r = column.getBoundingClientRect();
      column.parentNode.insertBefore(drag.el, e.clientX < r.left + r.width / 2 ? column : column.nextElementSibling);
    }
  });
  document.addEventListener("drop", function (e) {
    if (!drag) return;
    e.preventDefault();
    drag.dropped = true;
  });
  document.addEventListener("dragend", function () {
    if (!drag) return;
    var d = drag;
    drag = null;
    d.el.classList.remove("dragging");
    if (!d.dropped) d.origin.parent.insertBefore(d.el, d.origin.next);
    else if (d.ticket) sendTicket(d.el, d.origin);
    else sendColumn(d.el, d.origin);
    refresh();
  });

  // From the keyboard: Space picks a focused card (or column heading) up, the arrow
  // keys move it, Space drops it, Escape puts it back.
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (!editable() || !t.classList) return;
    var card = t.classList.contains("ticket"), head = t.classList.contains("column-head");
    if (!card && !head) return;
    var el = card ? t : t.closest(".column");
    if (!lifted) {
      if (e.key !== " ") return;
      e.preventDefault();
      lifted = { el: el, origin: originOf(el) };
      el.classList.add("lifted");
      say("Picked up " + (card ? where(el) : columnAt(el)) + " Arrow keys move it, Space drops it, Escape puts it back.");
      return;
    }
    if (lifted.el !== el) return;
    if (e.key === " " || e.key === "Escape") {
      e.preventDefault();
      var l = lifted;
      lifted = null;
      el.classList.remove("lifted");
      if (e.key === "Escape") {
        l.origin.parent.insertBefore(el, l.origin.next);
        say("Move cancelled.");
      } else {
        say("Dropped. " + (card ? where(el) : columnAt(el)));
        if (card) sendTicket(el, l.origin); else sendColumn(el, l.origin);
      }
      t.focus();
      refresh();
      return;
    }
    var all = columns(), col = all.indexOf(el.closest(".column"));
    var left = e.key === "ArrowLeft", right = e.key === "ArrowRight";
    if (head) {
      if (left && col > 0) el.parentNode.insertBefore(el, all[col - 1]);
      else if (right && col < all.length - 1) el.parentNode.insertBefore(el, all[col + 1].nextElementSibling);
      else if (!left && !right) return;
    } else {
      var list = el.parentNode, at = cards(list).indexOf(el);
      if (e.key === "ArrowUp" && at > 0) list.insertBefore(el, cards(list)[at - 1]);
      else if (e.key === "ArrowDown" && at < cards(list).length - 1) list.insertBefore(el, cards(list)[at + 1].nextElementSibling);
      else if ((left && col > 0) || (right && col < all.length - 1)) {
        var to = all[col + (left ? -1 : 1)].querySelector(".tickets");
        to.insertBefore(el, cards(to)[at] || null);
      } else if (["ArrowUp", "ArrowDown"].indexOf(e.key) < 0 && !left && !right) return;
    }
    e.preventDefault();
    t.focus();
    say(card ? where(el) : columnAt(el));
  });

  // Swaps in the server's board, keeping what the reader was typing and where.
  function refresh() {
    if (!stale) return;
    if (busy || drag || lifted) return;
    stale = false;
    fetch(base + "/live", { credentials: "same-origin" }).then(function (r) {
      if (r.status === 404) { problem("This board has been deleted."); return null; }
      if (!r.ok) throw new Error(r.status);
      return r.text();
    }).then(function (html) {
      if (html === null) return;
      if (busy || drag || lifted) { stale = true; return; }
      var t = document.createElement("template");
      t.innerHTML = html.trim();
      var fresh = t.content.firstElementChild, old = root();
      var focus = document.activeElement, focusId = focus && old.contains(focus) ? focus.id : null;
      old.querySelectorAll("form").forEach(function (f) {
        var twin = fresh.querySelector('form[action="' + f.getAttribute("action") + '"]');
        if (!twin) return;
        var d = f.closest("details"), td = twin.closest("details");
        if (d && td) td.open = d.open;
        f.querySelectorAll("input[type=text], textarea").forEach(function (i) {
          var ti = twin.querySelector('[name="' + i.name + '"]');
          if (ti) ti.value = i.value;
        });
      });
      old.replaceWith(fresh);
      enhance();
      var again = focusId && document.getElementById(focusId);
      if (again) again.focus();
    }).catch(function () { stale = true; });
  }
  enhance();
  if (window.EventSource) {
    var events = new EventSource(base + "/events");
    events.addEventListener("version", function (e) {
      if (e.data !== root().dataset.version) { stale = true; refresh(); }
    });
    events.addEventListener("deleted", function () {
      events.close();
      problem("This board has been deleted.");
    });
  }
}
