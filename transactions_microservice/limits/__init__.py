"""Card-funded risk controls: transfer limits and the settle period of card money."""
