"""The GDAP lifecycle: requests from role templates, approval follow-up, access assignments, expiry and
least privilege, behind ``python -m shared.cli gdap ...``, the HTTP API (``/api/gdap/...``) and the portal
(through :class:`shared.gdap.service.GdapService`), on the same :class:`~shared.services.Services` as
everything else. Every change is written to the ``Actions`` trail (the customer detail's "actions taken").

* ``templates`` (the role templates file), ``catalog`` (templates and partner security groups of a run),
  ``store`` (``GdapRequests``, ``GdapOperations``), ``base`` (GdapError, input checks, the trail entry).
* **Request** (``requests``, ``invitation``, ``reestablish``): a relationship created from a template,
  locked for approval, the invitation link (optionally mailed); remembered with its template, so access
  can be re-established from the same template after a removal.
* **Follow-up** (``follow_up``, ``assignments``): ``approvalPending -> approved -> activating -> active``
  happens at Microsoft; each follow-up creates the template's access assignments once when a request
  turns ``active`` and confirms them, and confirms pending Global Administrator removals.
* **Expiry** (``expiry``, ``digest``): active relationships without auto-extend that end within 30, 7 or
  1 days; a bulk auto-extend with a result per relationship; the partner's daily digest.
* **Least privilege** (``global_admin``, ``least_privilege``): Global Administrator removed in one action
  (a long-running operation, confirmed from the relationship); access assignments whose group's members
  never signed in to that customer within a window.
* ``summary``: what the portal's tiles read; ``service``: the one object the surfaces call.
"""
