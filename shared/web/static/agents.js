/* Delegated Admin Monitor portal: Agents (#/agents).
 *
 * Standing access nobody uses: per partner agent, the last sign-in into any customer, the customers
 * reached in the last 30 and 90 days, the groups that give it access and how many customers each opens
 * (GET /api/agents). Agents idle for AGENT_INACTIVE_DAYS (as far as the stored sign-in log proves) are
 * flagged; holders of Relationships.Remove can remove one from a group behind a confirmation with a
 * reason (POST /api/agents/{userId}/groups/{groupId}/remove), which the server re-checks before acting.
 * Same rules as app.js (whose helpers it uses through window.DAM): data goes into the page as text or
 * attribute values only, never as HTML.
 */
"use strict";

(function () {
  const D = window.DAM;
  const { $, el, clear, api, t, showFailure } = D;

  const view = { report: null, seq: 0, sort: "idle", query: "", pending: null };

  const canRemove = () => !!(D.state.me && D.state.me.canRemove);

  function tOr(key, fallback) {
    const text = t(key);
    return text === key ? fallback : text;
  }

  function name(agent) {
    return agent.displayName || agent.userPrincipalName || agent.userId;
  }

  const SORTS = {
    idle: (a, b) => (b.idle - a.idle) || (b.inactiveForAtLeastDays - a.inactiveForAtLeastDays),
    name: (a, b) => name(a).localeCompare(name(b)),
    lastSignIn: (a, b) => (b.lastSignInAt || "").localeCompare(a.lastSignInAt || ""),
    reach: (a, b) => b.customersReachable - a.customersReachable,
  };

  function groupCell(agent) {
    if (!agent.groups.length) return el("td", { class: "muted" }, t("agentsNoGroups"));
    return el("td", null, el("ul", { class: "agents-groups" }, agent.groups.map((g) => {
      const label = t("agentsGroupOpens", {
        name: g.groupName || g.groupId,
        kind: tOr("agentsKind_" + g.kind, g.kind),
        n: D.fmtNumber(g.customers),
      });
      const item = el("li", { "data-group": g.groupId }, label);
      if (agent.idle && canRemove()) {
        const button = el("button", { type: "button", class: "button secondary small", "data-remove-group": g.groupId,
          "aria-label": t("agentsRemoveFor", { agent: name(agent), group: g.groupName || g.groupId }) },
        t("agentsRemove"));
        button.addEventListener("click", () => ask(agent, g));
        item.appendChild(document.createTextNode(" "));
        item.appendChild(button);
      }
      return item;
    })));
  }

  function render() {
    const host = clear($("agents-rows"));
    const report = view.report;
    if (report === null) return;
    $("agents-count").textContent = t("agentsCount", {
      n: D.fmtNumber(report.summary.agents), idle: D.fmtNumber(report.summary.idle), days: D.fmtNumber(report.inactiveDays) });
    $("agents-coverage").textContent = report.coverageFrom
      ? t("agentsCoverage", { from: D.fmtDate(report.coverageFrom), to: D.fmtDate(report.coverageTo) })
      : t("agentsNoCoverage");
    const q = view.query.trim().toLowerCase();
    const rows = report.agents.filter((a) => !q || [a.userId, a.userPrincipalName || "", a.displayName || "",
      ...a.groups.map((g) => g.groupName || "")].some((v) => v.toLowerCase().indexOf(q) >= 0));
    rows.sort(SORTS[view.sort] || SORTS.idle);
    if (!rows.length) {
      host.appendChild(el("p", { class: "muted" }, t("agentsNone")));
      return;
    }
    const headers = ["agentsColAgent", "agentsColLastSignIn", "agentsColReached", "agentsColIdle", "agentsColGroups", "agentsColFlag"];
    const body = rows.map((a) => el("tr", { "data-agent": a.userId, "data-idle": a.idle ? "true" : "false" },
      el("td", null, el("span", null, name(a)), a.userPrincipalName && a.displayName
        ? el("span", { class: "muted small agents-upn" }, a.userPrincipalName) : null),
      el("td", null, a.lastSignInAt ? D.fmtDateTime(a.lastSignInAt) : t("agentsNoSignIn")),
      el("td", null, t("agentsReached", { d30: D.fmtNumber(a.customersLast30Days), d90: D.fmtNumber(a.customersLast90Days) })),
      el("td", null, t("agentsIdleDays", { n: D.fmtNumber(a.inactiveForAtLeastDays) })),
      groupCell(a),
      el("td", null, a.idle ? el("span", { class: "badge agents-flag" }, t("agentsFlagIdle")) : "—")));
    host.appendChild(el("table", { class: "grid compact agents-table" },
      el("thead", null, el("tr", null, headers.map((h) => el("th", { scope: "col" }, t(h))))),
      el("tbody", null, body)));
  }

  async function load() {
    const seq = ++view.seq;
    const host = clear($("agents-rows"));
    host.appendChild(el("p", { class: "muted" }, t("loading")));
    try {
      const result = await api("/api/agents");
      if (seq !== view.seq) return;
      view.report = result.body;
      render();
    } catch (failure) {
      if (seq !== view.seq) return;
      clear(host).appendChild(el("p", { class: "error" }, t("error", { message: failure.message })));
    }
  }

  function ask(agent, group) {
    view.pending = { agent, group };
    $("agents-remove-intro").textContent = t("agentsRemoveIntro", {
      agent: name(agent), group: group.groupName || group.groupId, n: D.fmtNumber(group.customers),
      days: D.fmtNumber(agent.inactiveForAtLeastDays) });
    $("agents-remove-reason").value = "";
    $("agents-remove-error").hidden = true;
    $("agents-remove-confirm").disabled = true;
    $("agents-remove-dialog").showModal();
    $("agents-remove-reason").focus();
  }

  async function submit(event) {
    event.preventDefault();
    const pending = view.pending;
    const reason = $("agents-remove-reason").value.trim();
    if (!pending || !reason) return;
    const button = $("agents-remove-confirm");
    button.disabled = true;
    const path = "/api/agents/" + encodeURIComponent(pending.agent.userId) + "/groups/" +
      encodeURIComponent(pending.group.groupId) + "/remove";
    try {
      const result = await api(path, { body: { reason: reason, confirm: true } });
      $("agents-remove-dialog").close();
      D.notice(t(result.body.result === "removed" ? "agentsRemoved" : "agentsUnchanged", {
        agent: name(pending.agent), group: pending.group.groupName || pending.group.groupId }), "success");
      load();
    } catch (failure) {
      button.disabled = false;
      if (failure.status === 401 || failure.status === 403) {
        $("agents-remove-dialog").close();
        showFailure(failure);
        return;
      }
      const node = $("agents-remove-error");
      node.textContent = t("error", { message: failure.message });
      node.hidden = false;
    }
  }

  function route(hash) {
    if (!/^#\/agents(?:\?.*)?$/.test(hash)) {
      $("agents-view").hidden = true;
      return false;
    }
    for (const id of ["dashboard", "customer", "trail", "gdap", "lost"]) $(id).hidden = true;
    $("agents-view").hidden = false;
    load();
    return true;
  }

  $("agents-search").addEventListener("input", (e) => { view.query = e.target.value; render(); });
  $("agents-sort").addEventListener("change", (e) => { view.sort = e.target.value; render(); });
  $("agents-remove-reason").addEventListener("input", (e) => {
    $("agents-remove-confirm").disabled = !e.target.value.trim();
  });
  $("agents-remove-form").addEventListener("submit", submit);
  $("agents-remove-cancel").addEventListener("click", () => $("agents-remove-dialog").close());
  $("language").addEventListener("change", () => { if (!$("agents-view").hidden) render(); });
  window.DAM_AGENTS = { route: route };
  if (D.state.me) route(window.location.hash);
})();
