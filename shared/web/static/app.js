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

  const state = {
    lang: "en",
    me: null,
    roles: {},
    query: { bucket: null, recommendation: null, q: "", sort: DEFAULT_SORT, page: 1, pageSize: 50 },
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
  const SINGULAR = /(?<![\d.,])(1) (day|customer|relationship|role|removal|agent|sign-in|request|assignment)s\b/g;

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

  function fmtDateTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (isNaN(date.getTime())) return "";
    return new Intl.DateTimeFormat(state.lang === "ja" ? "ja-JP" : "en-GB",
      { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZone: "UTC" })
      .format(date) + " UTC";
  }

  function fmtDate(iso) {
    if (!iso) return "";
    const date = new Date(iso.length === 10 ? iso + "T00:00:00Z" : iso);
    if (isNaN(date.getTime())) return "";
    return new Intl.DateTimeFormat(state.lang === "ja" ? "ja-JP" : "en-GB",
      { year: "numeric", month: "short", day: "numeric", timeZone: "UTC" }).format(date);
  }

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
    for (const [key, value] of Object.entries(extra || {})) params.set(key, value);
    return params.toString();
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
    renderSummary(state.page);
    renderRows();
    renderPager();
    renderSortHeaders();
    renderSelection();
    $("csv").setAttribute("href", "/api/customers?" + queryString({ format: "csv" }));
  }

  function renderSummary(page) {
    const summary = page ? page.summary : null;
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
    for (const tile of document.querySelectorAll(".tile")) {
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
    const roles = el("div", { class: "roles", title: names.join(", ") }, shown.join(", "));
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
      const selected = state.selection.has(row.tenantId);
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
      if (row.excluded) recommendation.appendChild(el("span", { class: "badge excluded" }, t("excluded")));
      const tr = el("tr", { class: selected ? "selected" : null, "data-tenant": row.tenantId, "data-bucket": row.bucket },
        el("td", { class: "col-select" }, checkbox),
        name,
        relationshipCell(row),
        el("td", { class: "num" }, fmtNumber(row.agentsSignedInLastDay)),
        el("td", { class: "num" }, fmtNumber(row.signInsLastDay)),
        el("td", { class: "num" }, fmtNumber(row.daysActive)),
        inactive,
        el("td", { class: "nowrap" }, fmtDateTime(row.lastSignInAt)),
        recommendation);
      body.appendChild(tr);
    }
  }

  function renderPager() {
    const page = state.page;
    if (!page) return;
    const from = page.total ? (page.page - 1) * page.pageSize + 1 : 0;
    const to = Math.min(page.total, page.page * page.pageSize);
    $("range").textContent = t("range", { from: fmtNumber(from), to: fmtNumber(to), total: fmtNumber(page.total) });
    $("page-of").textContent = t("pageOf", { page: fmtNumber(page.page), pages: fmtNumber(page.pages) });
    $("prev").disabled = page.page <= 1;
    $("next").disabled = page.page >= page.pages;
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
    const step = Math.max(1, Math.ceil(points.length / 8));
    points.forEach((p, i) => {
      if (i % step === 0 || i === points.length - 1) {
        const anchor = points.length === 1 ? "middle" : i === 0 ? "start" : i === points.length - 1 ? "end" : "middle";
        chart.appendChild(svg("text", { x: x(i), y: height - 8, class: "axis-label", "text-anchor": anchor }, fmtDate(p.day)));
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
    return Math.max(320, Math.round(host.getBoundingClientRect().width) || 900);
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
  function openRemoveDialog(targets, returnFocus) {
    state.dialogTargets = targets;
    state.dialogReturnFocus = returnFocus;
    $("remove-intro").textContent = t("dialogIntro", { n: fmtNumber(targets.length) });
    const list = clear($("remove-list"));
    for (const target of targets) {
      list.appendChild(el("li", null, el("span", { class: "name" }, target.displayName), " ",
                          el("span", { class: "mono muted" }, target.tenantId)));
    }
    $("remove-ack").checked = false;
    $("remove-reason").value = "";
    $("remove-confirm").disabled = true;
    $("remove-confirm").textContent = t("confirmRemove");
    $("remove-error").hidden = true;
    $("remove-dialog").showModal();
    $("remove-ack").focus();
  }

  function closeRemoveDialog() {
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
    const confirm = $("remove-confirm");
    confirm.disabled = true;
    confirm.textContent = t("removing");
    const targets = state.dialogTargets;
    try {
      const result = await api("/api/removals", { body: {
        tenantIds: targets.map((x) => x.tenantId),
        customerNotified: true,
        reason: $("remove-reason").value.trim(),
      } });
      const names = new Map(targets.map((x) => [x.tenantId, x.displayName]));
      for (const removal of result.body.removals) {
        state.removals.set(removal.id, Object.assign({ displayName: names.get(removal.tenantId) || removal.tenantId }, removal));
      }
      for (const target of targets) state.selection.delete(target.tenantId);
      closeRemoveDialog();
      notice(t("accepted", { n: fmtNumber(result.body.removals.length) }), "success");
      renderRemovalStatus();
      renderSelection();
      for (const box of document.querySelectorAll("#rows .row-select")) {
        box.checked = state.selection.has(box.dataset.tenant);
        box.closest("tr").classList.toggle("selected", box.checked);
      }
      renderSelection();
      $("removal-status").focus();
      pollRemovals();
    } catch (failure) {
      error.textContent = failure.status === 403 && failure.code === "forbidden" ? t("forbidden") : t("error", { message: failure.message });
      error.hidden = false;
      confirm.disabled = !$("remove-ack").checked;
      confirm.textContent = t("confirmRemove");
    }
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
        if (why) item.appendChild(el("span", { class: "muted small" }, String(why)));
      }
      list.appendChild(item);
    }
    $("removal-status-done").hidden = pending > 0;
  }

  async function pollRemovals() {
    window.clearTimeout(state.pollTimer);
    const pending = Array.from(state.removals.values()).filter((r) => !TERMINAL.has(r.status)).map((r) => r.id);
    if (!pending.length) return;
    try {
      for (let i = 0; i < pending.length; i += 100) {
        const result = await api("/api/removals?ids=" + encodeURIComponent(pending.slice(i, i + 100).join(",")));
        for (const removal of result.body.removals) {
          const known = state.removals.get(removal.id);
          state.removals.set(removal.id, Object.assign({}, known, removal));
        }
      }
      renderRemovalStatus();
    } catch (failure) { /* keep polling: the status is shown as last known */ }
    if (Array.from(state.removals.values()).some((r) => !TERMINAL.has(r.status))) {
      state.pollTimer = window.setTimeout(pollRemovals, 2000);
    }
  }

  // --- refresh (on-demand audit) -------------------------------------------------------------------
  async function refreshNow() {
    const button = $("refresh");
    button.disabled = true;
    notice(t("refreshRunning"), "info");
    try {
      const result = await api("/api/audit/run", { body: {} });
      await waitForRun(result.body.id);
    } catch (failure) {
      showFailure(failure);
      button.disabled = false;
    }
  }

  async function waitForRun(id) {
    const button = $("refresh");
    try {
      const result = await api("/api/audit/runs/" + encodeURIComponent(id));
      const run = result.body;
      if (run.status === "running") {
        state.refreshTimer = window.setTimeout(() => waitForRun(id), 1500);
        return;
      }
      button.disabled = false;
      if (run.status === "succeeded") {
        await loadCustomers();
        loadTrend();
        notice(t("refreshDone"), "success");
      } else {
        notice(t("refreshFailed", { error: run.error || "" }), "error");
      }
    } catch (failure) {
      button.disabled = false;
      showFailure(failure);
    }
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
    $("customer-remove").hidden = true;
    $("customer-not-monitored").hidden = true;
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
    const removeButton = $("customer-remove");
    removeButton.hidden = !(row && state.me && state.me.canRemove);
    state.detailTarget = row ? { tenantId: c.tenantId, displayName: c.displayName || c.tenantId } : null;

    const facts = clear($("customer-facts"));
    if (row) {
      const fact = (label, value) => [el("div", { class: "fact" }, el("dt", null, label), el("dd", null, value))];
      const proven = inactivity(row, c.evaluation && c.evaluation.coverage);
      append(facts, [
        fact(t("relTypes"), row.relationshipTypes.join(" + ")),
        fact(t("colDaysActive"), fmtNumber(row.daysActive)),
        fact(t("colDaysInactive"), proven.hint ? proven.text + " (" + proven.hint + ")" : proven.text),
        fact(t("colLastSignIn"), fmtDateTime(row.lastSignInAt)),
        fact(t("lastSignInKind"), row.lastSignInKind === "interactive" ? t("kindInteractive")
          : row.lastSignInKind === "nonInteractive" ? t("kindNonInteractive") : ""),
        fact(t("colAgents"), fmtNumber(row.agentsSignedInLastDay)),
        fact(t("colSignIns"), t("signInsSplit", { n: fmtNumber(row.signInsLastDay),
          non: fmtNumber(row.nonInteractiveSignInsLastDay || 0) })),
        fact(t("colRecommendation"), row.recommendation === "remove" ? t("recRemove") : t("recNone")),
        fact(t("outlookTitle"), removalOutlook(row, c.evaluation && c.evaluation.policy, c.evaluation && c.evaluation.asOf)),
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
      changes.appendChild(table([t("actionAt"), t("relName"), t("relStatus")],
        c.changes.slice().reverse().map((x) => [fmtDateTime(x.at), el("td", { class: "mono" }, x.relationship),
          (x.from ? x.from + " → " : "") + x.to])));
    } else {
      changes.appendChild(el("p", { class: "muted" }, t("noChanges")));
    }

    const relationships = $("relationships");
    relationships.appendChild(table(
      [t("relType"), t("relName"), t("relStatus"), t("relEstablished"), t("relEnds"), t("relAutoExtend"), t("relRoles")],
      c.relationships.map((r) => {
        const roles = el("td", { class: "roles-cell" },
          el("div", null, r.roles.map((id, i) => roleLabel(id, r.roleNames[i])).join(", ")));
        if (r.accessAssignments.length) {
          const list = el("ul", { class: "assignments" });
          for (const a of r.accessAssignments) {
            list.appendChild(el("li", null, el("span", { class: "mono" }, t("group", { id: a.groupId })), ": ",
              a.roles.map((id, i) => roleLabel(id, a.roleNames[i])).join(", ") + " (" + a.status + ")"));
          }
          roles.appendChild(el("div", { class: "small muted" }, t("accessAssignments")));
          roles.appendChild(list);
        }
        return [el("td", null, el("span", { class: "badge type-" + r.type.toLowerCase() }, r.type)),
                r.displayName, el("td", null, el("span", { class: "badge status-rel " + (r.active ? "rel-active" : "rel-inactive") }, r.status)),
                fmtDate(r.establishedAt), fmtDate(r.endsAt), r.autoExtend ? t("yes") : t("no"), roles];
      })));

    const actions = $("actions");
    if (c.actions === null) {
      actions.appendChild(el("p", { class: "muted" }, t("actionsUnavailable")));
    } else if (!c.actions.length) {
      actions.appendChild(el("p", { class: "muted" }, t("noActions")));
    } else {
      actions.appendChild(actionsTable(c.actions, false));
    }
    renderAzureRoles($("azure-roles"), c.azureRoles);
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
    const step = Math.max(1, Math.ceil(days.length / 8));
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
        chart.appendChild(svg("text", { x: x + band / 2, y: height - 8, class: "axis-label", "text-anchor": "middle" }, fmtDate(d.day)));
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

  function actionsTable(actions, withCustomer) {
    const headers = [t("actionAt"), ...(withCustomer ? [t("colCustomer")] : []), t("actionWhat"),
      t("actionStatus"), t("actionBy"), t("actionReason")];
    return table(headers, actions.map((a) => [
      el("td", { class: "nowrap" }, fmtDateTime(a.at)),
      ...(withCustomer ? [a.tenantId ? el("td", null, el("a", { href: "#/customers/" + encodeURIComponent(a.tenantId),
        class: "mono" }, a.tenantId)) : el("td", null, "")] : []),
      [actionLabel(a.action), a.relationshipType, a.detail].filter(Boolean).join(" · "),
      el("td", { class: "result result-" + (a.result || "none") }, resultLabel(a.result)),
      a.actor || "",
      a.reason || ""]), "trail-table");
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
    const match = /^#\/customers\/([^/?#]+)$/.exec(window.location.hash);
    if (match) {
      $("trail").hidden = true;
      showCustomer(decodeURIComponent(match[1]));
      return;
    }
    if (window.location.hash === "#/activity") {
      state.trail = [];
      showTrail(false);
      return;
    }
    $("trail").hidden = true;
    const gdap = window.DAM_GDAP;  // gdap.js: the GDAP lifecycle view (#/gdap)
    if (gdap && gdap.route(window.location.hash)) return;
    $("gdap").hidden = true;
    $("customer").hidden = true;
    $("dashboard").hidden = false;
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
    for (const tile of document.querySelectorAll(".tile")) {
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
    $("filter-clear").addEventListener("click", () => setQuery({ bucket: null, recommendation: null }));
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
      $("remove-confirm").disabled = !event.target.checked;
      if (event.target.checked) $("remove-error").hidden = true;
    });
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
    $("prev").addEventListener("click", () => setQuery({ page: Math.max(1, state.query.page - 1) }));
    $("next").addEventListener("click", () => setQuery({ page: state.query.page + 1 }));
    $("refresh").addEventListener("click", refreshNow);
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
                 state };

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
    route();
    loadTrend();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
