"""MicroPay Auth service."""
