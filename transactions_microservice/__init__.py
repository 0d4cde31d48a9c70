"""MicroPay Transactions service."""
