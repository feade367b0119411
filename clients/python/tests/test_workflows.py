"""client.workflows against a real server."""

from __future__ import annotations

import pytest
from helpers import WORKFLOWS, steps_workflow, timer_workflow, unique

from hilo_client import Client, Conflict, NotFound, ValidationFailed


def test_import_text_dict_and_path(client: Client) -> None:
    name = unique("wf_text")
    created = client.workflows.import_(steps_workflow(name))
    assert (created.name, created.version, created.outcome, created.active) == (
        name,
        1,
        "created",
        True,
    )
    # The same definition again: unchanged.
    assert client.workflows.import_(steps_workflow(name)).outcome == "unchanged"

    as_dict = timer_workflow(unique("wf_dict"))
    imported = client.workflows.import_(as_dict)
    assert imported.outcome == "created"
    assert client.workflows.get(str(as_dict["name"])).format == "json"

    # A file: the fixture is there already (conftest imported it), so unchanged.
    assert client.workflows.import_(WORKFLOWS / "py_steps.yaml").outcome == "unchanged"


def test_invalid_workflow_is_validation_failed_with_diagnostics(client: Client) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.workflows.import_("name: broken\nversion: 1\nnodes: []\n")
    e = caught.value
    assert e.status == 422 and e.code == "INVALID_WORKFLOW"
    diagnostics = e.details["diagnostics"]
    assert diagnostics and diagnostics[0]["line"] == 3


def test_changed_content_of_a_stored_version_is_a_conflict(client: Client) -> None:
    name = unique("wf_conflict")
    client.workflows.import_(steps_workflow(name))
    with pytest.raises(Conflict) as caught:
        client.workflows.import_(steps_workflow(name).replace("Doubles a number", "Doubles"))
    # A comment is no change: the definitions are compared, not the texts.
    assert client.workflows.import_(steps_workflow(name, comment="comment")).outcome == "unchanged"
    assert caught.value.code == "VERSION_CONFLICT"


def test_get_versions_activate_export_graph(client: Client) -> None:
    name = unique("wf_versions")
    client.workflows.import_(steps_workflow(name, 1, comment="v1"))
    assert (
        client.workflows.import_(steps_workflow(name, 2, comment="v2"), activate="never").active
        is False
    )
    assert (
        client.workflows.import_(steps_workflow(name, 3, comment="v3"), activate="never").active
        is False
    )

    active = client.workflows.get(name)
    assert (active.version, active.active, active.format) == (1, True, "yaml")
    assert active.definition["name"] == name
    assert client.workflows.get(name, version=2).version == 2

    first = client.workflows.versions(name, limit=2)
    assert [v.version for v in first.items] == [1, 2] and first.next_cursor
    rest = client.workflows.versions(name, limit=2, cursor=first.next_cursor)
    assert [v.version for v in rest] == [3] and rest.next_cursor is None
    assert [v.version for v in client.workflows.iter_versions(name, page_size=1)] == [1, 2, 3]
    assert all(v.nodes == 4 for v in first.items)

    now = client.workflows.activate(name, 3)
    assert (now.version, now.active) == (3, True)
    assert client.workflows.get(name).version == 3

    assert client.workflows.export(name, version=2).startswith("# v2\n")
    assert client.workflows.export(name).startswith("# v3\n")
    assert client.workflows.graph(name).startswith("flowchart")
    assert client.workflows.graph(name, 1, format="dot").startswith(f'digraph "{name}@1"')


def test_list_pages_and_iter(client: Client) -> None:
    prefix = unique("wf_page")
    names = [f"{prefix}_{i}" for i in range(3)]
    for n in names:
        client.workflows.import_(steps_workflow(n))
    first = client.workflows.list(limit=1)
    assert len(first) == 1 and first.next_cursor
    second = client.workflows.list(limit=1, cursor=first.next_cursor)
    assert second.items[0].name > first.items[0].name
    listed = [w.name for w in client.workflows.iter(page_size=2)]
    assert listed == sorted(listed) and len(listed) == len(set(listed))
    assert set(names) <= set(listed) and "py_steps" in listed
    summary = next(w for w in client.workflows.iter() if w.name == names[0])
    assert (summary.active_version, summary.latest_version, summary.versions) == (1, 1, 1)
    assert summary.description == "Doubles a number in a few steps"


def test_delete_refused_while_in_use(client: Client) -> None:
    name = unique("wf_delete")
    client.workflows.import_(
        (WORKFLOWS / "py_approval.yaml").read_text().replace("py_approval", name)
    )
    started = client.executions.start(name, {"amount": 1})
    with pytest.raises(Conflict) as caught:
        client.workflows.delete(name)
    assert caught.value.code == "WORKFLOW_IN_USE"
    client.executions.cancel(started.execution_id)
    assert (
        client.executions.wait(started.execution_id, timeout=60, until_human=False).status
        == "cancelled"
    )
    deleted = client.workflows.delete(name)
    assert (deleted.name, deleted.deleted_versions) == (name, 1)
    with pytest.raises(NotFound) as gone:
        client.workflows.get(name)
    assert gone.value.code == "WORKFLOW_NOT_FOUND"
