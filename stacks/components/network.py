"""Where the endpoint's instances attach in a VPC: the given subnets and security groups, or a created group."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from stacks.components.execution_role import ExecutionRole
from stacks.components.nag import NAG_PARTITION

# What SageMaker calls to place the instances in a VPC that takes no resource-level permissions.
DESCRIBE_ACTIONS = [
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterfacePermission",
]
INTERFACE_ACTIONS = ["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface"]


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

    def bind(self, role: ExecutionRole) -> None:
        """What SageMaker needs to attach the instances to the subnets (its VPC documentation's list), each as narrow
        as EC2 allows: interfaces only in these subnets, with these groups."""
        stack = Stack.of(self)
        subnets = [stack.format_arn(service="ec2", resource="subnet", resource_name=i) for i in self.subnet_ids]
        groups = [
            stack.format_arn(service="ec2", resource="security-group", resource_name=i) for i in self.security_group_ids
        ]
        interfaces = stack.format_arn(service="ec2", resource="network-interface", resource_name="*")
        role.allow("DescribeNetwork", DESCRIBE_ACTIONS, ["*"])
        role.allow("UseSubnetsAndGroups", ["ec2:CreateNetworkInterface"], [*subnets, *groups])
        role.allow(
            "ManageInterfacesInSubnets",
            INTERFACE_ACTIONS,
            [interfaces],
            conditions={"ArnEquals": {"ec2:Subnet": subnets}},
        )
        role.acknowledge_wildcard(
            "*",
            "The ec2:Describe* calls SageMaker makes to place the instances in the VPC and "
            "ec2:DeleteNetworkInterfacePermission have no resource-level permissions.",
        )
        role.acknowledge_wildcard(
            f"arn:{NAG_PARTITION}:ec2:{stack.region}:{stack.account}:network-interface/*",
            "SageMaker creates and deletes the instances' network interfaces, whose ids are not known before; "
            "the statement is limited to interfaces in this deployment's subnets (ec2:Subnet condition).",
        )
