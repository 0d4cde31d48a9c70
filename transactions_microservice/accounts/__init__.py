"""Wallets, system accounts and the directory of registered users."""
