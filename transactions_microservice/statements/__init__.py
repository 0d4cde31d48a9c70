"""Statements: a wallet's opening balance, lines and closing balance over a period."""
