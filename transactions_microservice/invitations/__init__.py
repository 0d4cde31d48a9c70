"""Transfers to an email without an account: the amount held until the email signs up (then
the transfer completes), the sender cancels it, or it expires."""
