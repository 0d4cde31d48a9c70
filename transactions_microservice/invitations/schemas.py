"""Response bodies of invitations."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from transactions_microservice.models import InvitationStatus


class InvitationRead(BaseModel):
    """A transfer waiting for its recipient's email to sign up."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0c7d1f0e-3f7e-4a4c-9d55-7f3f4b2a9e10",
                    "status": "pending",
                    "to_email": "newcomer@example.com",
                    "amount": 2000,
                    "currency": "USD",
                    "description": "Welcome gift",
                    "created_at": "2026-12-05T10:00:00Z",
                    "expires_at": "2026-12-12T10:00:00Z",
                    "resolved_at": None,
                }
            ]
        }
    )

    id: uuid.UUID = Field(description="The transfer's id, once it completes.")
    status: InvitationStatus
    to_email: str
    amount: int
    currency: str
    description: str | None
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
