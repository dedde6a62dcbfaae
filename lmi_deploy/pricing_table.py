"""The bundled prices: approximate on-demand USD per instance-hour of SageMaker real-time inference in us-east-1.

Source: the AWS SageMaker pricing page (Real-Time Inference, us-east-1), as recalled on 2026-11-26 without access to
it from this project's machines: approximate, unverified here. Where no SageMaker price was recalled, the EC2
on-demand price of the same type times 1.25 (the ratio of the recalled g5 pairs: ml.g5.2xlarge $1.515 vs
g5.2xlarge $1.212); ``PRICE_BASIS`` says which. Used when the Price List API cannot be asked
(lmi_deploy/live_prices.py), for the README's cost table and ``lmi-deploy recommend``'s ranking.
"""

from __future__ import annotations

PRICES_AS_OF = "2026-11-26"
RECALLED = "recalled from the SageMaker pricing page"
FROM_EC2 = "EC2 on-demand x 1.25"
_RECALLED: dict[str, float] = {
    "ml.g4dn.xlarge": 0.736,
    "ml.g4dn.2xlarge": 0.94,
    "ml.g4dn.4xlarge": 1.505,
    "ml.g4dn.8xlarge": 2.72,
    "ml.g4dn.12xlarge": 4.89,
    "ml.g4dn.16xlarge": 5.44,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.g5.4xlarge": 2.03,
    "ml.g5.8xlarge": 3.06,
    "ml.g5.12xlarge": 7.09,
    "ml.g5.16xlarge": 5.12,
    "ml.g5.24xlarge": 10.18,
    "ml.g5.48xlarge": 20.36,
    "ml.p3.2xlarge": 3.825,
    "ml.p3.8xlarge": 14.688,
    "ml.p3.16xlarge": 28.152,
    "ml.p4d.24xlarge": 37.688,
    "ml.inf2.xlarge": 0.99,
}
# EC2 on-demand, us-east-1 (approximate, recalled likewise), for the types without a recalled SageMaker price.
_EC2_HOURLY_USD: dict[str, float] = {
    "ml.g6.xlarge": 0.805,
    "ml.g6.2xlarge": 0.978,
    "ml.g6.4xlarge": 1.323,
    "ml.g6.8xlarge": 2.014,
    "ml.g6.12xlarge": 4.602,
    "ml.g6.16xlarge": 3.397,
    "ml.g6.24xlarge": 6.675,
    "ml.g6.48xlarge": 13.35,
    "ml.g6e.xlarge": 1.861,
    "ml.g6e.2xlarge": 2.242,
    "ml.g6e.4xlarge": 3.004,
    "ml.g6e.8xlarge": 4.529,
    "ml.g6e.12xlarge": 10.493,
    "ml.g6e.16xlarge": 7.577,
    "ml.g6e.24xlarge": 15.066,
    "ml.g6e.48xlarge": 30.131,
    "ml.p3dn.24xlarge": 31.212,
    "ml.p4de.24xlarge": 40.966,
    "ml.p5.48xlarge": 55.04,
    "ml.p5e.48xlarge": 63.296,
    "ml.p5en.48xlarge": 63.296,
    "ml.inf2.8xlarge": 1.968,
    "ml.inf2.24xlarge": 6.491,
    "ml.inf2.48xlarge": 12.981,
    "ml.trn1.2xlarge": 1.344,
    "ml.trn1.32xlarge": 21.5,
    "ml.trn1n.32xlarge": 24.78,
}
# USD per instance-hour, SageMaker real-time inference, on-demand, us-east-1 (approximate).
US_EAST_1_HOURLY_USD: dict[str, float] = {
    **_RECALLED,
    **{name: round(ec2 * 1.25, 3) for name, ec2 in _EC2_HOURLY_USD.items()},
}
PRICE_BASIS: dict[str, str] = {name: RECALLED if name in _RECALLED else FROM_EC2 for name in US_EAST_1_HOURLY_USD}
