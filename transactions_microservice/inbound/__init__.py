"""Events from other services: registrations, card payments and refunds."""
