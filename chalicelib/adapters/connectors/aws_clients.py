"""AWS clients for the AWS destinations (Amazon Connect, EventBridge): the hub's shared client
when the resource is in the hub's region, else one of the resource's region, with the same
timeouts and retry mode as the hub's own clients."""

from __future__ import annotations

from typing import Any

from chalicelib.adapters.connectors.base import ConnectorRuntime


def regional_client(runtime: ConnectorRuntime, service: str, region: str | None) -> Any:
    shared = runtime.aws_client(service) if runtime.aws_client is not None else None
    if shared is not None and (region is None or shared.meta.region_name == region):
        return shared
    import boto3
    from botocore.config import Config

    return boto3.client(service, region_name=region, config=Config(
        connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3}))
