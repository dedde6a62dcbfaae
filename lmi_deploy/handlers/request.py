"""Request bodies: parsing, per-parameter bounds, the per-request deadline, and the JSON answers."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

_TYPES: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "bool": bool}
# (smaller, larger): the first may not exceed the second
_ORDERED = (("min_new_tokens", "max_new_tokens"), ("min_length", "max_length"))


class BadRequest(ValueError):
    """The request cannot be served as sent; the message tells the caller what to change."""


class DeadlineExceeded(RuntimeError):
    """Generation ran past option.request_timeout and was stopped."""


class Deadline:
    """When a request must stop generating: at its deadline, or as soon as its client has gone.

    The local runtime's ``Input.is_cancelled`` says the client disconnected; the container has no such signal, so
    there only the deadline applies.
    """

    def __init__(self, inputs: Any, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.cancelled = getattr(inputs, "is_cancelled", None)
        self.reason = ""

    def expired(self) -> bool:
        if not self.reason:
            if time.monotonic() >= self.at:
                self.reason = "deadline"
            elif self.cancelled is not None and self.cancelled():
                self.reason = "cancelled"
        return bool(self.reason)

    def check(self, generated: int) -> None:
        """Raise DeadlineExceeded if generation was cut by the deadline (a cancelled request has nobody to tell)."""
        if self.reason == "deadline":
            raise DeadlineExceeded(
                f"generation stopped at the {self.seconds:g} s request deadline (option.request_timeout) after "
                f"{generated} tokens: ask for fewer max_new_tokens, or raise request_timeout"
            )


class RequestRules:
    """What one deployment accepts: its parameters with their bounds, how many prompts and how long."""

    def __init__(
        self,
        parameters: dict[str, list[str]],
        bounds: dict[str, list[float]],
        lowest_excluded: list[str],
        max_sequence_length: int,
        max_inputs: int,
        chars_per_token: int,
    ) -> None:
        self.parameters = parameters  # request parameter -> (engine argument, type)
        self.bounds = bounds  # request parameter -> [lowest, highest]
        self.lowest_excluded = set(lowest_excluded)
        self.max_sequence_length = max_sequence_length
        self.max_inputs = max_inputs
        self.chars_per_token = chars_per_token

    def parse(self, body: Any, chars_per_token: int = 0) -> tuple[list[str], dict[str, Any]]:
        """Prompts and engine keyword arguments from a request body, or BadRequest.

        A prompt longer than ``max_sequence_length * chars_per_token`` characters cannot fit and is refused
        untokenized (``chars_per_token`` 0: the deployment's ceiling).
        """
        if not isinstance(body, dict) or "inputs" not in body:
            raise BadRequest('expected a JSON object {"inputs": "text" or ["text", ...], "parameters": {...}}')
        prompts = self._prompts(body["inputs"], chars_per_token or self.chars_per_token)
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest('"parameters" must be a JSON object')
        unknown = sorted(set(parameters) - set(self.parameters))
        if unknown:
            raise BadRequest(f"unsupported parameter(s) {unknown}; supported: {sorted(self.parameters)}")
        values = {name: self._coerce(name, value, self.parameters[name][1]) for name, value in parameters.items()}
        _check_together(values)
        return prompts, {self.parameters[name][0]: value for name, value in values.items()}

    def _prompts(self, prompts: Any, chars_per_token: int) -> list[str]:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise BadRequest('"inputs" must be a string or a non-empty list of strings')
        if len(prompts) > self.max_inputs:
            raise BadRequest(
                f'"inputs" holds {len(prompts)} prompts, more than {self.max_inputs}: send several requests'
            )
        for index, prompt in enumerate(prompts):
            if len(prompt) > self.max_sequence_length * chars_per_token:
                raise BadRequest(
                    f"input {index} is {len(prompt)} characters: more than "
                    f"max_sequence_length={self.max_sequence_length} tokens can hold; shorten it"
                )
        return prompts

    def _coerce(self, name: str, value: Any, kind: str) -> Any:
        if kind == "bool":
            if not isinstance(value, bool):
                raise BadRequest(f"parameter {name!r} must be true or false, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"parameter {name!r} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):  # Python's JSON reads NaN and Infinity
            raise BadRequest(f"parameter {name!r} must be a finite number, got {value!r}")
        if kind == "int" and value != int(value):
            raise BadRequest(f"parameter {name!r} must be a whole number, got {value!r}")
        value = _TYPES[kind](value)
        self._check_range(name, value)
        return value

    def _check_range(self, name: str, value: Any) -> None:
        if name not in self.bounds:
            return
        low, high = self.bounds[name]
        exclusive = name in self.lowest_excluded
        if low < value <= high or (value == low and not exclusive):
            return
        limit = f"{'(' if exclusive else '['}{low}, {high}]"
        why = f"; {high} is this deployment's max_sequence_length" if high == self.max_sequence_length else ""
        raise BadRequest(f"parameter {name!r}={value!r} is out of range: it must be in {limit}{why}")


def _check_together(values: dict[str, Any]) -> None:
    for smaller, larger in _ORDERED:
        if smaller in values and larger in values and values[smaller] > values[larger]:
            raise BadRequest(
                f"parameter {smaller!r}={values[smaller]} is more than {larger!r}={values[larger]}: "
                f"ask for at most {values[larger]}"
            )
    if values.get("do_sample") is True and values.get("temperature") == 0:
        raise BadRequest("parameter 'temperature'=0 cannot sample: give a temperature > 0, or do_sample false")


def request_timeout(properties: dict[str, str], default: float) -> float:
    """option.request_timeout from the properties the server hands over, else the rendered value."""
    return float(properties.get("request_timeout", default))


def read_body(inputs: Any) -> Any:
    """The request's JSON body, or BadRequest."""
    try:
        return json.loads((inputs.get_as_bytes() or b"").decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply to be a request") from None


class Answers:
    """JSON answers built with the ``Output`` class the handler was imported with (djl_python's, per release)."""

    def __init__(self, output_class: Any) -> None:
        self.output_class = output_class

    def error(self, code: int, message: str, error: str) -> Any:
        output = self.output_class(code=code, message=message)
        output.add_property("content-type", "application/json")
        output.add_as_json({"code": code, "message": message, "error": error})
        return output

    def bad_request(self, message: str) -> Any:
        return self.error(400, "Bad Request", message)

    def json(self, payload: Any) -> Any:
        output = self.output_class()
        output.add_property("content-type", "application/json")
        output.add_as_json(payload)
        return output
