/* Delegated Admin Monitor portal: the GDAP lifecycle.
 *
 * The GDAP view (#/gdap): one table of GDAP items (pending requests with their age, relationships
 * ending soon, relationships holding Global Administrator, access assignments nobody uses), tiles
 * whose counts filter it, search, paging, multi-select and one bulk action per kind (extend, remove
 * Global Administrator, remove unused assignments) behind one confirmation that lists what will
 * happen per relationship, then a result per relationship. Also the GDAP tiles on the dashboard, the
 * Request GDAP dialog with the invitation link, and Re-establish on the customer view (a
 * confirmation with the roles held before and those requested, and which are dropped and why). Same rules as app.js (whose helpers it uses through window.DAM): data goes into the
 * page as text or attribute values only, never as HTML.
 */
"use strict";

(function () {
  const D = window.DAM;
  const { $, el, clear, append, api, t, notice, showFailure } = D;
  const WINDOWS = [30, 7, 1];
  const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10";

  const g = {
    requests: null,
    expiring: null,
    leastPrivilege: null,
    items: [],
    filter: { kind: null, within: 30 },  // a tile: kind (and the window of "ending within")
    query: "",
    page: 1,
    pageSize: 25,
    selected: new Map(),     // item key -> item
    results: new Map(),      // item key -> {result, reason, outcome: done | refused | failed}
    bulk: null,              // the confirmation open: {kind, items} or {kind: "reestablish", tenant}
    confirmText: "",
    searchTimer: null,
    templates: null,
    customers: [],
    customerTimer: null,
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

  // --- the view: one table of GDAP items, tiles that filter it, search, paging, bulk actions ---------
  // An item is one thing to look at or act on: a pending request, a relationship ending soon, a
  // relationship holding Global Administrator, or an access assignment nobody used.
  const KINDS = ["request", "expiring", "ga", "unused"];
  const BULK = {  // one bulk action per kind, behind one confirmation
    expiring: { button: "gdap-bulk-extend", allowed: () => canGrant() },
    ga: { button: "gdap-bulk-ga", allowed: () => canChange() },
    unused: { button: "gdap-bulk-unused", allowed: () => canChange() },
  };

  function route(hash) {
    const match = /^#\/gdap(?:\?(.*))?$/.exec(hash);
    if (!match) {
      $("gdap").hidden = true;
      return false;
    }
    const params = new URLSearchParams(match[1] || "");
    const within = Number(params.get("within"));
    const kind = params.get("kind") || (params.get("section") === "ga" ? "ga" : null);
    if (WINDOWS.indexOf(within) >= 0) g.filter = { kind: "expiring", within: within };
    else if (KINDS.indexOf(kind) >= 0) g.filter = { kind: kind, within: 30 };
    else g.filter = { kind: null, within: 30 };
    g.page = 1;
    $("dashboard").hidden = true;
    $("customer").hidden = true;
    $("trail").hidden = true;
    $("gdap").hidden = false;
    showView();
    return true;
  }

  async function showView() {
    $("gdap-request").hidden = !canGrant();
    $("gdap-follow-up").hidden = !canGrant();
    $("main").focus({ preventScroll: true });
    window.scrollTo(0, 0);
    await loadAll();
  }

  async function loadAll() {
    $("gdap-empty").hidden = false;
    $("gdap-empty").textContent = t("loading");
    const [requests, expiring, least] = await Promise.all([
      ensureTemplates().then(() => api("/api/gdap/requests")).then((r) => r.body.requests, fail([])),
      api("/api/gdap/expiring?within=30").then((r) => r.body, fail(null)),
      api("/api/gdap/least-privilege").then((r) => r.body, fail(null)),
    ]);
    g.requests = requests;
    g.expiring = expiring;
    g.leastPrivilege = least;
    g.items = buildItems();
    const keys = new Set(g.items.map((x) => x.key));
    for (const key of Array.from(g.selected.keys())) if (!keys.has(key)) g.selected.delete(key);
    render();
  }

  async function ensureTemplates() {
    if (g.templates) return;
    try {
      g.templates = (await api("/api/gdap/templates")).body.templates;
    } catch (failure) {
      g.templates = [];
    }
  }

  function fail(fallback) {
    return (failure) => { showFailure(failure); return fallback; };
  }

  function buildItems() {
    const items = [];
    for (const r of g.requests || []) {
      items.push({ key: "request:" + r.id, kind: "request", tenantId: r.tenantId, customerName: r.customerName,
                   relationshipId: r.id, relationshipName: r.displayName, data: r });
    }
    for (const r of (g.expiring && g.expiring.relationships) || []) {
      items.push({ key: "expiring:" + r.relationshipId, kind: "expiring", tenantId: r.tenantId, customerName: r.customerName,
                   relationshipId: r.relationshipId, relationshipName: r.displayName, data: r });
    }
    const least = g.leastPrivilege;
    for (const r of (least && least.globalAdministrator) || []) {
      items.push({ key: "ga:" + r.relationshipId, kind: "ga", tenantId: r.tenantId, customerName: r.customerName,
                   relationshipId: r.relationshipId, relationshipName: r.displayName, data: r });
    }
    for (const u of (least && least.unusedAssignments) || []) {
      items.push({ key: "unused:" + u.relationshipId + "/" + u.assignmentId, kind: "unused", tenantId: u.tenantId,
                   customerName: u.customerName, relationshipId: u.relationshipId, relationshipName: u.relationshipName,
                   data: u });
    }
    return items;
  }

  function matchesFilter(item) {
    const f = g.filter;
    if (f.kind && item.kind !== f.kind) return false;
    if (f.kind === "expiring" && !(item.data.window && item.data.window <= f.within)) return false;
    const needle = g.query.trim().toLowerCase();
    if (!needle) return true;
    return [item.customerName, item.relationshipName, item.tenantId, item.relationshipId,
            item.kind === "unused" ? item.data.groupName : ""]
      .some((v) => (v || "").toLowerCase().indexOf(needle) >= 0);
  }

  function isDone(item) {
    const result = g.results.get(item.key);
    return !!result && result.outcome === "done";
  }

  function selectable(item) {
    const bulk = BULK[item.kind];
    if (!bulk || !bulk.allowed() || isDone(item)) return false;
    if (item.kind === "expiring") return !!item.data.canAutoExtend;
    if (item.kind === "ga") return !(item.data.removal && item.data.removal.state === "requested");
    return true;
  }

  function render() {
    renderTiles();
    const filtered = g.items.filter(matchesFilter);
    const pages = Math.max(1, Math.ceil(filtered.length / g.pageSize));
    g.page = Math.min(Math.max(1, g.page), pages);
    const first = (g.page - 1) * g.pageSize;
    const shown = filtered.slice(first, first + g.pageSize);
    const body = clear($("gdap-rows"));
    for (const item of shown) body.appendChild(row(item));
    $("gdap-empty").hidden = filtered.length > 0;
    $("gdap-empty").textContent = g.items.length ? t("gdapNoMatch") : t("gdapNothing");
    $("gdap-range").textContent = filtered.length
      ? t("range", { from: fmt(first + 1), to: fmt(first + shown.length), total: fmt(filtered.length) }) : "";
    $("gdap-page-of").textContent = t("pageOf", { page: fmt(g.page), pages: fmt(pages) });
    $("gdap-prev").disabled = g.page <= 1;
    $("gdap-next").disabled = g.page >= pages;
    const pageBox = $("gdap-select-page");
    const choosable = shown.filter(selectable);
    pageBox.hidden = !Object.values(BULK).some((b) => b.allowed());
    pageBox.disabled = !choosable.length;
    pageBox.checked = choosable.length > 0 && choosable.every((x) => g.selected.has(x.key));
    pageBox.indeterminate = !pageBox.checked && choosable.some((x) => g.selected.has(x.key));
    const chip = $("gdap-filter-chip");
    chip.hidden = !g.filter.kind;
    if (g.filter.kind) $("gdap-filter-chip-text").textContent = filterLabel();
    renderNote();
    renderBulkButtons();
  }

  function filterLabel() {
    const f = g.filter;
    if (f.kind === "expiring") return t("tileExpiring" + f.within);
    return t("gdapFilter_" + f.kind);
  }

  function renderTiles() {
    const count = (kind, within) => g.items.filter((x) => x.kind === kind
      && (kind !== "expiring" || (x.data.window && x.data.window <= within))).length;
    for (const tile of document.querySelectorAll("#gdap-kind-tiles [data-kind]")) {
      const kind = tile.dataset.kind;
      const within = Number(tile.dataset.within || 30);
      tile.querySelector("[data-count]").textContent = fmt(count(kind, within));
      const pressed = g.filter.kind === kind && (kind !== "expiring" || g.filter.within === within);
      tile.setAttribute("aria-pressed", pressed ? "true" : "false");
    }
  }

  function renderNote() {
    const note = $("gdap-note");
    const data = g.leastPrivilege;
    if (g.filter.kind !== "unused" || !data) { note.hidden = true; return; }
    note.hidden = false;
    note.textContent = data.coverageFrom
      ? t("gdapUnusedWindow", { days: fmt(data.windowDays),
          from: D.fmtDate(data.coverageFrom > data.windowFrom ? data.coverageFrom : data.windowFrom) })
      : t("gdapUnusedNoData");
  }

  function renderBulkButtons() {
    let total = 0;
    for (const [kind, bulk] of Object.entries(BULK)) {
      const n = selectedOf(kind).length;
      total += n;
      const button = $(bulk.button);
      button.hidden = !bulk.allowed();
      button.disabled = !n;
      button.textContent = t("gdapBulk_" + kind, { n: fmt(n) });
    }
    $("gdap-selection-count").textContent = total ? t("gdapSelected", { n: fmt(total) }) : "";
    $("gdap-selection-clear").hidden = !total;
  }

  function selectedOf(kind) {
    return g.items.filter((x) => x.kind === kind && g.selected.has(x.key) && selectable(x));
  }

  function kindBadge(item) {
    const d = item.data;
    if (item.kind === "expiring") {
      const days = d.expiresInDays;
      return el("span", { class: "badge gdap-kind kind-expiring" + (days !== null && days <= 1 ? " urgent" : "") },
        days === null ? t("gdapKind_expiring") : days < 1 ? t("gdapKindEndsToday") : t("gdapKindEnds", { n: fmt(days) }));
    }
    return el("span", { class: "badge gdap-kind kind-" + item.kind }, t("gdapKind_" + item.kind));
  }

  function details(item) {
    const d = item.data;
    if (item.kind === "request") {
      return [el("div", null, templateLabel(d.template), " · ",
                 el("span", { class: "badge gdap-state" }, statusLabel(d.state)), " · ", t("days", { n: fmt(d.ageDays) })),
              d.error ? el("div", { class: "small error" }, d.error) : null,
              el("div", { class: "small" }, el("a", { href: d.invitationLink, target: "_blank", rel: "noopener noreferrer" },
                t("gdapOpenLink")), " · ", d.requestedBy)];
    }
    if (item.kind === "expiring") {
      return [el("div", { class: "small" }, t("relEnds") + ": " + D.fmtDateTime(d.endsAt)),
              el("div", { class: "small muted" }, roleNames(d.roles)),
              d.canAutoExtend ? null : el("div", { class: "small muted" }, t("gdapCannotExtendGa"))];
    }
    if (item.kind === "ga") {
      return [el("div", { class: "small" }, t("gaKeepLabel") + ": " + roleNames(keptRoles(d))),
              d.removal && d.removal.state === "requested"
                ? el("span", { class: "badge gdap-result result-requested", "data-result": "requested" }, t("gdapGaRequested")) : null,
              d.removal && d.removal.state === "failed" && d.removal.reason
                ? el("div", { class: "small error" }, D.reasonLabel(d.removal.reason)) : null];
    }
    return [el("div", { class: "small" }, t("gdapGroup") + ": " + (d.groupName || d.groupId)),
            el("div", { class: "small muted" }, roleNames(d.roles)),
            el("div", { class: "small muted" }, t("gdapEvidenceDays", { n: fmt(d.evidenceDays), from: D.fmtDate(d.evidenceFrom) }))];
  }

  function keptRoles(d) {
    return d.rolesAfterRemoval && d.rolesAfterRemoval.length ? d.rolesAfterRemoval
      : d.roles.filter((r) => r !== GLOBAL_ADMINISTRATOR);
  }

  function resultCell(item) {
    const cell = el("td", { class: "gdap-result-cell" });
    const result = g.results.get(item.key);
    if (result) {
      cell.appendChild(el("span", { class: "badge gdap-result outcome-" + result.outcome, "data-result": result.result,
                                    "data-outcome": result.outcome }, t("gdapOutcome_" + result.outcome)));
      if (result.outcome === "done") cell.appendChild(el("div", { class: "small muted" }, t("gdapResult_" + result.result)));
      if (result.reason) cell.appendChild(el("div", { class: "small muted" }, D.reasonLabel(result.reason)));
    }
    return cell;
  }

  function row(item) {
    const cell = el("td", { class: "col-select" });
    if (selectable(item)) {
      const box = el("input", { type: "checkbox", class: "gdap-select", "data-key": item.key,
                                "aria-label": t("selectRow", { name: (item.customerName || item.tenantId) + " · " + item.relationshipName }) });
      box.checked = g.selected.has(item.key);
      box.addEventListener("change", () => {
        if (box.checked) g.selected.set(item.key, item);
        else g.selected.delete(item.key);
        render();
        const again = document.querySelector('.gdap-select[data-key="' + CSS.escape(item.key) + '"]');
        if (again) again.focus();
      });
      cell.appendChild(box);
    }
    return el("tr", { "data-key": item.key, "data-kind": item.kind, "data-relationship": item.relationshipId,
                      "data-window": item.kind === "expiring" ? item.data.window : null },
      cell,
      el("td", { class: "customer" }, customerLink(item.tenantId, item.customerName)),
      el("td", null, el("div", null, item.relationshipName),
         el("div", { class: "small muted mono", title: item.relationshipId }, shortId(item.relationshipId))),
      el("td", null, kindBadge(item)),
      el("td", { class: "gdap-details" }, details(item)),
      resultCell(item));
  }

  function shortId(id) {
    return id && id.length > 13 ? id.slice(0, 13) + "…" : id;
  }

  function setFilter(kind, within) {
    const same = g.filter.kind === kind && (kind !== "expiring" || g.filter.within === within);
    g.filter = same ? { kind: null, within: 30 } : { kind: kind, within: within || 30 };
    g.page = 1;
    render();
  }

  function selectPage(checked) {
    const filtered = g.items.filter(matchesFilter);
    const first = (g.page - 1) * g.pageSize;
    for (const item of filtered.slice(first, first + g.pageSize).filter(selectable)) {
      if (checked) g.selected.set(item.key, item);
      else g.selected.delete(item.key);
    }
    render();
  }

  // --- one confirmation per bulk action: exactly what will happen per relationship, then the results --
  function plan(item) {
    const d = item.data;
    if (item.kind === "expiring") {
      return t("gdapPlanExtend", { ends: D.fmtDate(d.endsAt), next: D.fmtDate(d.endsAtIfExtended) });
    }
    if (item.kind === "ga") return t("gdapPlanGa", { roles: roleNames(keptRoles(d)) || "–" });
    return t("gdapPlanUnused", { group: d.groupName || d.groupId, roles: roleNames(d.roles) });
  }

  function openBulk(kind, returnFocus) {
    const items = selectedOf(kind);
    if (!items.length) return;
    g.bulk = { kind: kind, items: items };
    g.returnFocus = returnFocus;
    $("gdap-bulk-title").textContent = t("gdapBulkTitle_" + kind);
    $("gdap-bulk-intro").textContent = t("gdapBulkIntro_" + kind, { n: fmt(items.length) });
    const list = clear($("gdap-bulk-list"));
    for (const item of items) {
      list.appendChild(el("li", { "data-key": item.key },
        el("strong", null, (item.customerName || item.tenantId) + " — " + item.relationshipName),
        el("div", { class: "small" }, plan(item)),
        el("div", { class: "gdap-bulk-result" })));
    }
    const notes = clear($("gdap-bulk-notes"));
    for (const key of BULK_NOTES[kind]) notes.appendChild(el("li", null, t(key)));
    openDialog(kind === "expiring" ? "primary" : "danger", t("gdapBulkConfirm_" + kind, { n: fmt(items.length) }));
  }

  const BULK_CHUNK = 100;

  const BULK_NOTES = {
    expiring: ["gdapNoteExtend1", "gdapNoteExtend2"],
    ga: ["gaCons1", "gaCons2", "gaCons3"],
    unused: ["gdapNoteUnused1", "gdapNoteUnused2"],
    reestablish: ["gdapNoteReestablish1"],
  };

  function openDialog(style, confirmText) {
    $("gdap-bulk-summary").textContent = "";
    $("gdap-bulk-error").hidden = true;
    const confirm = $("gdap-bulk-confirm");
    confirm.className = "button " + style;
    confirm.hidden = false;
    confirm.disabled = false;
    confirm.textContent = confirmText;
    g.confirmText = confirmText;
    $("gdap-bulk-cancel").textContent = t("cancel");
    $("gdap-bulk-dialog").showModal();
    $("gdap-bulk-cancel").focus();
  }

  function outcomeOf(kind, result) {
    if (result === "failed") return "failed";
    if (result === "refused" || result === "skipped") return "refused";
    return "done";  // extended, unchanged, requested, completed
  }

  async function submitBulk(event) {
    event.preventDefault();
    const bulk = g.bulk;
    if (!bulk) return;
    if (bulk.kind === "reestablish") return submitReestablish();
    const confirm = $("gdap-bulk-confirm");
    confirm.disabled = true;
    confirm.textContent = t("gdapWorking");
    // The API takes at most 100 items a call: larger selections go in consecutive calls.
    const body = (items) => bulk.kind === "unused"
      ? { assignments: items.map((x) => ({ relationshipId: x.relationshipId, assignmentId: x.data.assignmentId })),
          days: g.leastPrivilege ? g.leastPrivilege.windowDays : 90 }
      : { relationshipIds: items.map((x) => x.relationshipId) };
    const path = { expiring: "/api/gdap/extend", ga: "/api/gdap/remove-global-admin/bulk",
                   unused: "/api/gdap/remove-unused-assignments" }[bulk.kind];
    const answer = { results: [] };
    try {
      for (let i = 0; i < bulk.items.length; i += BULK_CHUNK) {
        const part = (await api(path, { body: body(bulk.items.slice(i, i + BULK_CHUNK)) })).body;
        answer.results.push(...part.results);
      }
    } catch (failure) {
      $("gdap-bulk-error").textContent = t("error", { message: failure.message });
      $("gdap-bulk-error").hidden = false;
      confirm.disabled = false;
      confirm.textContent = g.confirmText;
      if (!answer.results.length) return;
    }
    const counts = { done: 0, refused: 0, failed: 0 };
    for (const item of bulk.items) {
      const r = answer.results.find((x) => x.relationshipId === item.relationshipId
        && (bulk.kind !== "unused" || x.assignmentId === item.data.assignmentId));
      if (!r) continue;
      const result = { result: r.result, reason: r.reason || "", outcome: outcomeOf(bulk.kind, r.result) };
      counts[result.outcome] += 1;
      g.results.set(item.key, result);
      g.selected.delete(item.key);
      if (bulk.kind === "ga" && r.result === "requested") item.data.removal = { state: "requested", operationId: r.operationId };
      const li = document.querySelector('#gdap-bulk-list li[data-key="' + CSS.escape(item.key) + '"] .gdap-bulk-result');
      if (li) {
        append(clear(li), [el("span", { class: "badge gdap-result outcome-" + result.outcome, "data-result": r.result,
                                         "data-outcome": result.outcome }, t("gdapOutcome_" + result.outcome)),
                           result.outcome === "done" ? " " + t("gdapResult_" + r.result) : "",
                           result.reason ? " — " + D.reasonLabel(result.reason) : ""]);
      }
    }
    const text = t("gdapBulkDone", { done: fmt(counts.done), refused: fmt(counts.refused), failed: fmt(counts.failed) });
    $("gdap-bulk-summary").textContent = text;
    confirm.hidden = true;
    $("gdap-bulk-cancel").textContent = t("gdapClose");
    $("gdap-bulk-cancel").focus();
    g.bulk = null;
    notice(text, counts.failed || counts.refused ? "warning" : "success");
    render();
    loadTiles();
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
      if (!$("gdap").hidden) loadAll();
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

  // Re-establish: first what it will request (the roles held before against the template's, and
  // each role it drops with why), then the request.
  async function reestablish() {
    const tenant = g.reestablishTenant;
    if (!tenant) return;
    const button = $("customer-reestablish");
    button.disabled = true;
    try {
      const preview = (await api("/api/gdap/reestablish/preview?customer=" + encodeURIComponent(tenant))).body;
      await ensureTemplates();
      g.bulk = { kind: "reestablish", tenant: tenant };
      g.returnFocus = button;
      $("gdap-bulk-title").textContent = t("gdapReestablishTitle");
      $("gdap-bulk-intro").textContent = t("gdapReestablishIntro", {
        customer: preview.customerName || tenant, template: templateLabel(preview.template) });
      const list = clear($("gdap-bulk-list"));
      const line = (label, roles, attrs) => el("li", attrs || null, el("strong", null, label),
        el("div", { class: "small" }, roles.length ? roleNames(roles) : "–"));
      if (preview.previous) {
        list.appendChild(line(t("gdapReestablishHeld", { name: preview.previous.displayName || preview.previous.type }),
          preview.previous.roles, { "data-part": "held" }));
      }
      list.appendChild(line(t("gdapReestablishRequested", { template: templateLabel(preview.template) }),
        preview.requestedRoles, { "data-part": "requested" }));
      if (preview.keepsEveryRole) {
        list.appendChild(el("li", { "data-part": "keeps" }, el("strong", null, t("gdapReestablishKeepsAll"))));
      } else {
        list.appendChild(el("li", { "data-part": "dropped", class: "gdap-dropped" },
          el("strong", null, t("gdapReestablishDropped")),
          el("ul", null, preview.droppedRoles.map((d) => el("li", { "data-role": d.role },
            D.roleLabel(d.role) + " — " + t("gdapDropReason_" + d.reason, { template: templateLabel(preview.template) }))))));
      }
      if (preview.basis === "pendingRequest") {
        list.appendChild(el("li", null, el("strong", null, t("gdapBasis_pendingRequest"))));
      }
      const notes = clear($("gdap-bulk-notes"));
      for (const key of BULK_NOTES.reestablish) notes.appendChild(el("li", null, t(key)));
      openDialog("primary", t("gdapReestablishConfirm"));
    } catch (failure) {
      showFailure(failure);
    } finally {
      button.disabled = false;
    }
  }

  async function submitReestablish() {
    const tenant = g.bulk.tenant;
    const confirm = $("gdap-bulk-confirm");
    confirm.disabled = true;
    confirm.textContent = t("gdapRequesting");
    try {
      const result = await api("/api/gdap/reestablish", { body: { customer: tenant } });
      g.bulk = null;
      const focusBack = g.returnFocus;
      g.returnFocus = null;
      $("gdap-bulk-dialog").close();
      g.returnFocus = focusBack;
      $("gdap-request-dialog").showModal();
      showResult(result.body, result.status === 200 ? "gdapResultExisting" : "gdapResultReestablished");
    } catch (failure) {
      $("gdap-bulk-error").textContent = t("error", { message: failure.message });
      $("gdap-bulk-error").hidden = false;
      confirm.disabled = false;
      confirm.textContent = g.confirmText;
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
      await loadAll();
      loadTiles();
    } catch (failure) {
      showFailure(failure);
    } finally {
      button.disabled = false;
    }
  }

  function languageChanged() {
    if (!$("gdap").hidden) render();
  }

  function wire() {
    for (const tile of document.querySelectorAll("#gdap-kind-tiles [data-kind]")) {
      tile.addEventListener("click", () => setFilter(tile.dataset.kind, Number(tile.dataset.within || 30)));
    }
    $("gdap-filter-clear").addEventListener("click", () => { g.filter = { kind: null, within: 30 }; g.page = 1; render(); });
    $("gdap-search").addEventListener("input", (event) => {
      window.clearTimeout(g.searchTimer);
      const value = event.target.value;
      g.searchTimer = window.setTimeout(() => { g.query = value; g.page = 1; render(); }, 150);
    });
    $("gdap-page-size").addEventListener("change", (event) => { g.pageSize = Number(event.target.value); g.page = 1; render(); });
    $("gdap-prev").addEventListener("click", () => { g.page -= 1; render(); });
    $("gdap-next").addEventListener("click", () => { g.page += 1; render(); });
    $("gdap-select-page").addEventListener("change", (event) => selectPage(event.target.checked));
    $("gdap-selection-clear").addEventListener("click", () => { g.selected.clear(); render(); });
    for (const kind of Object.keys(BULK)) {
      $(BULK[kind].button).addEventListener("click", (event) => openBulk(kind, event.currentTarget));
    }
    $("gdap-bulk-form").addEventListener("submit", submitBulk);
    $("gdap-bulk-cancel").addEventListener("click", () => $("gdap-bulk-dialog").close());
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
    $("gdap-bulk-dialog").addEventListener("close", () => {
      g.bulk = null;
      const back = g.returnFocus;
      // The bulk button that opened it is disabled once its items are done: the table's search then.
      if (back && document.body.contains(back) && !back.disabled) back.focus();
      else if (!$("gdap").hidden) $("gdap-search").focus();
    });
    $("gdap-request-dialog").addEventListener("close", () => {
      if (g.returnFocus && document.body.contains(g.returnFocus)) g.returnFocus.focus();
    });
    $("customer-reestablish").addEventListener("click", reestablish);
  }

  wire();
  window.DAM_GDAP = { route: route, dashboardShown: loadTiles, customerRendered: customerRendered,
                      languageChanged: languageChanged };
  // app.js may have routed before this file ran: catch up once the signed-in user is known.
  if (D.state.me) {
    if (!route(window.location.hash) && !$("dashboard").hidden) loadTiles();
  }
})();
