/* Delegated Admin Monitor portal.
 *
 * Plain JavaScript, no libraries. Every piece of data from the API (customer names above all: they
 * come from customers) is put into the page with textContent or as an attribute value, never parsed
 * as HTML; the Content-Security-Policy forbids inline scripts and styles, so the charts are SVG
 * elements built here and coloured by classes from app.css.
 */
"use strict";

(function () {
  const I18N = window.DAM_I18N;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TERMINAL = new Set(["completed", "skipped", "failed"]);
  const TILE_KEYS = { "90+": "tile90", "61-90": "tile61", "30-60": "tile30", "new": "tileNew" };
  const SUMMARY_KEYS = { "90+": "inactiveOver90Days", "61-90": "inactive61To90Days", "30-60": "inactive30To60Days",
                         "new": "establishedLast7Days" };
  const DEFAULT_SORT = "-inactiveForAtLeastDays";
  const DESCENDING_FIRST = new Set(["agentsSignedInLastDay", "signInsLastDay", "daysActive", "inactiveForAtLeastDays",
                                    "lastSignInAt", "recommendation"]);

  const PAGE_SIZES = [25, 50, 100, 250];
  const BATCH = 100;               // tenant ids per removal request (the API's limit)
  // A removal in these states holds the customer: it is not offered for removal again.
  const HOLDING = new Set(["queued", "requested", "completed"]);
  const defaultQuery = () => ({ bucket: null, recommendation: null, q: "", sort: DEFAULT_SORT, page: 1, pageSize: 50,
                                type: null, excluded: null, role: null, reseller: null });

  const state = {
    lang: "en",
    me: null,
    roles: {},
    query: defaultQuery(),
    exclusions: new Map(),      // tenantId -> exclusion (GET /api/exclusions)
    removalsSince: null,        // the evaluation whose later removals were read (GET /api/removals?since=)
    refreshing: false,
    preview: null,              // the removal dialog's preview: customers from POST /api/removals/preview
    previewSeq: 0,
    excludeTarget: null,
    page: null,
    selection: new Map(),       // tenantId -> displayName, kept across pages
    trail: [],                  // the audit trail shown on #/activity, newest first
    trailSeq: 0,
    trailTimer: null,
    removals: new Map(),        // removal id -> removal (with displayName)
    pollTimer: null,
    refreshTimer: null,
    searchTimer: null,
    dialogTargets: [],
    dialogReturnFocus: null,
    loadSeq: 0,
    customerSeq: 0,
  };

  // --- small DOM helpers: text only ------------------------------------------------------------
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (/^on/i.test(name)) throw new Error("event handler attributes are not allowed");
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  // --- language ----------------------------------------------------------------------------------
  const SINGULAR = /(?<![\d.,])(1) (day|customer|relationship|role|removal|agent|sign-in|request|assignment|gap|hour)s\b/g;

  function t(key, values) {
    const table = I18N[state.lang] || I18N.en;
    let text = table[key] !== undefined ? table[key] : (I18N.en[key] !== undefined ? I18N.en[key] : key);
    for (const [name, value] of Object.entries(values || {})) {
      text = text.split("{" + name + "}").join(String(value));
    }
    // English counts of one are singular ("1 day", "1 customer"); Japanese has no plural.
    return values && state.lang !== "ja" ? text.replace(SINGULAR, "$1 $2") : text;
  }


  function chooseLanguage() {
    const saved = safeStorage("get", "dam.lang");
    if (saved === "en" || saved === "ja") return saved;
    const preferred = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"]);
    for (const lang of preferred) {
      const base = String(lang).toLowerCase().split("-")[0];
      if (base === "ja" || base === "en") return base;
    }
    return "en";
  }

  function safeStorage(op, key, value) {
    try {
      if (op === "get") return window.localStorage.getItem(key);
      window.localStorage.setItem(key, value);
    } catch (e) { /* storage may be disabled */ }
    return null;
  }

  function applyStaticText() {
    document.documentElement.lang = state.lang;
    document.title = t("appName");
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
    }
    for (const node of document.querySelectorAll("[data-i18n-aria-label]")) {
      node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
    }
    for (const th of document.querySelectorAll("#customers th[data-sort]")) {
      const button = th.querySelector("button");
      button.setAttribute("aria-label", t("sortBy", { name: button.textContent }));
    }
    $("language").value = state.lang;
  }

  const numberFormat = () => new Intl.NumberFormat(state.lang === "ja" ? "ja-JP" : "en-US");
  const fmtNumber = (n) => numberFormat().format(n);
  const fmtPercent = (n, total) => new Intl.NumberFormat(state.lang === "ja" ? "ja-JP" : "en-US",
    { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(total ? n / total : 0);

  // Times are UTC, except a Japanese customer's (billing-profile culture ja-*, the one that decides the
  // language of its mail): those are Japan's time (Asia/Tokyo), and the zone is always named.
  const JAPAN = "Asia/Tokyo";
  const zoneOf = (culture) => (/^ja(-|$)/i.test(String(culture || "")) ? JAPAN : "UTC");

  function fmtDateTime(iso, zone) {
    if (!iso) return "";
    const date = new Date(iso);
    if (isNaN(date.getTime())) return "";
    const timeZone = zone === JAPAN ? JAPAN : "UTC";
    return new Intl.DateTimeFormat(state.lang === "ja" ? "ja-JP" : "en-GB",
      { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZone })
      .format(date) + " " + t(timeZone === JAPAN ? "zoneJapan" : "zoneUtc");
  }

  // A day: "2026-11-20" is that day; a moment is the day it falls on in ``zone`` (UTC unless named).
  function fmtDate(iso, zone) {
    if (!iso) return "";
    const date = new Date(iso.length === 10 ? iso + "T00:00:00Z" : iso);
    if (isNaN(date.getTime())) return "";
    const timeZone = iso.length !== 10 && zone === JAPAN ? JAPAN : "UTC";
    return new Intl.DateTimeFormat(state.lang === "ja" ? "ja-JP" : "en-GB",
      { year: "numeric", month: "short", day: "numeric", timeZone }).format(date);
  }

  // A day under a chart's axis: month and day ("24 Aug", "8月24日"); the year is in each bar's title.
  function fmtAxisDate(iso) {
    const date = new Date(String(iso).length === 10 ? iso + "T00:00:00Z" : iso);
    if (isNaN(date.getTime())) return "";
    return new Intl.DateTimeFormat(state.lang === "ja" ? "ja-JP" : "en-GB",
      { month: "short", day: "numeric", timeZone: "UTC" }).format(date);
  }

  // Between the items of a list: Japanese writes 、 where English writes a comma.
  const listSeparator = () => (state.lang === "ja" ? "、" : ", ");

  function roleLabel(id, fallback) {
    const entry = state.roles[id];
    if (entry) return entry[state.lang] || entry.en;
    return fallback || id;
  }

  // --- API -------------------------------------------------------------------------------------------
  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options) {
    const init = { credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (options && options.body !== undefined) {
      init.method = options.method || "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiFailure(0, "network", e.message || "network error");
    }
    let body = null;
    const type = response.headers.get("content-type") || "";
    if (type.indexOf("application/json") === 0) {
      try { body = await response.json(); } catch (e) { body = null; }
    }
    if (!response.ok) {
      const error = (body && body.error) || {};
      throw new ApiFailure(response.status, error.code || "httpError", error.message || response.statusText);
    }
    return { status: response.status, body: body };
  }

  function notice(text, kind) {
    const node = $("notice");
    clear(node);
    node.className = "notice" + (kind ? " " + kind : "");
    if (!text) { node.hidden = true; return; }
    append(node, [text]);
    node.hidden = false;
  }

  function showFailure(failure) {
    if (failure.status === 401) {
      const node = $("notice");
      clear(node);
      node.className = "notice warning";
      append(node, [t("unauthenticated"), " ",
        el("a", { href: "/.auth/login/aad?post_login_redirect_uri=/" }, t("signIn"))]);
      node.hidden = false;
    } else if (failure.status === 403) {
      notice(t("forbidden"), "warning");
    } else if (failure.code === "noEvaluation") {
      notice(t("noEvaluation"), "info");
    } else {
      notice(t("error", { message: failure.message }), "error");
    }
  }

  // --- dashboard ---------------------------------------------------------------------------------
  function queryString(extra) {
    const q = state.query;
    const params = new URLSearchParams();
    if (q.bucket) params.set("bucket", q.bucket);
    if (q.recommendation) params.set("recommendation", q.recommendation);
    if (q.q) params.set("q", q.q);
    if (q.sort !== DEFAULT_SORT) params.set("sort", q.sort);
    if (q.type) params.set("type", q.type);
    if (q.excluded) params.set("excluded", q.excluded);
    if (q.role) params.set("role", q.role);
    if (q.reseller) params.set("reseller", q.reseller);
    for (const [key, value] of Object.entries(extra || {})) params.set(key, value);
    return params.toString();
  }

  // The dashboard's filter, search, sort and page live in the URL (#/?bucket=90%2B&sort=name&page=2), so
  // that a reload, a bookmark or a shared link shows the same rows.
  function queryFromHash(hash) {
    const at = hash.indexOf("?");
    const params = new URLSearchParams(at >= 0 ? hash.slice(at + 1) : "");
    const query = defaultQuery();
    for (const key of ["bucket", "recommendation", "type", "excluded", "role", "reseller"]) {
      if (params.get(key)) query[key] = params.get(key);
    }
    if (params.get("q")) query.q = params.get("q");
    if (params.get("sort")) query.sort = params.get("sort");
    const page = parseInt(params.get("page") || "", 10);
    if (page >= 1) query.page = page;
    const size = parseInt(params.get("pageSize") || "", 10);
    if (PAGE_SIZES.includes(size)) query.pageSize = size;
    return query;
  }

  function dashboardHash() {
    const extra = {};
    if (state.query.page > 1) extra.page = state.query.page;
    if (state.query.pageSize !== 50) extra.pageSize = state.query.pageSize;
    const qs = queryString(extra);
    return "#/" + (qs ? "?" + qs : "");
  }

  function writeHash() {
    const wanted = dashboardHash();
    const now = window.location.hash || "#/";
    if (now !== wanted) window.history.replaceState(null, "", wanted);
  }

  async function loadCustomers() {
    const seq = ++state.loadSeq;
    const rows = $("rows");
    $("customers").setAttribute("aria-busy", "true");
    try {
      const result = await api("/api/customers?" + queryString({ page: state.query.page, pageSize: state.query.pageSize }));
      if (seq !== state.loadSeq) return;   // a newer request superseded this one
      state.page = result.body;
      notice(null);
      renderDashboard();
      if (state.removalsSince !== state.page.evaluatedAt) loadRemovals();
      if (window.DAM_EVIDENCE) window.DAM_EVIDENCE.evaluated(state.page.evaluatedAt);  // evidence.js
    } catch (failure) {
      if (seq !== state.loadSeq) return;
      state.page = null;
      clear(rows);
      renderSummary(null);
      showFailure(failure);
    } finally {
      if (seq === state.loadSeq) $("customers").setAttribute("aria-busy", "false");
    }
  }

  function renderDashboard() {
    renderFilters();
    renderSummary(state.page);
    renderRows();
    renderPager();
    renderSortHeaders();
    renderSelection();
    $("csv").setAttribute("href", "/api/customers?" + queryString({ format: "csv" }));
  }

  function renderSummary(page) {
    // With a reseller chosen, the tiles count that reseller's customers (resellerSummary).
    const summary = page ? page.resellerSummary || page.summary : null;
    const total = summary ? summary.customersUnderMonitoring : 0;
    $("headline").textContent = summary ? t("headline", { n: fmtNumber(total) }) : "";
    const coverage = $("coverage");
    if (page) {
      coverage.textContent = page.coverage && page.coverage.from
        ? t("coverage", { from: fmtDate(page.coverage.from), asOf: fmtDateTime(page.asOf) })
        : t("noCoverage", { asOf: fmtDateTime(page.asOf) });
    } else {
      coverage.textContent = "";
    }
    const policy = page && page.policy ? page.policy : null;
    $("policy-line").textContent = policy ? policyLine(policy) : "";
    for (const tile of document.querySelectorAll("[data-static][data-summary]")) {
      const count = summary && summary[tile.dataset.summary] !== undefined ? summary[tile.dataset.summary] : null;
      tile.querySelector("[data-count]").textContent = count === null ? "–" : fmtNumber(count);
    }
    for (const tile of document.querySelectorAll(".tile:not([data-static])")) {
      const bucket = tile.dataset.bucket;
      const recommended = tile.dataset.recommendation === "remove";
      const key = recommended ? "recommendedForRemoval" : SUMMARY_KEYS[bucket];
      const count = summary && summary[key] !== undefined ? summary[key] : null;
      tile.querySelector("[data-count]").textContent = count === null ? "–" : fmtNumber(count);
      tile.querySelector("[data-share]").textContent = count === null ? "" : t("tileShare", { pct: fmtPercent(count, total) });
      const pressed = recommended ? state.query.recommendation === "remove" : state.query.bucket === bucket;
      tile.setAttribute("aria-pressed", pressed ? "true" : "false");
      tile.disabled = !summary;
      const hint = tile.querySelector("[data-hint]");
      if (hint) hint.textContent = policy ? tileHint(policy, recommended ? "recommended" : bucket) : "";
    }
    const chip = $("filter-chip");
    const names = [];
    if (state.query.bucket) names.push(t(TILE_KEYS[state.query.bucket]));
    if (state.query.recommendation === "remove") names.push(t("tileRecommended"));
    if (state.query.recommendation === "none") names.push(t("filterNotRecommended"));
    if (state.query.type) names.push(t("chipType_" + state.query.type));
    if (state.query.excluded) names.push(t(state.query.excluded === "true" ? "excluded" : "filterNotExcluded"));
    if (state.query.role) names.push(roleLabel(state.query.role));
    if (state.query.reseller) names.push(resellerName(state.query.reseller));
    if (names.length) {
      $("filter-chip-text").textContent = t("filterOn", { name: names.join(" · ") });
      chip.hidden = false;
    } else {
      chip.hidden = true;
    }
  }

  // The policy in view: mode and thresholds as configured (the evaluation's head), not fixed text.
  function policyLine(policy) {
    const mode = policy.mode === "enforce" ? t("policyEnforce", { remove: policy.removeAfterDays })
      : t("policyReport");
    const parts = [mode, t("policyRecommend", { n: policy.recommendAfterDays }),
      t("policyRemove", { n: policy.removeAfterDays })];
    return t("policyTitle") + " " + parts.join(" · ");
  }

  const BUCKET_RANGES = { "90+": [91, Infinity], "61-90": [61, 90], "30-60": [30, 60] };

  function tileHint(policy, which) {
    if (which === "recommended") {
      return policy.mode === "enforce" ? t("hintRecommendedEnforce", { n: policy.removeAfterDays })
        : t("hintRecommendedReport");
    }
    const range = BUCKET_RANGES[which];
    if (!range) return t("tileHintNew");
    const [low, high] = range;
    if (policy.mode === "enforce" && low > policy.removeAfterDays) {
      return t("hintRemoved", { n: policy.removeAfterDays });
    }
    if (low > policy.recommendAfterDays) return t("hintRecommended", { n: policy.recommendAfterDays });
    if (high > policy.recommendAfterDays) return t("hintRecommendedAfter", { n: policy.recommendAfterDays });
    return t("hintIdle", { n: low });
  }

  // When a customer becomes a removal candidate if nobody signs in: the day inactiveForAtLeastDays
  // exceeds removeAfterDays (shared.domain.rules.days_until_candidate).
  function removalOutlook(row, policy, asOf) {
    if (!policy) return "";
    if (row.excluded) return t("outlookExcluded");
    const days = Math.max(0, policy.removeAfterDays + 1 - row.inactiveForAtLeastDays);
    const date = fmtDate(new Date(Date.parse(asOf) + days * 86400000).toISOString());
    return policy.mode === "enforce" ? t("outlookEnforce", { date }) : t("outlookReport", { date });
  }

  function relationshipCell(row) {
    const cell = el("td", { class: "relationships" });
    const types = el("div", { class: "types" });
    for (const type of row.relationshipTypes) {
      types.appendChild(el("span", { class: "badge type-" + type.toLowerCase() }, type));
    }
    cell.appendChild(types);
    const names = row.roles.map((id) => roleLabel(id)).sort((a, b) => a.localeCompare(b));
    const shown = names.slice(0, 3);
    const roles = el("div", { class: "roles", title: names.join(listSeparator()) }, shown.join(listSeparator()));
    if (names.length > shown.length) roles.appendChild(el("span", { class: "more" }, " " + t("moreRoles", { n: names.length - shown.length })));
    cell.appendChild(roles);
    return cell;
  }

  // Days inactive as the store proves them (inactiveForAtLeastDays, counted from the latest of the last
  // sign-in, the establishment and the start of the captured sign-in log), for every customer: a bare
  // number when the last sign-in sets it, else what it is counted from; "N+" when the log's start does
  // (the customer may have been idle longer than the log reaches back).
  function inactivity(row, coverage) {
    const n = fmtNumber(row.inactiveForAtLeastDays);
    const from = coverage && coverage.from ? coverage.from : null;
    const time = (v) => (v ? Date.parse(v) : -Infinity);
    const last = time(row.lastSignInAt);
    if (row.lastSignInAt && last >= time(row.establishedAt) && last >= time(from)) return { text: n, hint: "" };
    if (row.establishedAt && time(row.establishedAt) >= time(from)) {
      return { text: n, hint: t("inactiveSinceEstablished", { date: fmtDate(row.establishedAt) }) };
    }
    return { text: n + "+", hint: t("inactiveSinceCapture", { date: fmtDate(from) }) };
  }

  function renderRows() {
    const body = clear($("rows"));
    const page = state.page;
    if (!page) return;
    if (!page.customers.length) {
      body.appendChild(el("tr", { class: "empty" }, el("td", { colspan: 9 }, t("noResults"))));
      return;
    }
    const canRemove = state.me && state.me.canRemove;
    for (const row of page.customers) {
      const removal = holdingRemoval(row.tenantId);
      if (removal) state.selection.delete(row.tenantId);
      const selected = state.selection.has(row.tenantId);
      let select;
      if (removal) {
        // Removal asked for (or done): not offered again; the state is shown where the checkbox was.
        select = el("span", { class: "badge status-" + removal.status, "data-removal-status": removal.status,
                              title: t("removalOf", { status: t("status_" + removal.status) }) },
                    t("status_" + removal.status));
      } else {
        const checkbox = el("input", { type: "checkbox", class: "row-select", "data-tenant": row.tenantId,
                                       "aria-label": t("selectRow", { name: row.displayName || row.tenantId }) });
        checkbox.checked = selected;
        checkbox.disabled = !canRemove;
        checkbox.addEventListener("change", () => {
          if (checkbox.checked) state.selection.set(row.tenantId, row.displayName || row.tenantId);
          else state.selection.delete(row.tenantId);
          tr.classList.toggle("selected", checkbox.checked);
          renderSelection();
        });
        select = checkbox;
      }
      const name = el("td", { class: "customer" },
        el("a", { href: "#/customers/" + encodeURIComponent(row.tenantId), class: "name" }, row.displayName || row.tenantId),
        el("div", { class: "tenant mono" }, row.tenantId));
      const proven = inactivity(row, page.coverage);
      const inactive = el("td", { class: "num inactive" }, el("span", { class: "days" }, proven.text));
      if (proven.hint) inactive.appendChild(el("div", { class: "sub" }, proven.hint));
      const recommendation = el("td", { class: "recommendation" });
      if (row.recommendation === "remove") {
        recommendation.appendChild(el("span", { class: "badge rec-remove" }, t("recRemove")));
      } else {
        recommendation.appendChild(el("span", { class: "muted" }, t("recNone")));
      }
      if (isExcluded(row)) recommendation.appendChild(el("span", { class: "badge excluded" }, t("excluded")));
      const tr = el("tr", { class: [selected ? "selected" : "", removal ? "removing" : ""].join(" ").trim() || null,
                            "data-tenant": row.tenantId, "data-bucket": row.bucket },
        el("td", { class: "col-select" }, select),
        name,
        relationshipCell(row),
        el("td", { class: "num" }, fmtNumber(row.agentsSignedInLastDay)),
        el("td", { class: "num" }, fmtNumber(row.signInsLastDay)),
        el("td", { class: "num" }, fmtNumber(row.daysActive)),
        inactive,
        el("td", { class: "nowrap" }, fmtDateTime(row.lastSignInAt, zoneOf(row.culture))),
        recommendation);
      body.appendChild(tr);
    }
  }

  // A customer is excluded by the evaluation's row, or by an exclusion made since (the next evaluation
  // counts it; the portal shows it at once).
  function isExcluded(row) {
    return !!row.excluded || state.exclusions.has(row.tenantId);
  }

  // The newest removal of the customer that holds it: under way, or completed after the evaluation the
  // table shows (a completed one before it is already in the figures).
  function holdingRemoval(tenantId) {
    let found = null;
    for (const removal of state.removals.values()) {
      if (removal.tenantId !== tenantId || !HOLDING.has(removal.status)) continue;
      if (removal.status === "completed" && state.page && removal.updatedAt && removal.updatedAt < state.page.evaluatedAt) continue;
      if (!found || String(removal.requestedAt) > String(found.requestedAt)) found = removal;
    }
    return found;
  }

  function renderFilters() {
    const q = state.query;
    $("filter-type").value = q.type || "";
    $("filter-recommendation").value = q.recommendation || "";
    $("filter-excluded").value = q.excluded || "";
    const select = clear($("filter-role"));
    select.appendChild(el("option", { value: "" }, t("filterAnyRole")));
    const roles = (state.page && state.page.facets && state.page.facets.roles) || [];
    const known = new Set(roles.map((r) => r.id));
    if (q.role && !known.has(q.role)) roles.push({ id: q.role, name: q.role, customers: 0 });
    for (const role of roles) {
      select.appendChild(el("option", { value: role.id },
        t("filterRoleOption", { name: roleLabel(role.id, role.name), n: fmtNumber(role.customers) })));
    }
    select.value = q.role || "";
    // Indirect resellers, where Partner Center names any (an indirect provider's estate).
    const resellers = (state.page && state.page.resellers) || [];
    const resellerSelect = clear($("filter-reseller"));
    resellerSelect.appendChild(el("option", { value: "" }, t("filterAnyReseller")));
    const choices = resellers.slice();
    if (q.reseller && !choices.some((r) => r.id === q.reseller)) choices.push({ id: q.reseller, name: q.reseller, customers: 0 });
    for (const r of choices) {
      resellerSelect.appendChild(el("option", { value: r.id },
        t("filterRoleOption", { name: r.name || r.id, n: fmtNumber(r.customers) })));
    }
    resellerSelect.value = q.reseller || "";
    $("filter-reseller-wrap").hidden = !choices.length;
    const active = ["type", "excluded", "role", "reseller"].filter((k) => q[k]).length + (q.recommendation ? 1 : 0);
    $("filters-count").textContent = active ? fmtNumber(active) : "";
    $("filters-count").hidden = !active;
    if ($("search").value.trim() !== q.q) $("search").value = q.q;
    $("page-size").value = String(q.pageSize);
  }

  function resellerName(id) {
    const found = ((state.page && state.page.resellers) || []).find((r) => r.id === id);
    return found && found.name ? found.name : id;
  }

  function renderPager() {
    const page = state.page;
    if (!page) return;
    const from = page.total ? (page.page - 1) * page.pageSize + 1 : 0;
    const to = Math.min(page.total, page.page * page.pageSize);
    // The same pager above and below the table: a long page need not be scrolled through to turn it.
    for (const at of ["", "-top"]) {
      $("range" + at).textContent = t("range", { from: fmtNumber(from), to: fmtNumber(to), total: fmtNumber(page.total) });
      $("page-of" + at).textContent = t("pageOf", { page: fmtNumber(page.page), pages: fmtNumber(page.pages) });
      $("prev" + at).disabled = page.page <= 1;
      $("next" + at).disabled = page.page >= page.pages;
    }
  }

  function renderSortHeaders() {
    const field = state.query.sort.replace(/^-/, "");
    const descending = state.query.sort.charAt(0) === "-";
    for (const th of document.querySelectorAll("#customers th[data-sort]")) {
      if (th.dataset.sort === field) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
  }

  function renderSelection() {
    const count = state.selection.size;
    const canRemove = state.me && state.me.canRemove;
    $("selection-count").textContent = count ? t("selected", { n: fmtNumber(count) }) : "";
    $("selection-clear").hidden = !count;
    $("remove").disabled = !count || !canRemove;
    $("remove").hidden = !canRemove;
    const boxes = Array.from(document.querySelectorAll("#rows .row-select"));
    const all = $("select-page");
    all.disabled = !canRemove || !boxes.length;
    const checked = boxes.filter((b) => b.checked).length;
    all.checked = boxes.length > 0 && checked === boxes.length;
    all.indeterminate = checked > 0 && checked < boxes.length;
  }

  function setQuery(changes) {
    Object.assign(state.query, changes);
    if (!("page" in changes)) state.query.page = 1;
    writeHash();
    loadCustomers();
  }

  // --- trend chart -------------------------------------------------------------------------------
  async function loadTrend() {
    try {
      const result = await api("/api/trends?days=90");
      renderTrend(result.body.points);
    } catch (failure) {
      renderTrend([]);
    }
  }

  function renderTrend(points) {
    const host = clear($("trend"));
    const legend = clear($("trend-legend"));
    const series = [
      { key: "inactiveOver90Days", label: "series90", cls: "s-90" },
      { key: "inactive61To90Days", label: "series61", cls: "s-61" },
      { key: "inactive30To60Days", label: "series30", cls: "s-30" },
    ];
    for (const s of series) {
      legend.appendChild(el("li", null, el("span", { class: "swatch " + s.cls, "aria-hidden": "true" }), t(s.label)));
    }
    if (!points || points.length < 2) {
      host.appendChild(el("p", { class: "muted" }, t("trendEmpty")));
      if (!points || !points.length) return;
    }
    state.trendPoints = points;
    const width = chartWidth(host), height = 220, left = 44, right = 16, top = 12, bottom = 28;
    const axis = countAxis(Math.max(...points.map((p) => Math.max(p.inactiveOver90Days, p.inactive61To90Days, p.inactive30To60Days))));
    const niceMax = axis.top;
    const x = (i) => left + (points.length === 1 ? (width - left - right) / 2 : i * (width - left - right) / (points.length - 1));
    const y = (v) => top + (height - top - bottom) * (1 - v / niceMax);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "trend-chart", role: "img",
                               "aria-label": t("trendLabel") });
    chart.appendChild(svg("title", null, t("trendLabel")));
    for (const value of axis.ticks) {
      chart.appendChild(svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "grid-line" }));
      chart.appendChild(svg("text", { x: left - 6, y: y(value) + 4, class: "axis-label", "text-anchor": "end" }, fmtNumber(value)));
    }
    const step = labelStep(points.length, width - left - right);
    points.forEach((p, i) => {
      if (i % step === 0 || i === points.length - 1) {
        const anchor = points.length === 1 ? "middle" : i === 0 ? "start" : i === points.length - 1 ? "end" : "middle";
        chart.appendChild(svg("text", { x: x(i), y: height - 8, class: "axis-label", "text-anchor": anchor }, fmtAxisDate(p.day)));
      }
    });
    for (const s of series) {
      const path = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p[s.key]).toFixed(1)}`).join(" ");
      chart.appendChild(svg("path", { d: path, class: "series " + s.cls }));
      points.forEach((p, i) => {
        chart.appendChild(svg("circle", { cx: x(i), cy: y(p[s.key]), r: 3, class: "dot " + s.cls },
          svg("title", null, `${fmtDate(p.day)} · ${t(s.label)}: ${fmtNumber(p[s.key])}`)));
      });
    }
    host.appendChild(chart);
  }

  // The chart is drawn at the width it is shown, so its text is never stretched.
  function chartWidth(host) {
    return Math.max(280, Math.round(host.getBoundingClientRect().width) || 900);
  }

  // Every how many points a date is written under the axis: one date per 90 px at most (a date is
  // about 70 px wide at the axis' size), so that dates never overlap, on a phone neither.
  function labelStep(count, plotWidth) {
    const fit = Math.max(2, Math.floor(plotWidth / 90));
    return Math.max(1, Math.ceil(count / fit));
  }

  // An integer axis for counts: 0, step, 2 step, ... up to the first multiple of step at or above max.
  function countAxis(max) {
    const rough = Math.max(1, max) / 4;
    const magnitude = Math.pow(10, Math.floor(Math.log10(rough)));
    let step = magnitude;
    for (const m of [1, 2, 5, 10]) {
      if (rough <= m * magnitude) { step = m * magnitude; break; }
    }
    step = Math.max(1, Math.round(step));
    const top = Math.max(step, Math.ceil(Math.max(1, max) / step) * step);
    const ticks = [];
    for (let v = 0; v <= top; v += step) ticks.push(v);
    return { top, ticks };
  }

  // --- removal dialog and status ----------------------------------------------------------------
  // The dialog first asks the API what each removal would do (POST /api/removals/preview): per customer
  // the relationships and roles it ends, who is e-mailed, and warnings (active, not recommended,
  // excluded) that must be acknowledged a second time. Selections over BATCH go in several requests.
  function chunks(items, size) {
    const out = [];
    for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
    return out;
  }

  async function openRemoveDialog(targets, returnFocus) {
    state.dialogTargets = targets;
    state.dialogReturnFocus = returnFocus;
    state.preview = null;
    const seq = ++state.previewSeq;
    $("remove-intro").textContent = t("dialogIntro", { n: fmtNumber(targets.length) });
    clear($("remove-list"));
    clear($("remove-refused-list"));
    $("remove-refused").hidden = true;
    $("remove-warned").hidden = true;
    $("remove-ack-warned").checked = false;
    $("remove-loading").hidden = false;
    $("remove-progress").hidden = true;
    $("remove-ack").checked = false;
    $("remove-reason").value = "";
    $("remove-confirm").textContent = t("confirmRemove");
    $("remove-error").hidden = true;
    updateConfirm();
    $("remove-dialog").showModal();
    $("remove-ack").focus();
    try {
      const customers = [];
      let notify = true;
      let scope = [];
      for (const batch of chunks(targets.map((x) => x.tenantId), BATCH)) {
        const result = await api("/api/removals/preview", { body: { tenantIds: batch } });
        customers.push(...result.body.customers);
        notify = result.body.notifyCustomers;
        scope = result.body.scope;
      }
      if (seq !== state.previewSeq) return;
      const names = new Map(targets.map((x) => [x.tenantId, x.displayName]));
      for (const c of customers) c.displayName = c.displayName || names.get(c.tenantId) || c.tenantId;
      state.preview = { customers, notify, scope };
      renderPreview();
    } catch (failure) {
      if (seq !== state.previewSeq) return;
      $("remove-error").textContent = failure.status === 403 ? t("forbidden") : t("error", { message: failure.message });
      $("remove-error").hidden = false;
    } finally {
      if (seq === state.previewSeq) $("remove-loading").hidden = true;
      updateConfirm();
    }
  }

  function relationshipLine(r) {
    const roles = r.roles.map((id, i) => roleLabel(id, r.roleNames[i])).join(", ");
    return el("li", { "data-type": r.type },
      el("span", { class: "badge type-" + r.type.toLowerCase() }, r.type), " ",
      r.type === "DAP" ? t("removesDap") : r.displayName || r.id,
      roles ? el("span", { class: "muted" }, " · " + roles) : null);
  }

  function renderPreview() {
    const preview = state.preview;
    const list = clear($("remove-list"));
    const refused = clear($("remove-refused-list"));
    let warned = 0;
    for (const c of preview.customers) {
      if (c.refused) {
        refused.appendChild(el("li", { "data-tenant": c.tenantId }, el("span", { class: "name" }, c.displayName), " · ",
          t("refused_" + c.refused, { scope: preview.scope.join(", ") })));
        continue;
      }
      if (c.warnings.length) warned++;
      const item = el("li", { "data-tenant": c.tenantId, class: c.warnings.length ? "has-warnings" : null },
        el("div", null, el("span", { class: "name" }, c.displayName), " ",
           el("span", { class: "mono muted small" }, c.tenantId)));
      if (c.warnings.length) {
        const warnings = el("ul", { class: "warnings" });
        for (const w of c.warnings) {
          warnings.appendChild(el("li", { "data-warning": w }, t("warn_" + w, { n: fmtNumber(c.inactiveForAtLeastDays || 0) })));
        }
        item.appendChild(warnings);
      }
      if (c.underWay) {
        item.appendChild(el("p", { class: "small muted" }, t("underWay", { status: t("status_" + c.underWay.status) })));
      }
      item.appendChild(el("ul", { class: "removes" }, c.removes.map(relationshipLine)));
      const mail = !preview.notify ? t("mailOff")
        : c.recipients.length ? t("mailTo", { to: c.recipients.join(", ") }) : t("mailNobody");
      item.appendChild(el("p", { class: "small mail-line" }, mail));
      list.appendChild(item);
    }
    $("remove-refused").hidden = !refused.children.length;
    $("remove-warned").hidden = !warned;
    $("remove-warned-text").textContent = warned ? t("warnedText", { n: fmtNumber(warned) }) : "";
    const sendable = preview.customers.filter((c) => !c.refused).length;
    $("remove-intro").textContent = t("dialogIntro", { n: fmtNumber(sendable) });
  }

  function previewTargets() {
    return state.preview ? state.preview.customers.filter((c) => !c.refused) : [];
  }

  function updateConfirm() {
    const warned = state.preview && state.preview.customers.some((c) => !c.refused && c.warnings.length);
    $("remove-confirm").disabled = !state.preview || !previewTargets().length || !$("remove-ack").checked
      || (warned && !$("remove-ack-warned").checked);
  }

  function closeRemoveDialog() {
    state.previewSeq++;
    const dialog = $("remove-dialog");
    if (dialog.open) dialog.close();
  }

  async function submitRemoval(event) {
    event.preventDefault();
    const error = $("remove-error");
    if (!$("remove-ack").checked) {
      error.textContent = t("ackRequired");
      error.hidden = false;
      return;
    }
    const targets = previewTargets();
    if (!targets.length) return;
    const confirm = $("remove-confirm");
    confirm.disabled = true;
    confirm.textContent = t("removing");
    const progress = $("remove-progress");
    const batches = chunks(targets, BATCH);
    const reason = $("remove-reason").value.trim();
    let accepted = 0;
    try {
      for (const batch of batches) {
        if (batches.length > 1) {
          progress.textContent = t("removingBatch", { done: fmtNumber(accepted), total: fmtNumber(targets.length) });
          progress.hidden = false;
        }
        const result = await api("/api/removals", { body: {
          tenantIds: batch.map((x) => x.tenantId), customerNotified: true, reason } });
        const names = new Map(batch.map((x) => [x.tenantId, x.displayName]));
        for (const removal of result.body.removals) {
          state.removals.set(removal.id, Object.assign({ displayName: names.get(removal.tenantId) || removal.tenantId,
            requestedAt: new Date().toISOString() }, removal));
        }
        for (const target of batch) state.selection.delete(target.tenantId);
        accepted += batch.length;
      }
      closeRemoveDialog();
      notice(t("accepted", { n: fmtNumber(accepted) }), "success");
      afterRemovalsChanged();
      $("removal-status").focus();
      pollRemovals();
    } catch (failure) {
      const message = failure.status === 403 && failure.code === "forbidden" ? t("forbidden") : failure.message;
      error.textContent = accepted
        ? t("batchFailed", { done: fmtNumber(accepted), total: fmtNumber(targets.length), message })
        : t("error", { message });
      error.hidden = false;
      progress.hidden = true;
      confirm.textContent = t("confirmRemove");
      if (accepted) {
        // What was accepted is under way: the dialog keeps only the rest, to be sent again or cancelled.
        state.preview.customers = state.preview.customers.filter((c) => c.refused || state.selection.has(c.tenantId));
        renderPreview();
        afterRemovalsChanged();
        pollRemovals();
      }
      updateConfirm();
    }
  }

  // The table, the customer view and the status list show what the removals hold.
  function afterRemovalsChanged() {
    renderRemovalStatus();
    if (state.page) renderRows();
    renderSelection();
    if (!$("customer").hidden && state.detail) renderCustomerState(state.detail);
  }

  // Removals the shown evaluation does not know yet (requested since, or still under way): read once per
  // evaluation, so that their state survives a reload and reaches every user.
  async function loadRemovals() {
    const since = state.page && state.page.evaluatedAt;
    if (!since) return;
    state.removalsSince = since;
    try {
      const result = await api("/api/removals?since=" + encodeURIComponent(since));
      for (const removal of result.body.removals) {
        state.removals.set(removal.id, Object.assign({}, state.removals.get(removal.id), removal));
      }
      afterRemovalsChanged();
      pollRemovals();
    } catch (failure) { /* the table stands; the removals' state shows when the next poll succeeds */ }
  }

  function renderRemovalStatus() {
    const section = $("removal-status");
    const list = clear($("removal-status-list"));
    if (!state.removals.size) { section.hidden = true; return; }
    section.hidden = false;
    let pending = 0;
    for (const removal of state.removals.values()) {
      if (!TERMINAL.has(removal.status)) pending++;
      const item = el("li", { "data-removal": removal.id, "data-status": removal.status },
        el("span", { class: "name" }, removal.displayName),
        el("span", { class: "badge status-" + removal.status }, t("status_" + removal.status)));
      if (removal.status === "skipped" || removal.status === "failed") {
        const why = removal.reason || "";
        if (why) item.appendChild(el("span", { class: "muted small reason" }, reasonLabel(why)));
      }
      list.appendChild(item);
    }
    $("removal-status-done").hidden = pending > 0;
  }

  async function pollRemovals() {
    window.clearTimeout(state.pollTimer);
    const pending = Array.from(state.removals.values()).filter((r) => !TERMINAL.has(r.status)).map((r) => r.id);
    if (!pending.length) return;
    let finished = 0;
    try {
      for (const batch of chunks(pending, 100)) {
        const result = await api("/api/removals?ids=" + encodeURIComponent(batch.join(",")));
        for (const removal of result.body.removals) {
          const known = state.removals.get(removal.id);
          if (known && !TERMINAL.has(known.status) && TERMINAL.has(removal.status)) finished++;
          state.removals.set(removal.id, Object.assign({}, known, removal));
        }
      }
      afterRemovalsChanged();
    } catch (failure) { /* keep polling: the status is shown as last known */ }
    const open = Array.from(state.removals.values()).some((r) => !TERMINAL.has(r.status));
    // When the last removal under way has finished, the figures are computed again (an on-demand
    // audit): the table, tiles and customer view follow without "Refresh now".
    if (finished && !open) refreshNow({ auto: true });
    if (open) state.pollTimer = window.setTimeout(pollRemovals, 2000);
  }

  // --- refresh (on-demand audit) -------------------------------------------------------------------
  async function refreshNow(options) {
    const auto = !!(options && options.auto);
    if (state.refreshing) return;
    state.refreshing = true;
    const button = $("refresh");
    button.disabled = true;
    notice(t(auto ? "refreshAfterChange" : "refreshRunning"), "info");
    try {
      const result = await api("/api/audit/run", { body: {} });
      await waitForRun(result.body.id, auto);
    } catch (failure) {
      showFailure(failure);
      button.disabled = false;
      state.refreshing = false;
    }
  }

  async function waitForRun(id, auto) {
    const button = $("refresh");
    try {
      const result = await api("/api/audit/runs/" + encodeURIComponent(id));
      const run = result.body;
      if (run.status === "running") {
        state.refreshTimer = window.setTimeout(() => waitForRun(id, auto), 1500);
        return;
      }
      button.disabled = false;
      state.refreshing = false;
      if (run.status === "succeeded") {
        await Promise.all([loadCustomers(), loadExclusions()]);
        loadTrend();
        if (!$("customer").hidden) route();
        if (!$("trail").hidden) renderExclusions();
        notice(t(auto ? "refreshedAfterChange" : "refreshDone"), "success");
      } else {
        notice(t("refreshFailed", { error: run.error || "" }), "error");
      }
    } catch (failure) {
      button.disabled = false;
      state.refreshing = false;
      showFailure(failure);
    }
  }

  // --- exclusions ----------------------------------------------------------------------------------
  // Customers the policy never removes: EXCLUDED_TENANTS (shown, changed in the settings only) and the
  // exclusions holders of Relationships.Remove make here (stored and audited by the API).
  async function loadExclusions() {
    try {
      const result = await api("/api/exclusions");
      state.exclusions = new Map(result.body.exclusions.map((x) => [x.tenantId, x]));
    } catch (failure) { /* the rows' own flags still show what the evaluation excluded */ }
  }

  function exclusionText(x) {
    return x.source === "setting" ? t("excludedBySetting")
      : t("excludedBy", { by: x.excludedBy, date: fmtDate(x.excludedAt), reason: x.reason });
  }

  function renderExclusions() {
    const host = clear($("exclusions"));
    const items = Array.from(state.exclusions.values());
    if (!items.length) { host.appendChild(el("p", { class: "muted" }, t("exclusionsNone"))); return; }
    host.appendChild(table([t("colCustomer"), t("actionReason"), t("actionBy"), t("actionAt"), t("exclSource")],
      items.map((x) => [
        el("td", null, el("a", { href: "#/customers/" + encodeURIComponent(x.tenantId) }, x.displayName || x.tenantId)),
        x.source === "setting" ? "" : x.reason, x.excludedBy || "", fmtDateTime(x.excludedAt),
        t(x.source === "setting" ? "exclSourceSetting" : "exclSourcePortal")]), "exclusions-table"));
  }

  function openExcludeDialog(include) {
    const target = state.detail;
    if (!target) return;
    state.excludeTarget = { tenantId: target.tenantId, include };
    const name = target.displayName || target.tenantId;
    $("exclude-title").textContent = t(include ? "includeTitle" : "excludeTitle", { name });
    $("exclude-intro").textContent = t(include ? "includeIntro" : "excludeIntro");
    $("exclude-reason-label").textContent = t(include ? "includeReasonLabel" : "excludeReasonLabel");
    $("exclude-confirm").textContent = t(include ? "includeButton" : "excludeConfirm");
    $("exclude-reason").value = "";
    $("exclude-error").hidden = true;
    $("exclude-confirm").disabled = false;
    $("exclude-dialog").showModal();
    $("exclude-reason").focus();
  }

  async function submitExclusion(event) {
    event.preventDefault();
    const target = state.excludeTarget;
    if (!target) return;
    const reason = $("exclude-reason").value.trim();
    const error = $("exclude-error");
    if (!target.include && !reason) {
      error.textContent = t("reasonRequired");
      error.hidden = false;
      return;
    }
    $("exclude-confirm").disabled = true;
    const path = "/api/exclusions/" + encodeURIComponent(target.tenantId);
    try {
      if (target.include) await api(path + (reason ? "?reason=" + encodeURIComponent(reason) : ""), { method: "DELETE", body: {} });
      else await api(path, { method: "PUT", body: { reason } });
      $("exclude-dialog").close();
      await loadExclusions();
      if (state.detail) renderCustomerState(state.detail);
      if (state.page) renderRows();
      // The counts and recommendations follow at once: the figures are computed again.
      refreshNow({ auto: true });
    } catch (failure) {
      error.textContent = failure.status === 403 ? t("forbidden") : t("error", { message: failure.message });
      error.hidden = false;
      $("exclude-confirm").disabled = false;
    }
  }

  // The customer view's state that changes without reloading it: a removal under way, an exclusion.
  function renderCustomerState(c) {
    const row = c.row;
    const canRemove = !!(state.me && state.me.canRemove);
    const removal = holdingRemoval(c.tenantId);
    const status = $("customer-removal");
    status.hidden = !removal;
    status.textContent = removal ? t("customerRemovalState", { status: t("status_" + removal.status),
      at: fmtDateTime(removal.requestedAt), by: removal.requestedBy || "" }) : "";
    $("customer-remove").hidden = !(row && canRemove && !removal);
    const exclusion = state.exclusions.get(c.tenantId);
    const note = $("customer-exclusion");
    note.hidden = !exclusion;
    note.textContent = exclusion ? exclusionText(exclusion) : "";
    $("customer-exclude").hidden = !(canRemove && !exclusion);
    $("customer-include").hidden = !(canRemove && exclusion && exclusion.source === "portal");
  }

  // --- customer detail --------------------------------------------------------------------------
  async function showCustomer(tenantId) {
    $("dashboard").hidden = true;
    $("gdap").hidden = true;
    const view = $("customer");
    view.hidden = false;
    $("customer-name").textContent = t("loading");
    $("customer-tenant").textContent = tenantId;
    for (const id of ["customer-facts", "activity", "agents", "changes", "relationships", "actions", "azure-roles"]) clear($(id));
    for (const id of ["customer-remove", "customer-exclude", "customer-include", "customer-removal",
                      "customer-exclusion", "customer-not-monitored"]) $(id).hidden = true;
    state.detail = null;
    // Navigating on (another customer, a language switch) before the answer arrives starts a newer
    // request; a late answer for an earlier one must not paint over it.
    const seq = ++state.customerSeq;
    try {
      const result = await api("/api/customers/" + encodeURIComponent(tenantId) + "?days=90");
      if (seq !== state.customerSeq) return;
      notice(null);
      renderCustomer(result.body);
    } catch (failure) {
      if (seq !== state.customerSeq) return;
      $("customer-name").textContent = tenantId;
      showFailure(failure);
    }
    $("main").focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }

  function table(headers, rows, cls) {
    return el("table", { class: "grid compact " + (cls || "") },
      el("thead", null, el("tr", null, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", null, rows.map((cells) => el("tr", null, cells.map((c) => c instanceof Node && c.tagName === "TD" ? c : el("td", null, c))))));
  }

  function renderCustomer(c) {
    $("customer-name").textContent = c.displayName || c.tenantId;
    $("customer-tenant").textContent = c.tenantId;
    $("customer-domain").textContent = c.defaultDomainName || "";
    $("customer-domain-wrap").hidden = !c.defaultDomainName;
    const row = c.row;
    $("customer-not-monitored").hidden = !!row;
    state.detail = c;
    state.detailTarget = row ? { tenantId: c.tenantId, displayName: c.displayName || c.tenantId } : null;
    renderCustomerState(c);

    const zone = zoneOf(c.culture);
    const facts = clear($("customer-facts"));
    if (row) {
      const fact = (label, value) => [el("div", { class: "fact" }, el("dt", null, label), el("dd", null, value))];
      const proven = inactivity(row, c.evaluation && c.evaluation.coverage);
      append(facts, [
        fact(t("relTypes"), row.relationshipTypes.join(" + ")),
        fact(t("colDaysActive"), fmtNumber(row.daysActive)),
        fact(t("colDaysInactive"), proven.hint ? proven.text + " (" + proven.hint + ")" : proven.text),
        fact(t("colLastSignIn"), fmtDateTime(row.lastSignInAt, zone)),
        fact(t("lastSignInKind"), row.lastSignInKind === "interactive" ? t("kindInteractive")
          : row.lastSignInKind === "nonInteractive" ? t("kindNonInteractive") : ""),
        fact(t("colAgents"), fmtNumber(row.agentsSignedInLastDay)),
        fact(t("colSignIns"), t("signInsSplit", { n: fmtNumber(row.signInsLastDay),
          non: fmtNumber(row.nonInteractiveSignInsLastDay || 0) })),
        fact(t("colRecommendation"), row.recommendation === "remove" ? t("recRemove") : t("recNone")),
        fact(t("outlookTitle"), removalOutlook(Object.assign({}, row, { excluded: isExcluded(row) }),
          c.evaluation && c.evaluation.policy, c.evaluation && c.evaluation.asOf)),
      ]);
    }

    const days = c.signIns.days;
    $("activity-title").textContent = t("activityTitle", { n: days.length });
    renderActivity($("activity"), days);

    const agents = $("agents");
    if (c.agents.length) {
      agents.appendChild(table([t("agent"), t("agentId"), t("daysWithSignIns"), t("lastDay")],
        c.agents.map((a) => [
          el("td", { class: "agent" }, a.displayName || a.userPrincipalName || t("agentUnknown"),
             a.displayName && a.userPrincipalName ? el("div", { class: "small muted" }, a.userPrincipalName) : null),
          el("td", { class: "mono small" }, a.userId), el("td", { class: "num" }, fmtNumber(a.days)), fmtDate(a.lastDay)])));
    } else {
      agents.appendChild(el("p", { class: "muted" }, t("noAgents")));
    }

    const changes = $("changes");
    if (c.changes.length) {
      // A change names its relationship by key ("DAP", "GDAP-<id>"): show the relationship's name, the id beside it.
      const names = new Map(c.relationships.map((r) => [r.type === "DAP" ? "DAP" : "GDAP-" + r.id, r]));
      changes.appendChild(table([t("actionAt"), t("relName"), t("relStatus")],
        c.changes.slice().reverse().map((x) => {
          const rel = names.get(x.relationship);
          const id = x.relationship.replace(/^GDAP-/, "");
          const name = rel ? (rel.type === "DAP" ? "DAP" : rel.displayName || id) : id;
          return [fmtDateTime(x.at, zone),
            el("td", { class: "change-rel", "data-relationship": x.relationship, title: t("changeRelationshipId", { id: id }) },
              el("div", null, name),
              rel && rel.type !== "DAP" && name !== id ? el("div", { class: "small muted mono" }, id) : null),
            (x.from ? statusLabel(x.from) + " → " : "") + statusLabel(x.to)];
        })));
    } else {
      changes.appendChild(el("p", { class: "muted" }, t("noChanges")));
    }

    const relationships = $("relationships");
    relationships.appendChild(table(
      [t("relType"), t("relName"), t("relStatus"), t("relEstablished"), t("relEnds"), t("relAutoExtend"), t("relRoles")],
      c.relationships.map((r) => {
        const roles = el("td", { class: "roles-cell" },
          el("div", null, r.roles.map((id, i) => roleLabel(id, r.roleNames[i])).join(listSeparator())));
        if (r.accessAssignments.length) {
          const list = el("ul", { class: "assignments" });
          for (const a of r.accessAssignments) {
            const group = a.groupName ? el("span", { class: "group", title: a.groupId }, a.groupName)
              : el("span", { class: "mono" }, t("group", { id: a.groupId }));
            list.appendChild(el("li", null, group, ": ",
              a.roles.map((id, i) => roleLabel(id, a.roleNames[i])).join(listSeparator()) + " (" + statusLabel(a.status) + ")"));
          }
          roles.appendChild(el("div", { class: "small muted" }, t("accessAssignments")));
          roles.appendChild(list);
        }
        return [el("td", null, el("span", { class: "badge type-" + r.type.toLowerCase() }, r.type)),
                r.displayName, el("td", null, el("span", { class: "badge status-rel " + (r.active ? "rel-active" : "rel-inactive"),
                  "data-status": r.status }, statusLabel(r.status))),
                fmtDate(r.establishedAt, zone), fmtDate(r.endsAt, zone), r.autoExtend ? t("yes") : t("no"), roles];
      })));

    const actions = $("actions");
    if (c.actions === null) {
      actions.appendChild(el("p", { class: "muted" }, t("actionsUnavailable")));
    } else if (!c.actions.length) {
      actions.appendChild(el("p", { class: "muted" }, t("noActions")));
    } else {
      actions.appendChild(actionsTable(c.actions, false, zone));
    }
    renderAzureRoles($("azure-roles"), c.azureRoles);
    // The generic advice only where the customer's Azure roles are not known; read, they are listed.
    $("azure-rbac-note").hidden = !!(c.azureRoles && c.azureRoles.state === "read");
    if (window.DAM_GDAP) window.DAM_GDAP.customerRendered(c);
  }

  // Azure role assignments the partner's principals hold on the customer's subscriptions (they survive
  // DAP and GDAP): by subscription, role, scope and principal, with how the last read went.
  function renderAzureRoles(host, azure) {
    if (!azure) {
      host.appendChild(el("p", { class: "muted" }, t("azureRolesUnread")));
      return;
    }
    if (azure.state !== "read") {
      host.appendChild(el("p", { class: "notice azure-roles-refused" },
        t(azure.state === "denied" ? "azureRolesDenied" : "azureRolesFailed", { at: fmtDateTime(azure.readAt) })));
    }
    if (!azure.assignments.length) {
      if (azure.state === "read") host.appendChild(el("p", { class: "muted" }, t("azureRolesNone", { at: fmtDateTime(azure.readAt) })));
      return;
    }
    host.appendChild(table([t("azureSubscription"), t("azureRole"), t("azureScope"), t("azurePrincipal")],
      azure.assignments.map((a) => [
        el("td", null, a.subscriptionName || a.subscriptionId, el("div", { class: "small muted mono" }, a.subscriptionId)),
        a.roleName,
        el("td", { class: "mono small azure-scope" }, a.scope),
        a.principal === "adminAgents" ? t("azurePrincipalAdminAgents") : t("azurePrincipalGroup", { id: a.principalId }),
      ]), "azure-roles"));
    host.appendChild(el("p", { class: "small muted" }, t("azureRolesReadAt", { at: fmtDateTime(azure.readAt) })));
  }

  // Stacked bars per day: interactive sign-ins at the bottom, non-interactive ones above them.
  const ACTIVITY_SERIES = [
    { kind: "interactive", label: "kindInteractive", cls: "s-interactive" },
    { kind: "nonInteractive", label: "kindNonInteractive", cls: "s-noninteractive" },
  ];

  function renderActivity(host, days) {
    state.activityDays = days;
    const counts = (d) => {
      const non = Math.min(d.signIns, d.nonInteractiveSignIns || 0);
      return { interactive: d.signIns - non, nonInteractive: non };
    };
    const width = chartWidth(host), height = 200, left = 36, right = 8, top = 10, bottom = 26;
    const axis = countAxis(Math.max(0, ...days.map((d) => d.signIns)));
    const max = axis.top;
    const band = (width - left - right) / Math.max(1, days.length);
    const y = (v) => top + (height - top - bottom) * (1 - v / max);
    const totals = days.reduce((sum, d) => {
      const c = counts(d);
      return { interactive: sum.interactive + c.interactive, nonInteractive: sum.nonInteractive + c.nonInteractive };
    }, { interactive: 0, nonInteractive: 0 });
    const label = t("activityLabel") + ". " + t("activityTotals", { n: fmtNumber(totals.interactive),
      non: fmtNumber(totals.nonInteractive), days: fmtNumber(days.length) });
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "activity-chart", role: "img",
                               "aria-label": label });
    chart.appendChild(svg("title", null, label));
    for (const value of axis.ticks) {
      chart.appendChild(svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "grid-line" }));
      chart.appendChild(svg("text", { x: left - 6, y: y(value) + 4, class: "axis-label", "text-anchor": "end" }, fmtNumber(value)));
    }
    const step = labelStep(days.length, width - left - right);
    days.forEach((d, i) => {
      const x = left + i * band;
      const c = counts(d);
      const group = svg("g", { class: d.signIns ? "day" : "day zero", "data-day": d.day },
        svg("title", null, t("signInsOn", { day: fmtDate(d.day), n: fmtNumber(d.signIns), agents: fmtNumber(d.agentCount),
          interactive: fmtNumber(c.interactive), non: fmtNumber(c.nonInteractive) })));
      let base = 0;
      for (const s of ACTIVITY_SERIES) {
        const value = c[s.kind];
        const barHeight = (height - top - bottom) * value / max;
        group.appendChild(svg("rect", { x: (x + band * 0.15).toFixed(1), width: Math.max(1, band * 0.7).toFixed(1),
          y: (y(base) - barHeight).toFixed(1), height: barHeight.toFixed(1),
          class: "bar " + s.cls + (value ? "" : " zero"), "data-count": value }));
        base += value;
      }
      chart.appendChild(group);
      if (i % step === 0) {
        chart.appendChild(svg("text", { x: i ? x + band / 2 : x, y: height - 8, class: "axis-label",
          "text-anchor": i ? "middle" : "start" }, fmtAxisDate(d.day)));
      }
    });
    host.appendChild(chart);
    const legend = el("ul", { class: "legend activity-legend" });
    for (const s of ACTIVITY_SERIES) {
      legend.appendChild(el("li", null, el("span", { class: "swatch block " + s.cls, "aria-hidden": "true" }),
        t(s.label) + " (" + fmtNumber(totals[s.kind]) + ")"));
    }
    host.appendChild(legend);
  }

  // --- the audit trail (#/activity) ------------------------------------------------------------
  // An action's name is "<subject>.<verb>" (removal.completed, gdap.terminate, notification.customer-removal):
  // both parts are translated where the portal knows them, and shown as recorded otherwise.
  // The translation of ``key``, or ``fallback`` where there is none (t answers an unknown key itself).
  function tOr(key, fallback) {
    const text = t(key);
    return text === key ? fallback : text;
  }

  function actionLabel(name) {
    const [subject, ...rest] = String(name || "").split(".");
    const verb = rest.join(".");
    const subjectText = tOr("actSubject_" + subject, subject);
    return verb ? subjectText + ": " + tOr("actVerb_" + verb, verb) : subjectText;
  }

  function resultLabel(result) {
    return result ? tOr("actResult_" + result, result) : "";
  }

  // Relationship and access assignment statuses as Microsoft reports them (GDAP relationships:
  // delegatedAdminRelationshipStatus, https://learn.microsoft.com/en-us/graph/api/resources/delegatedadminrelationship;
  // access assignments: delegatedAdminAccessAssignmentStatus,
  // https://learn.microsoft.com/en-us/graph/api/resources/delegatedadminaccessassignment), DAP's as the
  // product records it (active, disabled), and a removal's per-relationship states: in words, never as codes.
  function statusLabel(status) {
    if (!status) return "";
    const text = tOr("relStatus_" + status, "");
    return text || resultLabel(status);
  }

  // Reasons the product writes (skips, holds, halts) are English sentences with values in them: each
  // known one is matched and said again in the reader's language, its times and statuses formatted;
  // anything else (an operator's own words, an error text from a service) is shown as written.
  const REASONS = [
    ["reasonExcludedNow", /^excluded: the customer is in EXCLUDED_TENANTS now$/],
    ["reasonExcluded", /^excluded \(EXCLUDED_TENANTS\)$/],
    ["reasonNoLongerActive", /^no longer active \((?<states>.*)\)$/],
    ["reasonNoLongerActiveStatus", /^no longer active \(status (?<status>\w+)\)$/],
    ["reasonNewRelationship", /^a new relationship was established since the evaluation: (?<names>.+)$/],
    ["reasonSignedInStore", /^signed in since: the store holds a sign-in at (?<at>\S+) \(after (?<since>\S+)\)$/],
    ["reasonSignedInGraph", /^signed in since: an agent signed in at (?<at>\S+) \((?<kind>interactive|non-interactive), after (?<since>\S+)\)$/],
    ["reasonCoverage", /^coverage: the sign-in log held since (?<from>\S+) proves only (?<n>\d+) days of inactivity$/],
    ["reasonAlready", /^removal (?<id>\S+) for this inactivity stretch is already (?<status>\w+)$/],
    ["reasonPolicy", /^no partner sign-in for at least (?<n>\d+) days \(policy: remove after (?<remove>\d+) days\)$/],
    ["reasonBreaker", /^circuit breaker: (?<n>\d+) removal candidates, more than MAX_REMOVALS_PER_RUN \((?<limit>\d+)\)$/],
    ["reasonStale", /^stale: the last successful sign-in ingestion \((?<at>\S+)\) is more than (?<hours>\d+) hours before (?<asOf>\S+)$/],
    ["reasonMail", /^mail: customer notices cannot be sent \((?<detail>.*)\); nothing is removed until a mail goes out again$/],
    ["reasonNotFinished", /^not finished in this run \(status (?<status>\w+)\)$/],
    ["reasonGaveUp", /^gave up after (?<n>\d+) attempts(?<detail>: .*)?$/],
    ["reasonNothing", /^nothing to remove$/],
    ["reasonNotListed", /^no longer listed$/],
    ["reasonGoneRelationship", /^the relationship no longer exists$/],
    ["reasonNoGlobalAdmin", /^does not include Global Administrator$/],
    ["reasonNotActive", /^not active \(status (?<status>\w+)\)$/],
    ["reasonTemplate", /^template (?<template>\S+) \((?<basis>previousRequest|matchingRoles)\)$/],
    ["reasonApproved", /^approved by the customer, active since (?<at>\S+)$/],
    ["reasonAutoExtend", /^auto-extend (?<duration>P\w+) \(ends (?<at>\S+)\)$/],
    ["reasonAssigned", /^security group (?<group>.+) \((?<id>[0-9a-f-]{36})\) -> (?<roles>.+)$/],
  ];
  const REASON_TIME = /^\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})$/;

  function reasonLabel(text) {
    const reason = String(text || "");
    for (const [key, pattern] of REASONS) {
      const match = pattern.exec(reason);
      if (!match) continue;
      const values = {};
      for (const [name, value] of Object.entries(match.groups || {})) {
        if (value === undefined) values[name] = "";
        else if (name === "status") values[name] = statusLabel(value);
        else if (name === "kind") values[name] = t(value === "interactive" ? "kindInteractive" : "kindNonInteractive");
        else if (name === "basis") values[name] = t("basis_" + value);
        else if (name === "states") values[name] = detailLabel(value.split(", ").join("; ")).split("; ").join(listSeparator());
        else if (name === "n" || name === "limit" || name === "hours" || name === "remove") values[name] = fmtNumber(Number(value));
        else if (value === "never" || value === "nowhere") values[name] = t("reasonNever");
        else if (REASON_TIME.test(value)) values[name] = fmtDateTime(value);
        else values[name] = value;
      }
      return t(key, values);
    }
    // "skipped: <reason>", "failed: <reason>" (a removal's end as the enforcement summary says it).
    const prefixed = /^(skipped|failed|completed|requested): (.+)$/.exec(reason);
    if (prefixed) return statusLabel(prefixed[1]) + ": " + reasonLabel(prefixed[2]);
    const detail = detailLabel(reason);
    if (detail !== reason) return detail;
    // "<relationship or customer>: <reason or status>" (the GDAP steps name the relationship first).
    const named = /^([^:]+): (.+)$/.exec(reason);
    if (named) {
      const said = /^\w+$/.test(named[2]) ? statusLabel(named[2]) : reasonLabel(named[2]);
      if (said !== named[2]) return named[1] + ": " + said;
    }
    return reason;
  }

  // What a removal did per relationship ("DAP Contoso: requested; GDAP Helpdesk: skipped"): each state
  // (or note) in words.
  function detailLabel(text) {
    const detail = String(text || "");
    const parts = detail.split("; ");
    const one = /^(DAP|GDAP) (.+): (.+)$/;
    if (!parts.every((part) => one.test(part))) return detail;
    return parts.map((part) => {
      const [, type, name, what] = one.exec(part);
      const said = /^\w+$/.test(what) ? statusLabel(what) : reasonLabel(what);
      return type + " " + name + ": " + said;
    }).join("; ");
  }

  function actionsTable(actions, withCustomer, zone) {
    const headers = [t("actionAt"), ...(withCustomer ? [t("colCustomer")] : []), t("actionWhat"),
      t("actionStatus"), t("actionBy"), t("actionReason")];
    return table(headers, actions.map((a) => [
      el("td", { class: "nowrap" }, fmtDateTime(a.at, zone)),
      ...(withCustomer ? [a.tenantId ? el("td", null, el("a", { href: "#/customers/" + encodeURIComponent(a.tenantId),
        class: "mono" }, a.tenantId)) : el("td", null, "")] : []),
      [actionLabel(a.action), a.relationshipType, a.detail ? reasonLabel(a.detail) : ""].filter(Boolean).join(" · "),
      el("td", { class: "result result-" + (a.result || "none") }, resultLabel(a.result)),
      actorLabel(a.actor),
      a.reason ? reasonLabel(a.reason) : ""]), "trail-table");
  }

  // Who acted: the policy and the system by name in the reader's language, people by their sign-in name.
  function actorLabel(actor) {
    return actor === "policy" || actor === "system" ? t("actor_" + actor) : (actor || "");
  }

  function renderTrail() {
    const host = clear($("trail-rows"));
    host.appendChild(state.trail.length ? actionsTable(state.trail, true) : el("p", { class: "muted" }, t("noActions")));
  }

  async function showTrail(more) {
    $("dashboard").hidden = true;
    $("gdap").hidden = true;
    $("customer").hidden = true;
    $("trail").hidden = false;
    const host = $("trail-rows");
    const seq = ++state.trailSeq;
    const customer = $("trail-customer").value.trim();
    const params = new URLSearchParams({ limit: "100" });
    if (/^[0-9a-f-]{36}$/i.test(customer)) params.set("tenantId", customer);
    if (more && state.trail.length) params.set("until", state.trail[state.trail.length - 1].at);
    try {
      const result = await api("/api/actions?" + params.toString());
      if (seq !== state.trailSeq) return;
      const fresh = result.body.actions.filter((a) => !state.trail.some((b) => b.id === a.id));
      state.trail = more ? state.trail.concat(fresh) : result.body.actions;
      renderTrail();
      $("trail-more").hidden = result.body.count < 100 || (more && !fresh.length);
    } catch (failure) {
      if (seq !== state.trailSeq) return;
      clear(host).appendChild(el("p", { class: "error" }, t("error", { message: failure.message })));
    }
  }

  // --- routing and wiring -----------------------------------------------------------------------
  function route() {
    const agents = window.DAM_AGENTS;  // agents.js: the Agents view (#/agents)
    if (agents && agents.route(window.location.hash)) return;
    const lost = window.DAM_LOST;  // lost.js: the Lost access view (#/lost)
    if (lost && lost.route(window.location.hash)) return;
    const match = /^#\/customers\/([^/?#]+)$/.exec(window.location.hash);
    if (match) {
      $("trail").hidden = true;
      showCustomer(decodeURIComponent(match[1]));
      return;
    }
    if (window.location.hash === "#/activity") {
      state.trail = [];
      showTrail(false);
      loadExclusions().then(renderExclusions);
      return;
    }
    $("trail").hidden = true;
    const gdap = window.DAM_GDAP;  // gdap.js: the GDAP lifecycle view (#/gdap)
    if (gdap && gdap.route(window.location.hash)) return;
    $("gdap").hidden = true;
    $("customer").hidden = true;
    $("dashboard").hidden = false;
    if (window.location.hash.indexOf("?") >= 0) {
      const wanted = queryFromHash(window.location.hash);
      if (JSON.stringify(wanted) !== JSON.stringify(state.query)) {
        state.query = wanted;
        state.page = null;
      }
    } else if (state.page) {
      writeHash();  // back from a customer or another view: the dashboard keeps its filters
    }
    if (!state.page) loadCustomers();
    if (gdap) gdap.dashboardShown();
  }

  function wire() {
    $("language").addEventListener("change", (event) => {
      state.lang = event.target.value === "ja" ? "ja" : "en";
      safeStorage("set", "dam.lang", state.lang);
      applyStaticText();
      if (state.page) renderDashboard();
      renderRemovalStatus();
      loadTrend();
      if (!$("customer").hidden) route();
      if (!$("trail").hidden) renderTrail();
      if (window.DAM_GDAP) window.DAM_GDAP.languageChanged();
    });
    for (const tile of document.querySelectorAll(".tile:not([data-static])")) {
      tile.addEventListener("click", () => {
        if (tile.dataset.recommendation) {
          const value = tile.dataset.recommendation;
          setQuery({ recommendation: state.query.recommendation === value ? null : value });
          return;
        }
        const bucket = tile.dataset.bucket;
        setQuery({ bucket: state.query.bucket === bucket ? null : bucket });
      });
    }
    const noFilters = { bucket: null, recommendation: null, type: null, excluded: null, role: null, reseller: null };
    $("filter-clear").addEventListener("click", () => setQuery(noFilters));
    $("filters-reset").addEventListener("click", () => setQuery(noFilters));
    $("filters-toggle").addEventListener("click", () => {
      const panel = $("filters");
      panel.hidden = !panel.hidden;
      $("filters-toggle").setAttribute("aria-expanded", panel.hidden ? "false" : "true");
      if (!panel.hidden) $("filter-type").focus();
    });
    for (const [id, key] of [["filter-type", "type"], ["filter-recommendation", "recommendation"],
                             ["filter-excluded", "excluded"], ["filter-role", "role"],
                             ["filter-reseller", "reseller"]]) {
      $(id).addEventListener("change", (event) => setQuery({ [key]: event.target.value || null }));
    }
    $("search").addEventListener("input", (event) => {
      window.clearTimeout(state.searchTimer);
      const value = event.target.value;
      state.searchTimer = window.setTimeout(() => setQuery({ q: value.trim() }), 200);
    });
    $("search").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        window.clearTimeout(state.searchTimer);
        setQuery({ q: event.target.value.trim() });
      }
    });
    for (const th of document.querySelectorAll("#customers th[data-sort]")) {
      th.querySelector("button").addEventListener("click", () => {
        const field = th.dataset.sort;
        const current = state.query.sort;
        let next;
        if (current === field) next = "-" + field;
        else if (current === "-" + field) next = field;
        else next = DESCENDING_FIRST.has(field) ? "-" + field : field;
        setQuery({ sort: next });
      });
    }
    $("select-page").addEventListener("change", (event) => {
      for (const box of document.querySelectorAll("#rows .row-select")) {
        if (box.disabled) continue;
        box.checked = event.target.checked;
        const row = state.page.customers.find((r) => r.tenantId === box.dataset.tenant);
        if (box.checked) state.selection.set(row.tenantId, row.displayName || row.tenantId);
        else state.selection.delete(row.tenantId);
        box.closest("tr").classList.toggle("selected", box.checked);
      }
      renderSelection();
    });
    $("selection-clear").addEventListener("click", () => {
      state.selection.clear();
      for (const box of document.querySelectorAll("#rows .row-select")) {
        box.checked = false;
        box.closest("tr").classList.remove("selected");
      }
      renderSelection();
    });
    $("remove").addEventListener("click", () => {
      const targets = Array.from(state.selection.entries()).map(([tenantId, displayName]) => ({ tenantId, displayName }));
      if (targets.length) openRemoveDialog(targets, $("remove"));
    });
    $("customer-remove").addEventListener("click", () => {
      if (state.detailTarget) openRemoveDialog([state.detailTarget], $("customer-remove"));
    });
    $("remove-ack").addEventListener("change", (event) => {
      updateConfirm();
      if (event.target.checked) $("remove-error").hidden = true;
    });
    $("remove-ack-warned").addEventListener("change", updateConfirm);
    $("customer-exclude").addEventListener("click", () => openExcludeDialog(false));
    $("customer-include").addEventListener("click", () => openExcludeDialog(true));
    $("exclude-form").addEventListener("submit", submitExclusion);
    $("exclude-cancel").addEventListener("click", () => $("exclude-dialog").close());
    $("remove-form").addEventListener("submit", submitRemoval);
    $("remove-cancel").addEventListener("click", closeRemoveDialog);
    $("remove-dialog").addEventListener("close", () => {
      if (state.dialogReturnFocus && document.body.contains(state.dialogReturnFocus)) state.dialogReturnFocus.focus();
    });
    $("removal-status-dismiss").addEventListener("click", () => {
      for (const [id, removal] of state.removals) if (TERMINAL.has(removal.status)) state.removals.delete(id);
      renderRemovalStatus();
      if (!state.removals.size) $("remove").focus();
    });
    $("removal-status").setAttribute("tabindex", "-1");
    $("page-size").addEventListener("change", (event) => setQuery({ pageSize: Number(event.target.value) || 50 }));
    for (const at of ["", "-top"]) {
      $("prev" + at).addEventListener("click", () => setQuery({ page: Math.max(1, state.query.page - 1) }));
      $("next" + at).addEventListener("click", () => setQuery({ page: state.query.page + 1 }));
    }
    $("refresh").addEventListener("click", () => refreshNow());
    window.addEventListener("hashchange", route);
    $("trail-more").addEventListener("click", () => showTrail(true));
    $("trail-customer").addEventListener("input", () => {
      window.clearTimeout(state.trailTimer);
      state.trailTimer = window.setTimeout(() => { state.trail = []; showTrail(false); }, 250);
    });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      window.clearTimeout(resizeTimer);
      resizeTimer = window.setTimeout(() => {
        if (state.trendPoints && !$("dashboard").hidden) renderTrend(state.trendPoints);
        if (state.activityDays && !$("customer").hidden) renderActivity(clear($("activity")), state.activityDays);
      }, 150);
    });
  }

  // The helpers gdap.js (loaded after this file) builds the GDAP lifecycle view with.
  window.DAM = { $, el, clear, append, api, t, notice, showFailure, fmtNumber, fmtDate, fmtDateTime, roleLabel,
                 state, statusLabel, reasonLabel };

  async function start() {
    state.lang = chooseLanguage();
    applyStaticText();
    wire();
    try {
      const [me, roles] = await Promise.all([api("/api/me"), api("/api/roles")]);
      state.me = me.body;
      state.roles = roles.body;
      $("user").textContent = state.me.name;
    } catch (failure) {
      showFailure(failure);
      renderSummary(null);
      return;
    }
    await loadExclusions();
    route();
    loadTrend();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
