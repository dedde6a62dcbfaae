"""Today's on-demand price of a SageMaker hosting instance from the AWS Price List API, cached with its date.

``price_for(instance_type, region)`` answers, in this order: a cached answer younger than ``CACHE_DAYS``; the Price
List API (``pricing:GetProducts``, served from us-east-1 and ap-south-1), when credentials allow, stored in the cache;
an older cached answer; the bundled us-east-1 table (``lmi_deploy.pricing_table``), saying why. ``LMI_DEPLOY_PRICES=
bundled`` never asks the API (the tests and offline machines). Nothing here raises for a price it cannot get.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmi_deploy.pricing_table import FROM_EC2, PRICE_BASIS, PRICES_AS_OF, US_EAST_1_HOURLY_USD

PRICE_LIST_REGIONS = ("us-east-1", "ap-south-1")  # the two endpoints of the Price List API
CACHE_DAYS = 7
SWITCH = "LMI_DEPLOY_PRICES"  # "bundled": never ask the API


@dataclass(frozen=True)
class Price:
    instance_type: str
    region: str  # the region the price is for
    hourly_usd: float
    source: str  # "AWS Price List API" or "bundled table"
    as_of: str  # YYYY-MM-DD: when the API answered, or the table's date
    note: str = ""  # why the bundled table (or an old answer) was used

    def label(self) -> str:
        """``us-west-2 on-demand, AWS Price List API 2026-11-30`` (and the note, when there is one)."""
        text = f"{self.region} on-demand, {self.source} {self.as_of}"
        return f"{text}; {self.note}" if self.note else text


def hourly_usd(price_list: list[str], instance_type: str) -> float | None:
    """The on-demand USD per hour of the hosting product for ``instance_type`` in a GetProducts answer."""
    prices = []
    for text in price_list:
        product = json.loads(text)
        attributes = product.get("product", {}).get("attributes", {})
        if attributes.get("instanceName") != instance_type or attributes.get("component") != "Hosting":
            continue
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = float(dimension.get("pricePerUnit", {}).get("USD", "0") or 0)
                if usd > 0 and str(dimension.get("unit", "")).lower() in ("hrs", "hour", "hours"):
                    prices.append(usd)
    return min(prices) if prices else None


def ask(client: Any, instance_type: str, region: str) -> float | None:
    """One GetProducts call: SageMaker hosting, this instance, this region."""
    filters = [
        {"Type": "TERM_MATCH", "Field": field, "Value": value}
        for field, value in (("instanceName", instance_type), ("regionCode", region), ("component", "Hosting"))
    ]
    answer = client.get_products(ServiceCode="AmazonSageMaker", Filters=filters, MaxResults=100)
    return hourly_usd(list(answer.get("PriceList", [])), instance_type)


def default_cache(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmi-deploy" / "prices.json"


def _read(cache: Path) -> dict[str, Any]:
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cached(cache: Path, key: str) -> tuple[float, str] | None:
    """(USD per hour, YYYY-MM-DD) cached for ``key``; None when absent or unreadable (then it is asked again)."""
    entry = _read(cache).get(key)
    try:
        usd, day = float(entry["hourly_usd"]), str(entry["fetched"])  # type: ignore[index]
        datetime.date.fromisoformat(day)
    except (TypeError, KeyError, ValueError):
        return None
    return usd, day


def _store(cache: Path, key: str, usd: float, day: str) -> None:
    data = _read(cache)
    data[key] = {"hourly_usd": usd, "fetched": day}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(cache.name + ".partial")
        partial.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(partial, cache)
    except OSError:
        pass  # an unwritable cache only costs the next call an API request


def _client(region: str) -> Any:
    """A pricing client on the nearer endpoint, or None without credentials (short timeouts, no retries)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    if session.get_credentials() is None:
        return None
    endpoint = "ap-south-1" if region.startswith(("ap-", "me-", "af-")) else "us-east-1"
    config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1})
    return session.client("pricing", region_name=endpoint, config=config)


def _why(error: Exception) -> str:
    code = (getattr(error, "response", None) or {}).get("Error", {}).get("Code") or type(error).__name__
    return f"the Price List API did not answer ({code})"


def price_for(
    instance_type: str,
    region: str,
    *,
    client: Any = None,
    cache: Path | None = None,
    environ: Mapping[str, str] | None = None,
    refresh: bool = False,
    today: datetime.date | None = None,
) -> Price | None:
    """The best price known for ``instance_type`` in ``region``; None when neither the API nor the table has one."""
    environ = os.environ if environ is None else environ
    if environ.get(SWITCH) == "bundled":
        return _bundled(instance_type, region, f"{SWITCH}=bundled")
    cache = cache or default_cache(environ)
    day = today or datetime.date.today()
    key = f"{region}/{instance_type}"
    cached = _cached(cache, key)
    if cached and not refresh and (day - datetime.date.fromisoformat(cached[1])).days < CACHE_DAYS:
        return Price(instance_type, region, cached[0], "AWS Price List API", cached[1])
    try:
        client = client or _client(region)
        usd = ask(client, instance_type, region) if client is not None else None
    except Exception as error:
        usd, why = None, _why(error)
    else:
        why = "no AWS credentials" if client is None else f"the Price List API lists no {instance_type} in {region}"
    if usd is not None:
        _store(cache, key, usd, day.isoformat())
        return Price(instance_type, region, usd, "AWS Price List API", day.isoformat())
    if cached:
        return Price(instance_type, region, cached[0], "AWS Price List API", cached[1], why)
    return _bundled(instance_type, region, why)


def _bundled(instance_type: str, region: str, why: str) -> Price | None:
    bundled = US_EAST_1_HOURLY_USD.get(instance_type)
    if bundled is None:
        return None
    elsewhere = "" if region == "us-east-1" else f", {region} may differ"
    basis = f" ({FROM_EC2})" if PRICE_BASIS.get(instance_type) == FROM_EC2 else ""
    return Price(instance_type, "us-east-1", bundled, "bundled table of", PRICES_AS_OF + basis, why + elsewhere)
