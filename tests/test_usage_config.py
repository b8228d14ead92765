"""The usage, quotas, metrics and logging sections of the configuration."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import config_from_dict
from bot.errors import ConfigError
from bot.prices import parse_prices

ENV = {"OPENAI_API_KEY": "sk-test"}


def load(**sections: Any) -> Any:
    return config_from_dict(sections, ENV)


def field_of(**sections: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load(**sections)
    return caught.value.path


def test_the_example_price_table_prices_the_default_model() -> None:
    cfg = load()
    price = parse_prices(cfg.usage.prices).get(cfg.openai.model)
    assert price is not None
    assert price.cost(1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cfg.usage.prices_as_of  # the example is dated


@pytest.mark.parametrize(
    ("entry", "index"),
    [
        (["gpt-4o-mini 0.15"], 0),
        (["gpt-4o-mini 0.15 0.60", "x cheap 1"], 1),
        (["gpt-4o-mini -1 0.60"], 0),
        (["a 1 1", "a 2 2"], 1),
    ],
)
def test_a_bad_price_entry_is_named(entry: list[str], index: int) -> None:
    assert field_of(usage={"prices": entry}) == f"usage.prices[{index}]"


def test_a_cost_quota_needs_a_price_for_the_model() -> None:
    quotas = {"person_daily_cost": 1.0}
    assert field_of(usage={"prices": []}, quotas=quotas) == "quotas.person_daily_cost"
    assert load(quotas=quotas).quotas.person_daily_cost == 1.0  # the example prices it


def test_quotas_need_the_ledger() -> None:
    assert field_of(usage={"enabled": False}, quotas={"person_daily_tokens": 5}) == (
        "usage.enabled"
    )


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"quotas": {"person_daily_tokens": -1}}, "quotas.person_daily_tokens"),
        ({"quotas": {"workspace_monthly_cost": "lots"}}, "quotas.workspace_monthly_cost"),
        ({"metrics": {"port": 70000}}, "metrics.port"),
        ({"logging": {"format": "xml"}}, "logging.format"),
    ],
)
def test_bad_values_name_their_field(sections: dict[str, Any], field: str) -> None:
    assert field_of(**sections) == field


def test_metrics_are_off_and_logs_are_text_by_default() -> None:
    cfg = load()
    assert (cfg.metrics.port, cfg.logging.format) == (0, "text")
    assert config_from_dict({}, {**ENV, "METRICS_PORT": "9100"}).metrics.port == 9100
