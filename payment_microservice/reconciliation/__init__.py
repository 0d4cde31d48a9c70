"""Settling payments and refunds left unfinished, from what Stripe knows."""
