"""Names and workflow definitions the tests share."""

from __future__ import annotations

import uuid
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parent / "workflows"


def unique(prefix: str) -> str:
    """A name no other test uses: ``prefix_<hex>`` ([a-z0-9_-] as workflow names need)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def steps_workflow(name: str, version: int = 1, comment: str = "") -> str:
    """py_steps under another name (YAML text)."""
    text = (WORKFLOWS / "py_steps.yaml").read_text()
    text = text.replace("name: py_steps", f"name: {name}").replace(
        "version: 1", f"version: {version}"
    )
    return (f"# {comment}\n" if comment else "") + text


def timer_workflow(name: str) -> dict[str, object]:
    """py_timer under another name (a dict)."""
    return {
        "name": name,
        "version": 1,
        "nodes": [
            {"id": "nap", "type": "wait", "duration_ms": 3_600_000},
            {"id": "done", "type": "finish", "output": {"woke": True}},
        ],
        "edges": [{"from": "nap", "to": "done"}],
    }
