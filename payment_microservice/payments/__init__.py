"""Card top-ups: create, confirm, settle and read payments."""
