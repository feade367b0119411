"""client.kb against a real server (no embedding model: full-text search)."""

from __future__ import annotations

import pytest
from helpers import unique

from hilo_client import BadRequest, Client, NotFound

GUIDE = (
    "# Guide\n\n## Install\n\nRun pip install hilo-client.\n\n"
    "## Use\n\nCreate a Client with an API key.\n"
)
FAQ = "# FAQ\n\n## Refunds\n\nRefunds over 100 EUR wait for a person.\n"


def test_knowledge_base(client: Client) -> None:
    coll = unique("kb")
    added = client.kb.add(coll, "guide.md", GUIDE, metadata={"lang": "en"})
    assert added.outcome == "added" and added.embed_tokens == 0
    doc = added.document
    assert (doc.collection, doc.source, doc.format, doc.metadata) == (
        coll,
        "guide.md",
        "markdown",
        {"lang": "en"},
    )
    assert doc.chunks >= 2 and doc.embedding_model is None
    assert client.kb.add(coll, "guide.md", GUIDE, metadata={"lang": "en"}).outcome == "unchanged"
    assert (
        client.kb.add(coll, "guide.md", GUIDE + "\nMore.\n", metadata={"lang": "en"}).outcome
        == "replaced"
    )
    faq = client.kb.add(coll, "faq.txt", FAQ, format="text", metadata={"lang": "es"}).document

    assert [d.source for d in client.kb.documents(coll)] == ["faq.txt", "guide.md"]
    full = client.kb.get_document(doc.id)
    assert full.chunk_list and any("pip install" in c.text for c in full.chunk_list)
    assert [c.position for c in full.chunk_list] == list(range(len(full.chunk_list)))

    found = client.kb.search(coll, "install", top_k=3)
    assert found.ranked_by == ["text"] and found.note  # no embedding model: full text only
    hits = list(found)
    assert hits and hits[0].source == "guide.md" and "install" in hits[0].text.lower()
    assert hits[0].heading == "Guide > Install" and hits[0].document_id == doc.id
    assert client.kb.search(coll, "refunds", mode="text").hits[0].document_id == faq.id
    assert client.kb.search(coll, "refunds", filter={"lang": "en"}).hits == []
    assert client.kb.search(coll, "install", min_score=2.0).hits == []
    with pytest.raises(BadRequest):
        client.kb.search(coll, "install", mode="telepathy")

    [c] = [c for c in client.kb.collections() if c.name == coll]
    assert (c.documents, c.retention_ms) == (2, None)
    assert client.kb.set_retention(coll, 86_400_000).retention_ms == 86_400_000
    assert next(c for c in client.kb.collections() if c.name == coll).retention_ms == 86_400_000
    assert client.kb.set_retention(coll, None).retention_ms is None

    client.kb.delete_document(faq.id)
    with pytest.raises(NotFound) as gone:
        client.kb.get_document(faq.id)
    assert gone.value.code == "KB_NOT_FOUND"
    assert [d.source for d in client.kb.documents(coll)] == ["guide.md"]
    client.kb.delete_collection(coll)
    assert coll not in {c.name for c in client.kb.collections()}
    with pytest.raises(NotFound):
        client.kb.delete_collection(coll)
    with pytest.raises(NotFound):
        client.kb.set_retention(coll, 1000)
