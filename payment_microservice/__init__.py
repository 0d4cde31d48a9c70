"""MicroPay Payments service."""
