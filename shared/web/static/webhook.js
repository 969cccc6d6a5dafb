/* Delegated Admin Monitor portal: the alert webhook card on the Activity page (#/activity).
 *
 * Says whether partner alerts, warnings and digests also go to a webhook (its format and host, from
 * GET /api/webhook; the URL itself is a secret the API never returns), and lets holders of
 * Relationships.Remove post a test message (POST /api/webhook/test). Same rules as app.js, whose
 * helpers it uses through window.DAM: data goes into the page as text only, never as HTML.
 */
"use strict";

(function () {
  const D = window.DAM;
  const { $, api, t } = D;
  const w = { status: null, result: null, busy: false, seq: 0 };

  const canTest = () => !!(D.state.me && D.state.me.canRemove);

  function render() {
    const status = w.status;
    const line = $("webhook-status");
    if (!status) { line.textContent = ""; return; }
    line.textContent = status.configured
      ? t(status.format === "teams" ? "webhookOnTeams" : "webhookOnJson", { host: status.target || "" })
      : t("webhookOff");
    const button = $("webhook-test");
    button.hidden = !(status.configured && canTest());
    button.disabled = w.busy;
    button.textContent = t(w.busy ? "webhookTesting" : "webhookTestButton");
    const result = $("webhook-result");
    if (!w.result) { result.hidden = true; result.textContent = ""; return; }
    result.className = w.result.ok ? "webhook-result ok" : "webhook-result failed";
    result.textContent = w.result.ok
      ? t("webhookTestSent", { detail: w.result.detail })
      : t("webhookTestFailed", { detail: w.result.detail });
    result.hidden = false;
  }

  async function load() {
    const seq = ++w.seq;
    try {
      const answer = await api("/api/webhook");
      if (seq !== w.seq) return;
      w.status = answer.body;
    } catch (failure) {
      if (seq !== w.seq) return;
      w.status = null;
    }
    render();
  }

  async function sendTest() {
    if (w.busy) return;
    w.busy = true;
    w.result = null;
    render();
    try {
      const answer = await api("/api/webhook/test", { body: {} });
      w.result = { ok: true, detail: answer.body.detail || "" };
    } catch (failure) {
      w.result = { ok: false, detail: failure.message || "" };
    }
    w.busy = false;
    render();
    $("webhook-result").focus();
    // The test is in the trail now: app.js reloads the list on its filter's input event.
    $("trail-customer").dispatchEvent(new Event("input"));
  }

  function route() {
    if (window.location.hash === "#/activity") load();
  }

  $("webhook-test").addEventListener("click", sendTest);
  $("webhook-result").setAttribute("tabindex", "-1");
  $("language").addEventListener("change", render);
  window.addEventListener("hashchange", route);
  // app.js knows the signed-in user once /api/me answered: wait for it before showing the button.
  (function whenSignedIn(tries) {
    if (D.state.me || tries > 100) { route(); return; }
    window.setTimeout(() => whenSignedIn(tries + 1), 50);
  })(0);
})();
