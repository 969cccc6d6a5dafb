/* Delegated Admin Monitor portal: the Sign-in evidence card on the dashboard (#/).
 *
 * What the store holds of the sign-in log (GET /api/signins/coverage): the stretches held and the gaps
 * between them, where the sign-ins came from (the Graph sign-in log, the Entra sign-in archive), and the
 * last archive backfill (when, its range, the sign-ins it imported, per container the hours without a
 * blob). Without the archive it says how far back the evidence can reach and how to import older
 * history. A line under the dashboard's coverage line points to the card when there are gaps. Same
 * rules as app.js, whose helpers it uses through window.DAM: data goes into the page as text only.
 */
"use strict";

(function () {
  const D = window.DAM;
  const { $, el, clear, api, t } = D;
  const HOUR = 3600 * 1000;
  const BACKFILL_COMMAND = "python -m shared.cli archive backfill --from …";
  const ev = { status: null, failed: null, evaluatedAt: undefined, seq: 0 };

  // [[from, to], ...] -> the holes between consecutive stretches, [[from, to], ...].
  function gapsOf(coverage) {
    const gaps = [];
    // A stretch ends a microsecond before the next moment it does not hold: the gap starts there.
    const after = (iso) => new Date(Date.parse(iso) + 1).toISOString();
    for (let i = 1; i < coverage.length; i++) gaps.push([after(coverage[i - 1][1]), coverage[i][0]]);
    return gaps;
  }

  function length(from, to) {
    const hours = Math.max(0, (Date.parse(to) - Date.parse(from)) / HOUR);
    if (hours < 48) return t("evidenceHours", { n: D.fmtNumber(Math.round(hours)) });
    return t("evidenceDays", { n: D.fmtNumber(Math.floor(hours / 24)) });
  }

  function stretchItem(pair, kind) {
    return el("li", { ["data-" + kind]: pair[0] },
      t("evidenceRange", { from: D.fmtDateTime(pair[0]), to: D.fmtDateTime(pair[1]) }),
      " ", el("span", { class: "muted" }, "(" + length(pair[0], pair[1]) + ")"));
  }

  // A sentence with the backfill command in it, the command as code.
  function withCommand(key, values) {
    const [before, after] = t(key, values).split("{command}");
    return el("p", { class: "evidence-archive" }, before, el("code", null, BACKFILL_COMMAND), after || "");
  }

  function sourceLine(status) {
    const source = t(status.source === "archive" ? "evidenceSourceArchive" : "evidenceSourceGraph");
    const older = status.lastBackfill && status.source !== "archive" ? t("evidenceOlderFromArchive") : "";
    return el("p", { class: "evidence-source" }, el("strong", null, t("evidenceSource")), " ", source + older);
  }

  function summaryLine(coverage) {
    if (!coverage.length) return el("p", { class: "evidence-summary" }, t("evidenceNone"));
    const range = { from: D.fmtDateTime(coverage[0][0]), to: D.fmtDateTime(coverage[coverage.length - 1][1]) };
    if (coverage.length === 1) return el("p", { class: "evidence-summary" }, t("evidenceOneStretch", range));
    return el("p", { class: "evidence-summary" },
      t("evidenceStretches", { ...range, n: D.fmtNumber(coverage.length), gaps: D.fmtNumber(coverage.length - 1) }));
  }

  function backfillPart(backfill) {
    const missing = Object.entries(backfill.missingHours || {});
    const facts = [
      ["evidenceBackfillAt", D.fmtDateTime(backfill.at)],
      ["evidenceBackfillRange", backfill.from && backfill.to
        ? t("evidenceRange", { from: D.fmtDateTime(backfill.from), to: D.fmtDateTime(backfill.to) }) : "—"],
      ["evidenceBackfillSignIns", D.fmtNumber(backfill.signIns || 0)],
      ["evidenceBackfillBlobs", D.fmtNumber(backfill.blobsRead || 0)],
    ];
    return [
      el("h3", null, t("evidenceBackfillTitle")),
      el("dl", { class: "facts evidence-facts" },
        facts.map(([key, value]) => el("div", { class: "fact" }, el("dt", null, t(key)), el("dd", null, value)))),
      el("p", { class: "evidence-missing-title" }, t("evidenceMissingTitle")),
      missing.length
        ? el("ul", { class: "evidence-list evidence-missing" }, missing.map(([container, n]) =>
          el("li", { "data-container": container }, el("code", null, container), ": ",
            n ? t("evidenceMissingHours", { n: D.fmtNumber(n) }) : t("evidenceMissingNone"))))
        : el("p", { class: "muted" }, t("evidenceMissingNone")),
    ];
  }

  function archivePart(status) {
    const archive = status.archive || {};
    if (!archive.configured) {
      return status.lastBackfill ? el("p", { class: "evidence-archive" }, t("evidenceArchiveOffNow"))
        : withCommand("evidenceArchiveOff");
    }
    if (!status.lastBackfill) {
      return withCommand("evidenceArchiveNoBackfill", { containers: (archive.containers || []).join(", ") });
    }
    return null;
  }

  function render() {
    const card = $("signin-evidence");
    const body = clear($("evidence-body"));
    const note = $("evidence-note");
    if (ev.failed) {
      card.hidden = false;
      note.hidden = true;
      body.appendChild(el("p", { class: "error" }, t("error", { message: ev.failed })));
      return;
    }
    const status = ev.status;
    if (!status) { card.hidden = true; note.hidden = true; return; }
    const coverage = status.coverage || [];
    const gaps = gapsOf(coverage);
    card.hidden = false;
    body.appendChild(sourceLine(status));
    body.appendChild(summaryLine(coverage));
    if (coverage.length) {
      body.appendChild(el("h3", null, t("evidenceStretchesTitle")));
      body.appendChild(el("ul", { class: "evidence-list evidence-stretches" }, coverage.map((p) => stretchItem(p, "stretch"))));
    }
    if (gaps.length) {
      body.appendChild(el("h3", null, t("evidenceGapsTitle", { n: D.fmtNumber(gaps.length) })));
      body.appendChild(el("p", { class: "small muted" },
        t("evidenceGapsLead", { from: D.fmtDateTime(coverage[coverage.length - 1][0]) })));
      body.appendChild(el("ul", { class: "evidence-list evidence-gaps" }, gaps.map((p) => stretchItem(p, "gap"))));
    }
    if (status.lastBackfill) for (const node of backfillPart(status.lastBackfill)) body.appendChild(node);
    const archive = archivePart(status);
    if (archive) body.appendChild(archive);
    if (status.lastIngestionAt) {
      body.appendChild(el("p", { class: "small muted" }, t("evidenceLastIngestion", { at: D.fmtDateTime(status.lastIngestionAt) })));
    }
    note.hidden = !gaps.length;
    $("evidence-note-text").textContent = gaps.length ? t("evidenceNote", { n: D.fmtNumber(gaps.length) }) : "";
  }

  async function load() {
    const seq = ++ev.seq;
    try {
      const answer = await api("/api/signins/coverage");
      if (seq !== ev.seq) return;
      ev.status = answer.body;
      ev.failed = null;
    } catch (failure) {
      if (seq !== ev.seq) return;
      ev.status = null;
      ev.failed = failure.message || String(failure);
    }
    render();
  }

  // app.js calls this after each customer page it loaded: a new evaluation may have ingested more.
  function evaluated(at) {
    if (at === ev.evaluatedAt) return;
    ev.evaluatedAt = at;
    load();
  }

  $("evidence-show").addEventListener("click", () => {
    const title = $("evidence-title");
    title.setAttribute("tabindex", "-1");
    $("signin-evidence").scrollIntoView({ block: "start" });
    title.focus();
  });
  $("language").addEventListener("change", render);
  window.DAM_EVIDENCE = { evaluated: evaluated };
  // app.js may have loaded the dashboard before this file ran.
  if (D.state.page) evaluated(D.state.page.evaluatedAt);
})();
