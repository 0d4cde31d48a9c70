"""The local MicroPay stack: PostgreSQL, AWS and Stripe stand-ins, services and gateway."""
