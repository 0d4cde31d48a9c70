"""Email through SES `SendEmail`: text and HTML bodies from the stored notification.

Each message is one `SendEmail`: SES's bulk call (`SendBulkEmail`) sends one stored SES template
to many destinations, while every message here is already rendered, so it does not fit. Every
send first takes a token from the SES quota's bucket (MaxSendRate).
"""

from __future__ import annotations

from functools import partial

from botocore.exceptions import BotoCoreError, ClientError

from notifications_microservice.aws import describe, error_code
from notifications_microservice.delivery.aws_query import SesApi
from notifications_microservice.delivery.outcomes import (
    Calls,
    Deferred,
    Failed,
    Lease,
    LeaseExpiring,
    Postponed,
    Result,
    Retry,
    Sent,
)
from notifications_microservice.delivery.quotas import (
    THROTTLED_PAUSE_SECONDS,
    SesQuota,
    is_throttled,
)
from notifications_microservice.delivery.repository import Claimed
from notifications_microservice.settings import NotificationsSettings

# SES errors that the same message would meet again; anything else (5xx, network) is retried on
# the schedule, and a rate answer is retried without counting an attempt.
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


DAILY_QUOTA_USED_UP = "SES's 24-hour sending quota is used up"
# SES's message when a send goes over the 24-hour quota (its code is Throttling too).
DAILY_QUOTA_MESSAGE = "daily message quota exceeded"


class EmailSender:
    """Sends stored emails from SES_SENDER, within SES's sending rate."""

    def __init__(
        self, ses: SesApi, settings: NotificationsSettings, quota: SesQuota, calls: Calls
    ) -> None:
        self.ses = ses
        self.quota = quota
        self.calls = calls
        self.source = settings.ses_sender
        self.budget = settings.aws_send_budget_seconds

    async def send(self, row: Claimed, lease: Lease) -> Result:
        """Send one email; a permanent SES error fails it, anything else is retried."""
        if row.recipient is None:
            # Never claimed without one; kept here so a bug cannot send to nobody.
            return Result(Retry("no recipient address known yet"))
        if self.quota.daily_quota_used_up():
            return Result(Postponed(DAILY_QUOTA_USED_UP, self.quota.refresh_seconds))
        await self.quota.bucket.acquire()
        try:
            send = partial(
                self.ses.send_email,
                source=self.source,
                to=row.recipient,
                subject=row.subject,
                text=row.body_text,
                html=row.body_html,
            )
            message_id = await self.calls.run(lease, self.budget, send)
        except LeaseExpiring:
            return Result(Deferred())
        except ClientError as exc:
            if is_throttled(exc):
                if DAILY_QUOTA_MESSAGE in describe(exc).lower():
                    # Seconds will not help: wait for the next reading of the quota.
                    return Result(Postponed(describe(exc), self.quota.refresh_seconds))
                self.quota.bucket.pause(THROTTLED_PAUSE_SECONDS)
                return Result(Postponed(describe(exc), THROTTLED_PAUSE_SECONDS))
            if error_code(exc) in PERMANENT_ERRORS:
                return Result(Failed(describe(exc)))
            return Result(Retry(describe(exc)))
        except BotoCoreError as exc:
            return Result(Retry(describe(exc)))
        self.quota.count_sent()
        return Result(Sent(provider_message_id=message_id))
