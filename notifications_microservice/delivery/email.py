"""Email through SES `SendEmail`: text and HTML bodies from the stored notification."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from notifications_microservice.aws import describe, error_code
from notifications_microservice.delivery.outcomes import (
    Deferred,
    Failed,
    Lease,
    LeaseExpiring,
    Result,
    Retry,
    Sent,
    call_in_thread,
)
from notifications_microservice.delivery.repository import Claimed
from notifications_microservice.settings import NotificationsSettings

# SES errors that the same message would meet again; anything else (throttling, 5xx, network)
# is retried on the schedule.
PERMANENT_ERRORS = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerified",
        "MailFromDomainNotVerifiedException",
        "InvalidParameterValue",
        "ConfigurationSetDoesNotExist",
        "ConfigurationSetDoesNotExistException",
    }
)


class EmailSender:
    """Sends stored emails from SES_SENDER."""

    def __init__(self, ses: Any, settings: NotificationsSettings) -> None:
        self.ses = ses
        self.settings = settings

    async def send(self, row: Claimed, lease: Lease) -> Result:
        """Send one email; a permanent SES error fails it, anything else is retried."""
        if row.recipient is None:
            # Never claimed without one; kept here so a bug cannot send to nobody.
            return Result(Retry("no recipient address known yet"))
        body: dict[str, Any] = {"Text": {"Data": row.body_text, "Charset": "UTF-8"}}
        if row.body_html:
            body["Html"] = {"Data": row.body_html, "Charset": "UTF-8"}
        try:
            response = await call_in_thread(
                lease,
                self.settings.aws_send_budget_seconds,
                self.ses.send_email,
                Source=self.settings.ses_sender,
                Destination={"ToAddresses": [row.recipient]},
                Message={"Subject": {"Data": row.subject, "Charset": "UTF-8"}, "Body": body},
            )
        except LeaseExpiring:
            return Result(Deferred())
        except ClientError as exc:
            if error_code(exc) in PERMANENT_ERRORS:
                return Result(Failed(describe(exc)))
            return Result(Retry(describe(exc)))
        except BotoCoreError as exc:
            return Result(Retry(describe(exc)))
        return Result(Sent(provider_message_id=str(response["MessageId"])))
