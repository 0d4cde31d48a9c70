"""The pool's password policy as the auth service reads and applies it."""

from __future__ import annotations

import pytest

from auth_microservice.identity import PasswordPolicy

STRICT = PasswordPolicy(
    minimum_length=12,
    require_uppercase=True,
    require_lowercase=True,
    require_numbers=True,
    require_symbols=True,
)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Aa1!short", "minimum_length"),
        ("lowercase-only-1", "require_uppercase"),
        ("UPPERCASE-ONLY-1", "require_lowercase"),
        ("No-Digits-Anywhere", "require_numbers"),
        ("NoSymbolsAtAll123", "require_symbols"),
        ("Has a space in it 1A", None),
        ("Perfectly-Fine-123", None),
    ],
)
def test_the_first_broken_rule_is_named(password, rule):
    broken = STRICT.violation(password)
    assert (broken[0] if broken else None) == rule


def test_rules_the_pool_turns_off_are_not_applied():
    relaxed = PasswordPolicy.from_cognito(
        {
            "MinimumLength": 6,
            "RequireUppercase": False,
            "RequireLowercase": False,
            "RequireNumbers": False,
            "RequireSymbols": False,
        }
    )
    assert relaxed.violation("abcdef") is None
    assert relaxed.violation("abcde") == ("minimum_length", "at least 6 characters")


def test_cognito_defaults_apply_when_the_pool_says_nothing():
    assert PasswordPolicy.from_cognito({}) == PasswordPolicy(
        minimum_length=8,
        require_uppercase=True,
        require_lowercase=True,
        require_numbers=True,
        require_symbols=True,
    )
