"""MicroPay Notifications service."""
