"""Mail the partner sends through Graph ``sendMail``: validated as Exchange Online validates it and kept
in the estate's outbox (``GET /_emulator/state`` shows it)."""

from __future__ import annotations

from typing import Any

from .errors import EmulatorError, bad_request, not_found
from .estate_core import SimEstateCore


class MailOutbox(SimEstateCore):
    """``sendMail`` into the outbox (a mixin of the estate)."""

    def send_mail(self, sender: str, body: Any) -> None:
        mailbox = self._mailbox(sender)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object with a 'message'.")
        lowered = {k[:1].lower() + k[1:]: v for k, v in body.items()}
        message = lowered.get("message")
        if not isinstance(message, dict):
            raise EmulatorError(400, "BadRequest", "The 'message' parameter is required.")
        message = _camel_keys(message)
        subject = message.get("subject")
        if not isinstance(subject, str):
            raise EmulatorError(400, "BadRequest", "The message needs a 'subject'.")
        mail_body = message.get("body")
        if not isinstance(mail_body, dict) or not isinstance(mail_body.get("content"), str):
            raise EmulatorError(400, "BadRequest", "The message needs a 'body' with 'content'.")
        ctype = str(mail_body.get("contentType") or "text")
        if ctype.lower() not in ("text", "html"):
            raise EmulatorError(400, "BadRequest", "'body.contentType' must be Text or HTML.")
        recipients = 0
        for key in ("toRecipients", "ccRecipients", "bccRecipients"):
            items = message.get(key) or []
            if not isinstance(items, list):
                raise EmulatorError(400, "ErrorInvalidRecipients", f"'{key}' must be a list of recipients.")
            for rcpt in items:
                address = (
                    (rcpt or {}).get("emailAddress", {}).get("address") if isinstance(rcpt, dict) else None
                )
                if not isinstance(address, str) or "@" not in address:
                    raise EmulatorError(
                        400,
                        "ErrorInvalidRecipients",
                        "At least one recipient is not valid., Recipient is not a valid address.",
                    )
                recipients += 1
        if recipients == 0:
            raise EmulatorError(400, "ErrorInvalidRecipients", "At least one recipient is required.")
        save = lowered.get("saveToSentItems", True)
        if isinstance(save, str):
            save = save.strip().lower() != "false"
        self.outbox.append(
            {"from": mailbox, "message": message, "saveToSentItems": bool(save), "sentDateTime": self.now_ts}
        )

    def _mailbox(self, sender: str) -> str:
        s = sender.strip().lower()
        if s == self.sender_mailbox.lower():
            return self.sender_mailbox
        for a in self.agents:
            if s in (a["id"].lower(), a["userPrincipalName"].lower()):
                return str(a["userPrincipalName"])
        raise not_found(f"The requested user '{sender}' is invalid.", "ErrorInvalidUser")


def _camel_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {(k if k.startswith("@") else k[:1].lower() + k[1:]): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value
