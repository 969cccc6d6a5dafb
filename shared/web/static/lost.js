/* Delegated Admin Monitor portal: Lost access (#/lost).
 *
 * Delegated admin access that ended without this product removing it (the customer removed DAP or
 * terminated GDAP, Microsoft removed DAP, a relationship expired), newest first, with when, what and
 * who ended it, and "Request again": a new GDAP request from the template used before
 * (POST /api/gdap/reestablish). Same rules as app.js (whose helpers it uses through window.DAM): data
 * goes into the page as text or attribute values only, never as HTML.
 */
"use strict";

(function () {
  const D = window.DAM;
  const { $, el, clear, api, t, showFailure } = D;

  const lost = {
    rows: null,
    requested: new Map(),  // tenant id -> the re-establish answer (id, invitationLink, ...)
    seq: 0,
  };

  const canGrant = () => !!(D.state.me && D.state.me.canGrant);

  function tOr(key, fallback) {
    const text = t(key);
    return text === key ? fallback : text;
  }

  function accessLabel(row) {
    if (row.type === "DAP") return t("lostDap");
    return t("lostGdap", { name: row.relationshipName || row.relationshipId });
  }

  function causeLabel(row) {
    const key = row.cause === "customer" && row.type === "DAP" ? "lostCause_customerDap" : "lostCause_" + row.cause;
    return tOr(key, row.cause);
  }

  function actionCell(row) {
    const done = lost.requested.get(row.tenantId);
    if (done) {
      return el("td", { class: "lost-action", "data-requested": row.tenantId },
        el("span", { class: "badge result-requested" }, t("lostRequested")), " ",
        el("a", { href: done.invitationLink, target: "_blank", rel: "noopener noreferrer" }, t("gdapInvitationLabel")));
    }
    if (row.stillActive) return el("td", { class: "lost-action muted" }, t("lostStillActive"));
    if (!canGrant()) return el("td", { class: "lost-action muted" }, "—");
    const button = el("button", { type: "button", class: "button secondary", "data-reestablish": row.tenantId,
      "aria-label": t("lostRequestAgainFor", { name: row.displayName || row.tenantId }) }, t("lostRequestAgain"));
    button.addEventListener("click", () => reestablish(row, button));
    return el("td", { class: "lost-action" }, button);
  }

  function render() {
    const host = clear($("lost-rows"));
    if (lost.rows === null) return;
    $("lost-count").textContent = t("lostCount", { n: D.fmtNumber(lost.rows.length) });
    if (!lost.rows.length) {
      host.appendChild(el("p", { class: "muted" }, t("lostNone")));
      return;
    }
    const headers = ["lostColCustomer", "lostColAccess", "lostColEnded", "lostColCause", "lostColLastSignIn", "lostColAction"];
    const body = lost.rows.map((row) => el("tr", { "data-lost": row.id, "data-cause": row.cause },
      el("td", null, el("a", { href: "#/customers/" + encodeURIComponent(row.tenantId) }, row.displayName || row.tenantId)),
      el("td", null, accessLabel(row)),
      el("td", null, D.fmtDateTime(row.endedAt)),
      el("td", { title: row.detail || "" }, causeLabel(row)),
      el("td", null, row.lastSignInAt ? D.fmtDate(row.lastSignInAt) : t("lostNoSignIn")),
      actionCell(row)));
    host.appendChild(el("table", { class: "grid compact lost-table" },
      el("thead", null, el("tr", null, headers.map((h) => el("th", { scope: "col" }, t(h))))),
      el("tbody", null, body)));
  }

  async function load() {
    const seq = ++lost.seq;
    const host = clear($("lost-rows"));
    host.appendChild(el("p", { class: "muted" }, t("loading")));
    try {
      const result = await api("/api/lost-access");
      if (seq !== lost.seq) return;
      lost.rows = result.body.lostAccess;
      render();
    } catch (failure) {
      if (seq !== lost.seq) return;
      clear(host).appendChild(el("p", { class: "error" }, t("error", { message: failure.message })));
    }
  }

  async function reestablish(row, button) {
    button.disabled = true;
    try {
      const result = await api("/api/gdap/reestablish", { body: { customer: row.tenantId } });
      lost.requested.set(row.tenantId, result.body);
      render();
      const cell = document.querySelector('[data-requested="' + CSS.escape(row.tenantId) + '"] a');
      if (cell) cell.focus();
    } catch (failure) {
      button.disabled = false;
      showFailure(failure);
    }
  }

  function route(hash) {
    if (!/^#\/lost(?:\?.*)?$/.test(hash)) {
      $("lost").hidden = true;
      return false;
    }
    for (const id of ["dashboard", "customer", "trail", "gdap"]) $(id).hidden = true;
    $("lost").hidden = false;
    load();
    return true;
  }

  $("language").addEventListener("change", () => { if (!$("lost").hidden) render(); });
  window.DAM_LOST = { route: route };
  // app.js may have routed before this file ran: catch up once the signed-in user is known.
  if (D.state.me) route(window.location.hash);
})();
