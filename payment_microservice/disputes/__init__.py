"""Disputes of payments: what Stripe says of a card holder's chargeback, and its money."""
