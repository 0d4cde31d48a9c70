"""Transfers between users' wallets, by the recipient's email."""
