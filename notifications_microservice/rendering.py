"""Messages from Jinja2 templates: subject, push line and text body from `<kind>.txt`, the HTML
body from `<kind>.html` (autoescaped, so user text such as a transfer note cannot inject markup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES_DIR = Path(__file__).with_name("templates")
KINDS = (
    "welcome",
    "payment_succeeded",
    "payment_failed",
    "payment_refunded",
    "payment_refund_failed",
    "payment_dispute_opened",
    "payment_dispute_funds_withdrawn",
    "payment_dispute_funds_reinstated",
    "payment_dispute_closed",
    "transfer_sent",
    "transfer_received",
    "money_request_sent",
    "money_request_received",
    "money_request_paid",
    "money_request_declined",
    "money_request_canceled",
    "money_request_expired",
    "transfer_invitation_sent",
    "transfer_invitation",
    "transfer_invitation_canceled",
    "transfer_invitation_expired",
)
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class RenderedMessage:
    """One notification's texts."""

    subject: str
    push: str
    text: str
    html: str


@cache
def environment() -> Environment:
    """The template environment: HTML autoescaped, undefined variables an error."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        # The templates ship with the image: no look at the files' times on every render.
        auto_reload=False,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _one_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def render_message(kind: str, context: dict[str, Any]) -> RenderedMessage:
    """Render the subject, push line, text and HTML bodies of a message kind."""
    if kind not in KINDS:
        raise ValueError(f"no templates for {kind!r}")
    env = environment()
    text_template = env.get_template(f"{kind}.txt")
    blocks = text_template.new_context(dict(context))

    def block(name: str) -> str:
        return "".join(text_template.blocks[name](blocks))

    subject = _one_line(block("subject"))
    html = env.get_template(f"{kind}.html").render(**context, subject=subject)
    return RenderedMessage(
        subject=subject, push=_one_line(block("push")), text=block("text").strip() + "\n", html=html
    )
