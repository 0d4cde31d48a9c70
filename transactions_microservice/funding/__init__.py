"""Money entering and leaving MicroPay by card: top-ups and refunds."""
