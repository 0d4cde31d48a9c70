"""Stripe's signed webhooks, applied once each."""
