"""The double-entry ledger: posting, history and the invariant check."""
