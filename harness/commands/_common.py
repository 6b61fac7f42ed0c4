"""Argument helpers shared by the verbs."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from harness.errors import HarnessError


def parse_assignments(items: list[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``["top_k=200", "b=0.4"]`` -> ``{"top_k": 200, "b": 0.4}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"{flag} expects KEY=VALUE, got {item!r}")
        key = key.strip().replace("-", "_")
        for prefix in ("retriever.", "task."):
            key = key.removeprefix(prefix)
        try:
            out[key] = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            out[key] = value
    return out


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value
