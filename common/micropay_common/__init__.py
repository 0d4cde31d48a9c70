"""Shared building blocks of the MicroPay services."""
