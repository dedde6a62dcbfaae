"""Live prices: the Price List API asked (stubbed with botocore's Stubber), cached with its date, the bundled table
as the fallback that says why; and `lmi-deploy cost` on top."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from lmi_deploy.command_line import main
from lmi_deploy.live_prices import price_for

ROOT = Path(__file__).resolve().parent.parent
LIVE = {"LMI_DEPLOY_PRICES": "live"}
DAY = datetime.date(2026, 11, 30)


def product(instance: str, region: str, usd: str, component: str | None = "Hosting") -> str:
    """One GetProducts entry, shaped as the Price List API returns SageMaker's (``component`` None: a row without
    one, as the training-plan upfront fees come)."""
    attributes = {"instanceName": instance, "regionCode": region, "component": component}
    return json.dumps(
        {
            "product": {
                "productFamily": "ML Instance",
                "attributes": {key: value for key, value in attributes.items() if value is not None},
                "sku": "SKU1",
            },
            "terms": {
                "OnDemand": {
                    "SKU1.TERM": {"priceDimensions": {"SKU1.TERM.DIM": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}
                }
            },
        }
    )


def stubbed(*answers: list[str] | str) -> tuple[object, Stubber]:
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    for answer in answers:
        if isinstance(answer, str):
            stub.add_client_error("get_products", service_error_code=answer, http_status_code=400)
        else:
            stub.add_response(
                "get_products",
                {"PriceList": answer, "FormatVersion": "aws_v1"},
                {
                    "ServiceCode": "AmazonSageMaker",
                    "Filters": [
                        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": "ml.g5.12xlarge"},
                        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "eu-west-1"},
                        {"Type": "TERM_MATCH", "Field": "component", "Value": "Hosting"},
                    ],
                    "MaxResults": 100,
                },
            )
    stub.activate()
    return client, stub


def test_the_api_is_asked_for_the_region_then_cached_with_its_date(tmp_path: Path) -> None:
    cache = tmp_path / "prices.json"
    client, stub = stubbed(
        [
            product("ml.g5.12xlarge", "eu-west-1", "7.9560000000"),
            product("ml.g5.12xlarge", "eu-west-1", "0", "Hosting"),
            product("ml.g5.12xlarge", "eu-west-1", "1.5", None),  # not the hosting product: never its price
            product("ml.g5.12xlarge", "eu-west-1", "2.5", "studio-jupyterlab"),
        ]
    )
    price = price_for("ml.g5.12xlarge", "eu-west-1", client=client, cache=cache, environ=LIVE, today=DAY)
    assert price is not None and (price.hourly_usd, price.region, price.as_of) == (7.956, "eu-west-1", "2026-11-30")
    assert price.label() == "eu-west-1 on-demand, AWS Price List API 2026-11-30"
    stub.assert_no_pending_responses()
    assert json.loads(cache.read_text())["eu-west-1/ml.g5.12xlarge"] == {"hourly_usd": 7.956, "fetched": "2026-11-30"}
    # within a week the cache answers (the stub has no more answers: asking would fail) ...
    again = price_for(
        "ml.g5.12xlarge", "eu-west-1", client=client, cache=cache, environ=LIVE, today=DAY + datetime.timedelta(days=6)
    )
    assert again == price
    # ... after it, the API is asked again; when it fails, the old answer is kept, saying so
    client, stub = stubbed("ThrottlingException")
    old = price_for(
        "ml.g5.12xlarge", "eu-west-1", client=client, cache=cache, environ=LIVE, today=DAY + datetime.timedelta(days=8)
    )
    assert old is not None and old.hourly_usd == 7.956 and "did not answer (ThrottlingException)" in old.label()


def test_without_the_api_the_bundled_table_says_why(tmp_path: Path) -> None:
    cache = tmp_path / "prices.json"
    client, _ = stubbed("AccessDeniedException")
    denied = price_for("ml.g5.12xlarge", "eu-west-1", client=client, cache=cache, environ=LIVE, today=DAY)
    assert denied is not None and denied.hourly_usd == 7.09
    assert denied.label() == (
        "us-east-1 on-demand, bundled table of 2026-11-26; the Price List API did not answer (AccessDeniedException), "
        "eu-west-1 may differ"
    )
    client, _ = stubbed([])
    unlisted = price_for("ml.g5.12xlarge", "eu-west-1", client=client, cache=cache, environ=LIVE, today=DAY)
    assert unlisted is not None and "lists no ml.g5.12xlarge in eu-west-1" in unlisted.label()
    assert not cache.exists()  # nothing learned, nothing cached
    cache.write_text('{"eu-west-1/ml.g5.12xlarge": {"hourly_usd": "oops"}}')  # a damaged cache is asked past
    client, _ = stubbed([product("ml.g5.12xlarge", "eu-west-1", "8")])
    assert price_for("ml.g5.12xlarge", "eu-west-1", client=client, cache=cache, environ=LIVE, today=DAY).hourly_usd == 8  # type: ignore[union-attr]
    bundled = price_for("ml.g5.12xlarge", "eu-west-1", cache=cache, environ={"LMI_DEPLOY_PRICES": "bundled"})
    assert bundled is not None and bundled.hourly_usd == 7.09  # the switch wins over the cache
    assert price_for("ml.x9.unknown", "us-east-1", environ={"LMI_DEPLOY_PRICES": "bundled"}) is None


def test_no_credentials_is_the_bundled_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    price = price_for("ml.g5.2xlarge", "us-east-1", cache=tmp_path / "p.json", environ=LIVE)
    assert price is not None and price.label() == "us-east-1 on-demand, bundled table of 2026-11-26; no AWS credentials"


@pytest.fixture
def eu_price(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, Stubber]:
    """Prices asked live, cached under tmp_path; a stubbed client that knows ml.g5.12xlarge in eu-west-1."""
    monkeypatch.setenv("LMI_DEPLOY_PRICES", "live")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return stubbed([product("ml.g5.12xlarge", "eu-west-1", "7.956")])


def test_cost_command_prices_the_deployment_from_the_api(
    eu_price: tuple[object, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    from lmi_deploy.commands import cost

    client, _ = eu_price
    assert cost.main(["-c", "region=eu-west-1", "-c", "autoscaling_max_instances=2", "--json"], pricing=client) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["hourly_usd"], answer["source"], answer["region"]) == (7.956, "AWS Price List API", "eu-west-1")
    assert answer["max_monthly_usd"] == round(2 * 7.956 * 730, 2)
    assert main(["cost", "-c", "region=eu-west-1"]) == 0  # the cached answer, by the command line
    assert "at ~$7.956/h (eu-west-1 on-demand, AWS Price List API " in capsys.readouterr().out
    assert main(["cost", "--bundled"]) == 0
    assert "(us-east-1 on-demand, bundled table of 2026-11-26; LMI_DEPLOY_PRICES=bundled)" in capsys.readouterr().out


def test_validate_and_synth_report_print_the_live_price(
    eu_price: tuple[object, Stubber], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmi_deploy import live_prices
    from lmi_deploy.config import load_config
    from lmi_deploy.report import report_lines

    client, stub = eu_price
    monkeypatch.setattr(live_prices, "_client", lambda region: client)
    assert main(["validate", "-c", "region=eu-west-1", "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert notes[-1].startswith("cost: about 1 x ml.g5.12xlarge at ~$7.956/h (eu-west-1 on-demand, AWS Price List API ")
    stub.assert_no_pending_responses()  # asked once; synth's report below reads the cache
    lines = report_lines(load_config({"region": "eu-west-1"}))
    assert "~$7.956/h (eu-west-1 on-demand, AWS Price List API" in lines[-1]
