"""One client for a deployed endpoint (boto3 ``sagemaker-runtime``) or a local URL, used by invoke and benchmark."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit


class EndpointError(Exception):
    """The endpoint answered an error: the container's original status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Client(Protocol):
    def invoke(self, payload: Any) -> Any: ...

    def stream(self, payload: Any) -> Iterator[bytes]: ...


class UrlClient:
    """POST /invocations on a local (or any) URL; one keep-alive connection per thread.

    ``headers`` go with every request, e.g. ``X-Amzn-SageMaker-Target-Model`` for a local multi-model endpoint.
    """

    def __init__(self, url: str, timeout: float = 300, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _post(self, payload: Any) -> http.client.HTTPResponse:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.headers}
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            connection = self._connection()
            try:
                connection.request("POST", "/invocations", body=body, headers=headers)
                return connection.getresponse()
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def invoke(self, payload: Any) -> Any:
        response = self._post(payload)
        data = response.read()
        if response.status >= 300:
            raise EndpointError(response.status, data.decode(errors="replace"))
        return json.loads(data) if data else None

    def stream(self, payload: Any) -> Iterator[bytes]:
        response = self._post(payload)
        if response.status >= 300:
            raise EndpointError(response.status, response.read().decode(errors="replace"))
        while chunk := response.read1(65536):
            yield chunk


class SageMakerClient:
    """``InvokeEndpoint`` / ``InvokeEndpointWithResponseStream`` on a deployed endpoint.

    ``target_model`` (a multi-model endpoint's ``TargetModel``) or ``inference_component`` (an
    ``InferenceComponentName``) names one of the endpoint's models.
    """

    def __init__(
        self,
        runtime: Any,
        endpoint_name: str,
        *,
        target_model: str | None = None,
        inference_component: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.endpoint_name = endpoint_name
        self.target: dict[str, str] = {}
        if target_model:
            self.target["TargetModel"] = target_model
        if inference_component:
            self.target["InferenceComponentName"] = inference_component

    def _error(self, error: Exception) -> EndpointError:
        response = getattr(error, "response", {}) or {}
        status = int(
            response.get("OriginalStatusCode") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        )
        message = response.get("OriginalMessage") or response.get("Error", {}).get("Message") or str(error)
        return EndpointError(status, str(message))

    def invoke(self, payload: Any) -> Any:
        try:
            response = self.runtime.invoke_endpoint(
                EndpointName=self.endpoint_name,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps(payload).encode(),
                **self.target,
            )
        except Exception as error:
            raise self._error(error) from None
        data = response["Body"].read()
        try:
            return json.loads(data)
        except ValueError:
            return data.decode(errors="replace")

    def stream(self, payload: Any) -> Iterator[bytes]:
        if "TargetModel" in self.target:
            raise ValueError(
                "a multi-model endpoint does not stream: InvokeEndpointWithResponseStream takes no TargetModel"
            )
        try:
            response = self.runtime.invoke_endpoint_with_response_stream(
                EndpointName=self.endpoint_name,
                ContentType="application/json",
                Body=json.dumps(payload).encode(),
                **self.target,
            )
        except Exception as error:
            raise self._error(error) from None
        for event in response["Body"]:
            if "PayloadPart" in event:
                yield event["PayloadPart"]["Bytes"]
            elif "ModelStreamError" in event:
                raise EndpointError(
                    int(event["ModelStreamError"].get("ErrorCode") or 424),
                    str(event["ModelStreamError"].get("Message")),
                )


def payload(prompts: list[str], parameters: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    """The seed's request: ``{"inputs": [...], "parameters": {...}}`` (``"stream": true`` for streamed output)."""
    body: dict[str, Any] = {"inputs": prompts, "parameters": parameters}
    if stream:
        body["stream"] = True
    return body


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["max_new_tokens=64", "do_sample=true"]`` -> ``{"max_new_tokens": 64, "do_sample": True}`` (JSON values)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--param {pair!r} must look like KEY=VALUE, e.g. --param max_new_tokens=64")
        try:
            result[key] = json.loads(value)
        except ValueError:
            result[key] = value
    return result


def with_adapter(payload: Any, adapter: str) -> Any:
    """The request naming a LoRA adapter as LMI reads it: ``"adapters"``, one name per input."""
    if not isinstance(payload, dict):
        return payload
    inputs = payload.get("inputs")
    return {**payload, "adapters": [adapter] * len(inputs) if isinstance(inputs, list) else adapter}


class AdapterClient:
    """Every request through ``client`` names ``adapter`` in its body (a single-model endpoint's adapters)."""

    def __init__(self, client: Client, adapter: str) -> None:
        self.client = client
        self.adapter = adapter

    def invoke(self, payload: Any) -> Any:
        return self.client.invoke(with_adapter(payload, self.adapter))

    def stream(self, payload: Any) -> Iterator[bytes]:
        return self.client.stream(with_adapter(payload, self.adapter))
