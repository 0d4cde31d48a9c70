"""Refunds of payments: wallet hold, Stripe refund, capture."""
