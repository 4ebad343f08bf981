"""Every numeric option of every registered component is bounded, so no config can ask for
unbounded work (epochs 1e9, batch_size 2**62), from the CLI and the web alike."""

import pytest

from search_engine.registry import CATALOGUE, DEFAULT_MAXIMA, ConfigError, create_estimator


def test_every_numeric_option_has_a_maximum():
    missing = [
        f"{section} {name}: {option}"
        for section, registry in CATALOGUE.items()
        for name, info in registry.describe().items()
        for option, described in info["options"].items()
        if described["type"] in ("int", "float") and described["max"] is None
    ]
    assert missing == []


@pytest.mark.parametrize(("option", "value"), [("epochs", 10**9), ("batch_size", 2**62), ("lr", 1e308)])
def test_it_refuses_a_value_over_the_maximum_naming_the_option(option, value):
    with pytest.raises(ConfigError) as caught:
        create_estimator("train", **{option: value})
    assert caught.value.field == option
    assert f"<= {DEFAULT_MAXIMA[option]:g}" in caught.value.reason or str(DEFAULT_MAXIMA[option]) in caught.value.reason
