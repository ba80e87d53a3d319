"""What every training test can assert about its results: each number is a valid stop key."""

from __future__ import annotations


def assert_every_result_key_can_stop_a_run(result: dict) -> None:
    """Every number a training iteration reports is a key `stop:` accepts (the check that refuses
    misspelled stop keys must not refuse a real one)."""
    from ray.tune.utils import flatten_dict

    from rllib_grsn.checks.stop import reportable

    numbers = [
        key
        for key, value in flatten_dict(result, delimiter="/").items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    bookkeeping = ("config/", "pid")  # the trial's config and process, not results
    refused = [key for key in numbers if not key.startswith(bookkeeping) and not reportable(key)]
    assert not refused, f"result keys a stop criterion would refuse: {refused}"
