/* Delegated Admin Monitor portal: the GDAP lifecycle.
 *
 * The GDAP view (#/gdap: pending requests with their age, relationships ending soon with Extend
 * (single and bulk), Global Administrator with its removal, unused access assignments), the GDAP
 * tiles on the dashboard, the Request GDAP dialog with the invitation link, and Re-establish on the
 * customer view. Same rules as app.js (whose helpers it uses through window.DAM): data goes into the
 * page as text or attribute values only, never as HTML.
 */
"use strict";

(function () {
  const D = window.DAM;
  const { $, el, clear, api, t, notice, showFailure } = D;
  const WINDOWS = [30, 7, 1];
  const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10";

  const g = {
    within: 30,
    requests: null,
    expiring: null,
    leastPrivilege: null,
    selected: new Set(),
    results: new Map(),      // relationship id -> extend result
    templates: null,
    customers: [],
    customerTimer: null,
    gaTarget: null,
    returnFocus: null,
    reestablishTenant: null,
  };

  const canChange = () => !!(D.state.me && D.state.me.canRemove);  // removes or reduces access
  const canGrant = () => !!(D.state.me && D.state.me.canGrant);  // requests, re-establishes, extends
  const fmt = (n) => D.fmtNumber(n);

  function table(headers, rows, cls) {
    return el("table", { class: "grid compact " + (cls || "") },
      el("thead", null, el("tr", null, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", null, rows));
  }

  function customerLink(tenantId, name) {
    return el("a", { href: "#/customers/" + encodeURIComponent(tenantId) }, name || tenantId);
  }

  function roleNames(ids) {
    return ids.map((id) => D.roleLabel(id)).join(", ");
  }

  function templateLabel(name) {
    const template = (g.templates || []).find((x) => x.name === name);
    if (!template) return name;
    return template.displayName[D.state.lang] || template.displayName.en;
  }

  function statusLabel(status) {
    const key = "gdapStatus_" + status;
    const text = t(key);
    return text === key ? status : text;
  }

  // --- dashboard tiles ---------------------------------------------------------------------------
  async function loadTiles() {
    const section = $("gdap-tiles-section");
    try {
      const result = await api("/api/gdap/summary");
      const s = result.body;
      for (const w of WINDOWS) setTile(String(w), s.expiring[String(w)]);
      setTile("ga", s.withGlobalAdministrator);
      section.hidden = false;
    } catch (failure) {
      section.hidden = true;  // no role or nothing stored yet: the dashboard's own notice says why
    }
  }

  function setTile(key, count) {
    const tile = document.querySelector('[data-gdap-tile="' + key + '"]');
    if (tile) tile.querySelector("[data-count]").textContent = fmt(count);
  }

  // --- the view ------------------------------------------------------------------------------------
  function route(hash) {
    const match = /^#\/gdap(?:\?(.*))?$/.exec(hash);
    if (!match) {
      $("gdap").hidden = true;
      return false;
    }
    const params = new URLSearchParams(match[1] || "");
    const within = Number(params.get("within"));
    if (WINDOWS.indexOf(within) >= 0) g.within = within;
    $("dashboard").hidden = true;
    $("customer").hidden = true;
    $("trail").hidden = true;
    $("gdap").hidden = false;
    showView(params.get("section"));
    return true;
  }

  async function showView(section) {
    $("gdap-request").hidden = !canGrant();
    $("gdap-follow-up").hidden = !canGrant();
    $("main").focus({ preventScroll: true });
    window.scrollTo(0, 0);
    await Promise.all([ensureTemplates(), loadRequests(), loadExpiring(), loadLeastPrivilege()]);
    if (section === "ga") {
      $("gdap-ga-section").scrollIntoView();
      $("gdap-ga-section").focus({ preventScroll: true });
    }
  }

  async function ensureTemplates() {
    if (g.templates) return;
    try {
      g.templates = (await api("/api/gdap/templates")).body.templates;
    } catch (failure) {
      g.templates = [];
    }
  }

  // pending requests
  async function loadRequests() {
    try {
      g.requests = (await api("/api/gdap/requests")).body.requests;
    } catch (failure) {
      g.requests = [];
      showFailure(failure);
    }
    renderRequests();
  }

  function renderRequests() {
    const host = clear($("gdap-requests"));
    const items = g.requests || [];
    if (!items.length) {
      host.appendChild(el("p", { class: "muted" }, t("gdapNoRequests")));
      return;
    }
    host.appendChild(table(
      [t("colCustomer"), t("relName"), t("gdapTemplate"), t("relStatus"), t("gdapAge"), t("gdapInvitation"), t("actionBy")],
      items.map((r) => el("tr", { "data-request": r.id, "data-state": r.state },
        el("td", null, customerLink(r.tenantId, r.customerName)),
        el("td", { class: "mono" }, r.displayName),
        el("td", null, templateLabel(r.template)),
        el("td", null, el("span", { class: "badge gdap-state" }, statusLabel(r.state)),
          r.error ? el("div", { class: "small error" }, r.error) : null),
        el("td", { class: "num" }, t("days", { n: fmt(r.ageDays) })),
        el("td", null, el("a", { href: r.invitationLink, target: "_blank", rel: "noopener noreferrer" }, t("gdapOpenLink"))),
        el("td", { class: "small" }, r.requestedBy)))));
  }

  // expiring relationships
  async function loadExpiring() {
    try {
      g.expiring = (await api("/api/gdap/expiring?within=" + g.within)).body;
    } catch (failure) {
      g.expiring = null;
      showFailure(failure);
    }
    renderExpiring();
  }

  function renderExpiring() {
    const data = g.expiring;
    for (const button of document.querySelectorAll("#gdap-windows button")) {
      const w = Number(button.dataset.within);
      button.setAttribute("aria-pressed", w === g.within ? "true" : "false");
      button.textContent = t("gdapWithin", { n: fmt(w) }) + (data ? " (" + fmt(data.counts[String(w)]) + ")" : "");
    }
    const host = clear($("gdap-expiring"));
    const items = data ? data.relationships : [];
    const extendable = items.filter((r) => r.canAutoExtend && !isExtended(r.relationshipId));
    for (const id of Array.from(g.selected)) {
      if (!extendable.some((r) => r.relationshipId === id)) g.selected.delete(id);
    }
    const allButton = $("gdap-extend-all");
    allButton.textContent = t("gdapExtendAll", { n: fmt(extendable.length) });
    allButton.disabled = !extendable.length || !canGrant();
    allButton.hidden = !canGrant();
    const selectedButton = $("gdap-extend-selected");
    selectedButton.textContent = t("gdapExtendSelected", { n: fmt(g.selected.size) });
    selectedButton.disabled = !g.selected.size || !canGrant();
    selectedButton.hidden = !canGrant();
    if (!items.length) {
      host.appendChild(el("p", { class: "muted" }, t("gdapNoExpiring", { n: fmt(g.within) })));
      return;
    }
    host.appendChild(table(
      [el("span", { class: "visually-hidden" }, t("colSelect")), t("colCustomer"), t("relName"), t("relEnds"), t("gdapExpiresIn"), t("relRoles"), t("actionWhat")],
      items.map((r) => {
        const done = isExtended(r.relationshipId);
        const box = el("input", { type: "checkbox", class: "gdap-select", "data-relationship": r.relationshipId,
                                  "aria-label": t("selectRow", { name: r.displayName }) });
        box.checked = g.selected.has(r.relationshipId);
        box.disabled = !r.canAutoExtend || done || !canGrant();
        box.addEventListener("change", () => {
          if (box.checked) g.selected.add(r.relationshipId);
          else g.selected.delete(r.relationshipId);
          renderExpiring();
          const again = document.querySelector('.gdap-select[data-relationship="' + CSS.escape(r.relationshipId) + '"]');
          if (again) again.focus();
        });
        const action = el("td", { class: "gdap-action" });
        const result = g.results.get(r.relationshipId);
        if (result) {
          action.appendChild(el("span", { class: "badge gdap-result result-" + result.result, "data-result": result.result },
            t("gdapResult_" + result.result)));
          if (result.reason) action.appendChild(el("div", { class: "small muted" }, D.reasonLabel(result.reason)));
        }
        if (!r.canAutoExtend) {
          action.appendChild(el("span", { class: "small muted" }, t("gdapCannotExtendGa")));
        } else if (!done && canGrant()) {
          const button = el("button", { type: "button", class: "button secondary small-button", "data-extend": r.relationshipId,
                                        "aria-label": t("gdapExtendOne", { name: r.displayName }) }, t("gdapExtend"));
          button.addEventListener("click", () => extend({ relationshipIds: [r.relationshipId] }, button));
          action.appendChild(button);
        }
        const days = r.expiresInDays;
        return el("tr", { "data-relationship": r.relationshipId, "data-window": r.window },
          el("td", { class: "col-select" }, box),
          el("td", null, customerLink(r.tenantId, r.customerName)),
          el("td", { class: "mono" }, r.displayName),
          el("td", { class: "nowrap" }, D.fmtDateTime(r.endsAt)),
          el("td", { class: "num" + (days !== null && days <= 1 ? " urgent" : "") },
            days === null ? "" : t("days", { n: fmt(days) })),
          el("td", { class: "small" }, roleNames(r.roles)),
          action);
      })));
  }

  function isExtended(id) {
    const result = g.results.get(id);
    return !!result && (result.result === "extended" || result.result === "unchanged");
  }

  async function extend(body, button) {
    button.disabled = true;
    $("gdap-expiring-status").textContent = t("gdapExtending");
    try {
      const result = await api("/api/gdap/extend", { body: body });
      const s = result.body;
      for (const r of s.results) g.results.set(r.relationshipId, r);
      g.selected.clear();
      const text = t("gdapExtendDone", { extended: fmt(s.extended + s.unchanged), skipped: fmt(s.skipped), failed: fmt(s.failed) });
      $("gdap-expiring-status").textContent = text;
      notice(text, s.failed ? "warning" : "success");
      renderExpiring();
      loadTiles();
    } catch (failure) {
      $("gdap-expiring-status").textContent = "";
      showFailure(failure);
      button.disabled = false;
    }
  }

  // least privilege: Global Administrator and unused access assignments
  async function loadLeastPrivilege() {
    $("gdap-unused").textContent = t("loading");
    try {
      g.leastPrivilege = (await api("/api/gdap/least-privilege")).body;
    } catch (failure) {
      g.leastPrivilege = null;
      showFailure(failure);
    }
    renderGa();
    renderUnused();
  }

  function renderGa() {
    const host = clear($("gdap-ga"));
    const items = g.leastPrivilege ? g.leastPrivilege.globalAdministrator : [];
    if (!items.length) {
      host.appendChild(el("p", { class: "muted" }, t("gdapNoGa")));
      return;
    }
    host.appendChild(table([t("colCustomer"), t("relName"), t("relEnds"), t("relRoles"), t("actionWhat")],
      items.map((r) => {
        const action = el("td", { class: "gdap-action" });
        if (r.removal && r.removal.state === "requested") {
          action.appendChild(el("span", { class: "badge gdap-result result-requested", "data-result": "requested" },
            t("gdapGaRequested")));
        } else if (canChange()) {
          const button = el("button", { type: "button", class: "button danger small-button", "data-remove-ga": r.relationshipId,
                                        "aria-label": t("gdapRemoveGaOne", { name: r.displayName }) }, t("gdapRemoveGa"));
          button.addEventListener("click", () => openGaDialog(r, button));
          action.appendChild(button);
        }
        return el("tr", { "data-relationship": r.relationshipId },
          el("td", null, customerLink(r.tenantId, r.customerName)),
          el("td", { class: "mono" }, r.displayName),
          el("td", { class: "nowrap" }, D.fmtDate(r.endsAt)),
          el("td", { class: "small" }, roleNames(r.roles)),
          action);
      })));
  }

  function renderUnused() {
    const host = clear($("gdap-unused"));
    const data = g.leastPrivilege;
    if (!data) return;
    host.appendChild(el("p", { class: "muted small" }, data.coverageFrom
      ? t("gdapUnusedWindow", { days: fmt(data.windowDays), from: D.fmtDate(data.coverageFrom > data.windowFrom ? data.coverageFrom : data.windowFrom) })
      : t("gdapUnusedNoData")));
    if (!data.unusedAssignments.length) {
      host.appendChild(el("p", { class: "muted" }, t("gdapNoUnused")));
      return;
    }
    host.appendChild(table(
      [t("colCustomer"), t("relName"), t("gdapGroup"), t("relRoles"), t("gdapMembers"), t("gdapEvidence"), t("colRecommendation")],
      data.unusedAssignments.map((u) => el("tr", { "data-assignment": u.assignmentId },
        el("td", null, customerLink(u.tenantId, u.customerName)),
        el("td", { class: "mono" }, u.relationshipName),
        el("td", null, u.groupName || u.groupId),
        el("td", { class: "small" }, roleNames(u.roles)),
        el("td", { class: "num" }, fmt(u.members)),
        el("td", { class: "small" }, t("gdapEvidenceDays", { n: fmt(u.evidenceDays), from: D.fmtDate(u.evidenceFrom) })),
        el("td", null, el("span", { class: "badge rec-remove" }, t("gdapRecRemoveAssignment")))))));
  }

  // --- Remove Global Administrator (confirmation) --------------------------------------------------
  function openGaDialog(item, returnFocus) {
    g.gaTarget = item;
    g.returnFocus = returnFocus;
    $("ga-intro").textContent = t("gaIntro", { name: item.displayName, customer: item.customerName || item.tenantId });
    $("ga-keep").textContent = roleNames(item.rolesAfterRemoval.length ? item.rolesAfterRemoval
      : item.roles.filter((r) => r !== GLOBAL_ADMINISTRATOR));
    $("ga-error").hidden = true;
    $("ga-confirm").disabled = false;
    $("ga-confirm").textContent = t("gaConfirm");
    $("ga-dialog").showModal();
    $("ga-cancel").focus();
  }

  async function submitGa(event) {
    event.preventDefault();
    const item = g.gaTarget;
    if (!item) return;
    const confirm = $("ga-confirm");
    confirm.disabled = true;
    confirm.textContent = t("removing");
    try {
      const result = await api("/api/gdap/remove-global-admin", { body: { relationshipId: item.relationshipId } });
      const r = result.body;
      if (r.result === "completed" || r.result === "unchanged") {
        g.leastPrivilege.globalAdministrator = g.leastPrivilege.globalAdministrator.filter((x) => x.relationshipId !== item.relationshipId);
      } else {
        item.removal = { state: "requested", operationId: r.operationId };
      }
      $("ga-dialog").close();
      notice(t(r.result === "requested" ? "gaRequestedNotice" : "gaDoneNotice", { name: item.displayName }), "success");
      renderGa();
      loadTiles();
      const row = document.querySelector('#gdap-ga tr[data-relationship="' + CSS.escape(item.relationshipId) + '"]');
      $("gdap-ga-section").focus({ preventScroll: !!row });
    } catch (failure) {
      $("ga-error").textContent = t("error", { message: failure.message });
      $("ga-error").hidden = false;
      confirm.disabled = false;
      confirm.textContent = t("gaConfirm");
    }
  }

  // --- Request GDAP (dialog) and Re-establish ---------------------------------------------------------
  async function openRequestDialog(returnFocus) {
    g.returnFocus = returnFocus;
    await ensureTemplates();
    const select = clear($("gdap-template"));
    for (const template of g.templates) {
      select.appendChild(el("option", { value: template.name }, template.displayName[D.state.lang] || template.displayName.en));
    }
    $("gdap-customer").value = "";
    $("gdap-notify").checked = false;
    $("gdap-request-error").hidden = true;
    showRequestForm(true);
    describeTemplate();
    $("gdap-request-dialog").showModal();
    $("gdap-customer").focus();
  }

  function showRequestForm(form) {
    $("gdap-request-fields").hidden = !form;
    $("gdap-request-submit").hidden = !form;
    $("gdap-request-cancel").textContent = form ? t("cancel") : t("gdapClose");
    $("gdap-result").hidden = form;
  }

  function describeTemplate() {
    const template = (g.templates || []).find((x) => x.name === $("gdap-template").value);
    const host = clear($("gdap-template-info"));
    if (!template) return;
    host.appendChild(el("p", null, template.description[D.state.lang] || template.description.en));
    host.appendChild(el("p", { class: "small muted" }, t("gdapTemplateFacts", {
      roles: roleNames(template.roles), days: fmt(template.durationDays),
      auto: template.autoExtend ? t("yes") : t("no") })));
    if (template.includesGlobalAdministrator) host.appendChild(el("p", { class: "small error" }, t("gdapTemplateGa")));
  }

  async function searchCustomers(text) {
    try {
      const result = await api("/api/gdap/customers?q=" + encodeURIComponent(text));
      g.customers = result.body.customers;
    } catch (failure) {
      g.customers = [];
    }
    const list = clear($("gdap-customer-options"));
    for (const c of g.customers) {
      list.appendChild(el("option", { value: c.tenantId }, (c.displayName || c.tenantId) + (c.active ? " · " + t("gdapHasAccess") : "")));
    }
  }

  function chosenCustomer() {
    const value = $("gdap-customer").value.trim();
    if (GUID.test(value)) return value;
    // A name: the one customer of the search results it names exactly, else the only one it matches.
    const needle = value.toLowerCase();
    if (!needle) return null;
    const exact = g.customers.filter((c) => (c.displayName || "").toLowerCase() === needle);
    const partial = g.customers.filter((c) => (c.displayName || "").toLowerCase().indexOf(needle) >= 0);
    const matches = exact.length ? exact : partial;
    return matches.length === 1 ? matches[0].tenantId : null;
  }

  async function submitRequest(event) {
    event.preventDefault();
    const error = $("gdap-request-error");
    const customer = chosenCustomer();
    if (!customer) {
      error.textContent = t("gdapChooseCustomer");
      error.hidden = false;
      $("gdap-customer").focus();
      return;
    }
    const submit = $("gdap-request-submit");
    submit.disabled = true;
    submit.textContent = t("gdapRequesting");
    try {
      const result = await api("/api/gdap/requests", { body: {
        customer: customer, template: $("gdap-template").value, notifyCustomer: $("gdap-notify").checked } });
      showResult(result.body, result.status === 200 ? "gdapResultExisting" : "gdapResultCreated");
      loadRequests();
      loadTiles();
    } catch (failure) {
      error.textContent = t("error", { message: failure.message });
      error.hidden = false;
    } finally {
      submit.disabled = false;
      submit.textContent = t("gdapRequestSubmit");
    }
  }

  function showResult(request, headline) {
    showRequestForm(false);
    $("gdap-result-title").textContent = t(headline);
    $("gdap-result-summary").textContent = t("gdapResultSummary", {
      customer: request.customerName || request.tenantId, name: request.displayName,
      template: templateLabel(request.template), status: statusLabel(request.status) });
    const link = $("gdap-invitation-link");
    link.setAttribute("href", request.invitationLink);
    link.textContent = request.invitationLink;
    $("gdap-result-mailed").textContent = request.notifiedTo && request.notifiedTo.length
      ? t("gdapMailed", { to: request.notifiedTo.join(", ") }) : t("gdapSendLink");
    $("gdap-result-basis").textContent = request.basis ? t("gdapBasis_" + request.basis) : "";
    $("gdap-copy-status").textContent = "";
    link.focus();
  }

  async function copyLink() {
    const link = $("gdap-invitation-link").getAttribute("href") || "";
    try {
      await navigator.clipboard.writeText(link);
      $("gdap-copy-status").textContent = t("gdapCopied");
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents($("gdap-invitation-link"));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      $("gdap-copy-status").textContent = t("gdapCopyManually");
    }
  }

  async function reestablish() {
    const tenant = g.reestablishTenant;
    if (!tenant) return;
    const button = $("customer-reestablish");
    button.disabled = true;
    try {
      const result = await api("/api/gdap/reestablish", { body: { customer: tenant } });
      await ensureTemplates();
      g.returnFocus = button;
      $("gdap-request-dialog").showModal();
      showResult(result.body, result.status === 200 ? "gdapResultExisting" : "gdapResultReestablished");
    } catch (failure) {
      showFailure(failure);
    } finally {
      button.disabled = false;
    }
  }

  function customerRendered(c) {
    const removed = !c.row && c.relationships.length > 0;
    g.reestablishTenant = removed ? c.tenantId : null;
    $("customer-reestablish").hidden = !(removed && canGrant());
  }

  async function followUp() {
    const button = $("gdap-follow-up");
    button.disabled = true;
    try {
      const result = await api("/api/gdap/follow-up", { body: {} });
      const s = result.body;
      const active = s.requests.filter((r) => r.state === "active").length;
      notice(t("gdapFollowUpDone", { n: fmt(s.requests.length), active: fmt(active) }), s.errors ? "warning" : "success");
      await Promise.all([loadRequests(), loadExpiring(), loadLeastPrivilege()]);
      loadTiles();
    } catch (failure) {
      showFailure(failure);
    } finally {
      button.disabled = false;
    }
  }

  function languageChanged() {
    if (!$("gdap").hidden) {
      renderRequests();
      renderExpiring();
      renderGa();
      renderUnused();
    }
  }

  function wire() {
    for (const button of document.querySelectorAll("#gdap-windows button")) {
      button.addEventListener("click", () => {
        g.within = Number(button.dataset.within);
        g.selected.clear();
        loadExpiring();
      });
    }
    $("gdap-extend-selected").addEventListener("click", (event) => {
      if (g.selected.size) extend({ relationshipIds: Array.from(g.selected) }, event.currentTarget);
    });
    $("gdap-extend-all").addEventListener("click", (event) => extend({ all: true, within: g.within }, event.currentTarget));
    $("gdap-request").addEventListener("click", (event) => openRequestDialog(event.currentTarget));
    $("gdap-follow-up").addEventListener("click", followUp);
    $("gdap-template").addEventListener("change", describeTemplate);
    $("gdap-customer").addEventListener("input", (event) => {
      window.clearTimeout(g.customerTimer);
      const value = event.target.value.trim();
      g.customerTimer = window.setTimeout(() => searchCustomers(value), 200);
    });
    $("gdap-request-form").addEventListener("submit", submitRequest);
    $("gdap-request-cancel").addEventListener("click", () => $("gdap-request-dialog").close());
    $("gdap-copy").addEventListener("click", copyLink);
    $("ga-form").addEventListener("submit", submitGa);
    $("ga-cancel").addEventListener("click", () => $("ga-dialog").close());
    for (const id of ["gdap-request-dialog", "ga-dialog"]) {
      $(id).addEventListener("close", () => {
        if (g.returnFocus && document.body.contains(g.returnFocus)) g.returnFocus.focus();
      });
    }
    $("customer-reestablish").addEventListener("click", reestablish);
    $("gdap-ga-section").setAttribute("tabindex", "-1");
  }

  wire();
  window.DAM_GDAP = { route: route, dashboardShown: loadTiles, customerRendered: customerRendered,
                      languageChanged: languageChanged };
  // app.js may have routed before this file ran: catch up once the signed-in user is known.
  if (D.state.me) {
    if (!route(window.location.hash) && !$("dashboard").hidden) loadTiles();
  }
})();
