"""Two-phase reservations on wallets: create, capture into a refund line, void, expire."""
