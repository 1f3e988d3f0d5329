"""Rate and CPU-time quotas: the token bucket and the sliding minute window (sandboxd.quotas.rates),
node-local through LocalRates/LocalQuotas; the tenants-file settings that configure them."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandboxd.errors import QuotaExceeded
from sandboxd.quotas.local import LocalQuotas
from sandboxd.quotas.rates import (
    Bucket,
    LocalRates,
    burst,
    cpu_retry_s,
    cpu_used_s,
    take_token,
)
from sandboxd.tenants import TenantsFileError, add_tenant, load_tenants

HASH = "ab" * 32


class Clock:
    def __init__(self, now_s: float = 6000.0) -> None:  # a minute boundary
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_bucket_bursts_then_refills_at_the_rate() -> None:
    bucket, retry = take_token(None, 2.0, 100.0)
    assert retry == 0 and bucket.tokens == pytest.approx(1.0)
    bucket, retry = take_token(bucket, 2.0, 100.0)
    assert retry == 0 and bucket.tokens == pytest.approx(0.0)
    bucket, retry = take_token(bucket, 2.0, 100.0)
    assert retry == pytest.approx(0.5)  # one token per 0.5 s
    bucket, retry = take_token(bucket, 2.0, 100.25)
    assert retry == pytest.approx(0.25)
    bucket, retry = take_token(bucket, 2.0, 100.5)
    assert retry == 0


def test_bucket_never_holds_more_than_its_burst() -> None:
    assert burst(0.2) == 1.0 and burst(50.0) == 50.0
    bucket, _ = take_token(Bucket(0.0, 0.0), 0.2, 10_000.0)
    assert bucket.tokens == pytest.approx(0.0)  # capped at 1, one taken
    _, retry = take_token(bucket, 0.2, 10_000.0)
    assert retry == pytest.approx(5.0)


def test_cpu_window_weighs_the_previous_minute_by_what_is_left_of_it() -> None:
    # 15 s into a minute: 75 % of the previous minute still counts
    assert cpu_used_s(1.0, 4.0, 6015.0) == pytest.approx(4.0)
    assert cpu_retry_s(1.0, 4.0, 6015.0, 10.0) == 0.0
    # at the limit: under it once previous * (1 - t/60) < limit - current, t = 30 s
    assert cpu_retry_s(1.0, 4.0, 6015.0, 3.0) == pytest.approx(15.0)
    # the current minute alone is over: wait for it to become the previous one
    assert cpu_retry_s(5.0, 0.0, 6015.0, 3.0) == pytest.approx(45.0)


def test_local_rates_refuse_with_the_subject_and_a_retry_hint() -> None:
    clock = Clock()
    rates = LocalRates(clock)
    rates.take("t", 0.5)
    with pytest.raises(QuotaExceeded) as refused:
        rates.take("t", 0.5)
    assert refused.value.subject == "tenant:t:executions_per_second"
    assert refused.value.retry_after_s == pytest.approx(2.0)
    rates.take("other", 0.5)  # per tenant
    clock.now_s += 2.0
    rates.take("t", 0.5)


def test_local_cpu_quota_counts_what_was_charged() -> None:
    clock = Clock()
    rates = LocalRates(clock)
    rates.check_cpu("t", 1.0)
    rates.charge_cpu("t", 0.6)
    rates.check_cpu("t", 1.0)
    rates.charge_cpu("t", 0.6)
    with pytest.raises(QuotaExceeded) as refused:
        rates.check_cpu("t", 1.0)
    assert refused.value.subject == "tenant:t:cpu_seconds_per_minute"
    assert refused.value.retry_after_s == pytest.approx(60.0)
    clock.now_s += 60.0 + 15.0  # 1.2 s in the previous minute, 75 % of it counts: 0.9 s
    rates.check_cpu("t", 1.0)
    clock.now_s += 60.0
    rates.charge_cpu("t", 0.1)
    rates.check_cpu("t", 0.2)  # 1.2 s from two minutes ago no longer counts at all


def test_local_quotas_admit_checks_only_the_quotas_a_tenant_has(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    add_tenant(path, "free")
    add_tenant(path, "slow", max_executions_per_second=1)
    tenants = load_tenants(path)
    quotas = LocalQuotas()
    for _ in range(100):
        quotas.admit(tenants["free"])
    quotas.admit(tenants["slow"])
    with pytest.raises(QuotaExceeded):
        quotas.admit(tenants["slow"])


def test_tenants_file_quota_fields_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    add_tenant(path, "a", max_executions_per_second=2.5, max_cpu_seconds_per_minute=30)
    tenant = load_tenants(path)["a"]
    assert tenant.max_executions_per_second == 2.5
    assert tenant.max_cpu_seconds_per_minute == 30.0
    add_tenant(path, "b")
    assert load_tenants(path)["b"].max_executions_per_second is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_executions_per_second = 0", "max_executions_per_second must be > 0"),
        ("max_executions_per_second = -1.5", "max_executions_per_second must be > 0"),
        ("max_executions_per_second = nan", "max_executions_per_second must be > 0"),
        ("max_executions_per_second = 'fast'", "must be a number > 0, got 'fast'"),
        ("max_cpu_seconds_per_minute = true", "must be a number > 0, got True"),
        ("max_cpu_seconds_per_minute = 1e9", "at most 1e+06"),
    ],
)
def test_bad_quota_values_name_the_tenant_and_field(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'[tenants.acme]\nkey_sha256 = "{HASH}"\n{line}\n')
    with pytest.raises(TenantsFileError) as bad:
        load_tenants(path)
    assert message in str(bad.value)
    assert "tenant 'acme'" in str(bad.value)
    assert bad.value.field == line.split(" ")[0]
