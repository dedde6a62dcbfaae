"""Where the endpoint's instances attach in a VPC: the given subnets and security groups, or a created group."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from lmi_deploy.config import DeploymentConfig


class EndpointNetwork(Construct):
    """The endpoint's subnets and security groups (Model ``VpcConfig``).

    Without ``vpc_security_group_ids`` a security group is created in ``vpc_id``: no inbound rule (SageMaker reaches
    the container over its own network, never through this group) and only HTTPS out, for S3, ECR, CloudWatch and
    Secrets Manager through VPC endpoints or a NAT gateway. DNS to the VPC resolver is not filtered by groups.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self.subnet_ids = list(config.vpc_subnet_ids)
        self.security_group: ec2.CfnSecurityGroup | None = None
        if config.vpc_security_group_ids:
            self.security_group_ids = list(config.vpc_security_group_ids)
        else:
            self.security_group = ec2.CfnSecurityGroup(
                self,
                "SecurityGroup",
                group_description=f"lmi-deploy {config.deployment} endpoint: no inbound, HTTPS out",
                vpc_id=config.vpc_id,
                security_group_egress=[
                    ec2.CfnSecurityGroup.EgressProperty(
                        ip_protocol="tcp",
                        from_port=443,
                        to_port=443,
                        cidr_ip="0.0.0.0/0",
                        description="HTTPS to AWS APIs (S3, ECR, CloudWatch, Secrets Manager)",
                    )
                ],
            )
            self.security_group_ids = [self.security_group.attr_group_id]
