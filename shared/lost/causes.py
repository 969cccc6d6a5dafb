"""Who ended a relationship, as far as the data tells (no I/O).

What the product sees is the status it stored before and the status Microsoft reports now:

* GDAP ``expired``: the relationship reached its ``endDateTime`` without auto-extend.
* GDAP ``terminated`` after ``terminationRequested`` / ``terminating`` the product did not request:
  someone at the partner sent the terminate request (Partner Center, another tool). A terminate request
  is the partner's act (https://learn.microsoft.com/graph/api/resources/delegatedadminrelationshiprequest:
  "allows the Microsoft partner administrator to take actions on a relationship such as ... terminating").
* GDAP ``terminated`` straight from ``active``: no terminate request from the partner was seen, so the
  customer (or Microsoft) ended it.
* DAP gone that the product did not remove: the customer removed the partner's roles in the Microsoft 365
  admin center (seed document 000; "Remove roles" under Partner relationships), unless no partner agent
  had used it for 90 days or more. Microsoft asks partners to remove DAP relationships inactive beyond
  90 days (https://learn.microsoft.com/partner-center/developer/list-delegated-admin-customers, "Purpose")
  and its DAP-to-GDAP transition took DAP away from partners; the data cannot tell that removal from the
  customer's, so after 90 days without activity Microsoft's is called the likelier cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.models import NO_AUTO_EXTEND

CUSTOMER = "customer"  # the customer (or, for GDAP, Microsoft) ended it
PARTNER_OUTSIDE = "partnerOutside"  # a terminate request this product did not send
EXPIRED = "expired"  # the end date passed without auto-extend
MICROSOFT_INACTIVITY = "microsoftInactivity"  # DAP gone after 90+ days without partner activity
PRODUCT = "product"  # this product removed it: not lost access
CAUSES = (CUSTOMER, PARTNER_OUTSIDE, EXPIRED, MICROSOFT_INACTIVITY)

DAP_INACTIVITY = timedelta(days=90)
TERMINATING = ("terminationRequested", "terminating")


@dataclass(frozen=True)
class Ending:
    """What the store recorded when access ended (an ``AccessEndings`` row)."""

    type: str  # DAP | GDAP
    before: str
    after: str
    seen_at: datetime
    ends_at: datetime | None = None  # the relationship's endDateTime as Microsoft reports it now
    previous_ends_at: datetime | None = None
    auto_extend_duration: str = ""


@dataclass(frozen=True)
class Cause:
    cause: str
    detail: str
    ended_at: datetime


def ended_at(ending: Ending) -> datetime:
    """Microsoft's stamp of the end when it has one (``endDateTime`` of the GDAP relationship or of the
    DAP customer), else when the sync saw it."""
    if ending.ends_at is not None and ending.ends_at <= ending.seen_at:
        return ending.ends_at
    return ending.seen_at


def infer_cause(ending: Ending, *, product_removal: str | None, last_activity: datetime | None) -> Cause:
    """``product_removal``: the id of this product's removal that ended it, if any; ``last_activity``: the
    latest partner sign-in into the customer, else the relationship's establishment."""
    at = ended_at(ending)
    if product_removal:
        return Cause(PRODUCT, f"removed by this product (removal {product_removal})", at)
    if ending.type == "DAP":
        if last_activity is not None and at - last_activity >= DAP_INACTIVITY:
            days = (at - last_activity).days
            return Cause(
                MICROSOFT_INACTIVITY,
                f"DAP removed outside this product after {days} days without partner activity: most "
                "likely Microsoft's removal of inactive DAP (the customer may also have removed it)",
                at,
            )
        return Cause(
            CUSTOMER,
            "DAP removed outside this product while it was in use: the customer removed the partner's "
            "admin roles",
            at,
        )
    if ending.after == "expired" or (
        ending.previous_ends_at is not None
        and ending.previous_ends_at <= ending.seen_at
        and ending.auto_extend_duration in NO_AUTO_EXTEND
    ):
        return Cause(EXPIRED, "the relationship reached its end date without auto-extend", at)
    if ending.before in TERMINATING:
        return Cause(
            PARTNER_OUTSIDE,
            f"terminated after a terminate request this product did not send (status was {ending.before})",
            at,
        )
    return Cause(
        CUSTOMER,
        "terminated without a terminate request from the partner: the customer (or Microsoft) ended it",
        at,
    )
