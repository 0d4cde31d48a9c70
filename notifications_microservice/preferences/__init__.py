"""Notification preferences: which channels each user receives for each event type."""
