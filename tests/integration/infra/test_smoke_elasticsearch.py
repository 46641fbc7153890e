"""Smoke test: elasticsearch-py against the real node (index, search, data stream, bulk)."""

from __future__ import annotations

from elasticsearch import Elasticsearch, helpers


def test_index_then_search(stack, unique):
    es = Elasticsearch(stack("elasticsearch", "http"))
    try:
        # GET / is not served by the published distribution (see README); ask the node.
        nodes = es.nodes.info()["nodes"]
        assert all(n["version"].startswith("8.") for n in nodes.values())
        es.index(
            index=unique,
            id="a1",
            document={"message": "disk full on node-3", "cluster": "alpha"},
            refresh=True,
        )
        hits = es.search(index=unique, query={"match": {"message": "disk"}})["hits"]
        assert [(h["_id"], h["_source"]["cluster"]) for h in hits["hits"]] == [("a1", "alpha")]
    finally:
        es.indices.delete(index=unique, ignore_unavailable=True)
        es.close()


def test_template_data_stream_and_bulk(stack, unique):
    es = Elasticsearch(stack("elasticsearch", "http"))
    stream = f"logs-smoke-{unique}"
    try:
        es.indices.put_index_template(
            name=unique,
            index_patterns=[f"logs-smoke-{unique}*"],
            data_stream={},
            priority=500,
            template={
                "mappings": {
                    "properties": {"@timestamp": {"type": "date"}, "message": {"type": "text"}}
                }
            },
        )
        actions = [
            {
                "_op_type": "create",
                "_index": stream,
                "_id": f"doc-{i}",
                "@timestamp": 1_700_000_000_000 + i,
                "message": f"line {i}",
            }
            for i in range(50)
        ]
        ok, errors = helpers.bulk(es, actions, refresh=True)
        assert (ok, errors) == (50, [])
        # A replay with the same _id is refused per item (409), not duplicated.
        ok, errors = helpers.bulk(es, actions[:5], refresh=True, raise_on_error=False)
        assert ok == 0
        assert {e["create"]["status"] for e in errors} == {409}
        assert es.count(index=stream)["count"] == 50
        resolved = es.indices.resolve_index(name=stream)
        assert [d["name"] for d in resolved["data_streams"]] == [stream]
        assert resolved["data_streams"][0]["backing_indices"][0].startswith(f".ds-{stream}-")
    finally:
        # The data-streams REST module is not published, so the stream stays (unique name).
        es.close()
