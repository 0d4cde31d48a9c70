"""The number of worker processes per service: option, variable, and the command it runs."""

from __future__ import annotations

import pytest

from stack.__main__ import _overrides, build_parser
from stack.launcher import SERVICES, Stack, StackConfig, StackError


def test_one_worker_per_service_unless_told_otherwise() -> None:
    assert StackConfig.from_env({}).workers == 1
    assert StackConfig.from_env({"MICROPAY_WORKERS": "2"}).workers == 2


def test_the_option_wins_over_the_variable() -> None:
    args = build_parser().parse_args(["run", "--workers", "3"])
    config = StackConfig.from_env({"MICROPAY_WORKERS": "2"}, **_overrides(args))
    assert config.workers == 3
    unset = build_parser().parse_args(["run"])
    assert StackConfig.from_env({"MICROPAY_WORKERS": "2"}, **_overrides(unset)).workers == 2


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_worker_count_that_is_not_a_positive_number_is_refused(value: str) -> None:
    with pytest.raises(StackError, match=r"MICROPAY_WORKERS|at least one worker"):
        StackConfig.from_env({"MICROPAY_WORKERS": value})


def test_every_service_runs_under_uvicorn_with_the_chosen_workers_loop_and_parser() -> None:
    stack = Stack(StackConfig(workers=2))
    for service in SERVICES:
        argv = stack._service_argv(service)
        assert argv[1:4] == ["-m", "uvicorn", SERVICES[service].app]
        for option, value in (("--workers", "2"), ("--loop", "uvloop"), ("--http", "httptools")):
            assert argv[argv.index(option) + 1] == value, (service, option)
