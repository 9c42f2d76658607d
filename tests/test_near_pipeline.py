"""Near duplicates through the whole pipeline: copies merged with lineage, distinct stories kept."""
from __future__ import annotations

import pytest

from .conftest import query, run_pipeline, write_jsonl

WIRE = ("Russian forces shelled the eastern town of Avdiivka overnight, damaging a water filtration plant "
        "that supplies drinking water to more than 50,000 residents, regional officials said on Tuesday, "
        "adding that repair crews could not reach the site because of continued fighting.")
EDITED = WIRE.replace("damaging", "hitting").replace("continued fighting", "ongoing fighting")
ABRIDGED = " ".join(WIRE.split()[: int(len(WIRE.split()) * 0.75)])
RETYPED = "RUSSIAN FORCES shelled the eastern town of Avdiivka overnight -- damaging a water filtration plant " \
          "that supplies drinking water to more than 50,000 residents , regional officials said on Tuesday, " \
          "adding that repair crews could not reach the site because of continued fighting. (Reuters)"
OTHER = ("Ukrainian officials said on Tuesday that a new water pipeline to Avdiivka would be finished by the end "
         "of the month, funded by an international donor programme for towns near the front line.")


def _feed(path):
    rows = [
        ("wire-1", "wire.example", WIRE, "2023-02-14T06:00:00+00:00"),
        ("paper-1", "paper.example", EDITED, "2023-02-14T07:00:00+00:00"),
        ("paper-2", "daily.example", ABRIDGED, "2023-02-14T08:00:00+00:00"),
        ("paper-3", "herald.example", RETYPED, "2023-02-14T09:00:00+00:00"),
        ("paper-4", "paper.example", OTHER, "2023-02-14T10:00:00+00:00"),
        ("paper-1", "paper.example", EDITED, "2023-02-14T12:00:00+00:00"),  # a re-scrape of paper-1
    ]
    return write_jsonl(path, [{"article_id": a, "source": s, "text": t, "published_at": p} for a, s, t, p in rows])


@pytest.fixture
def feed(shared_runs):
    return shared_runs.inputs("near-feed", lambda folder: _feed(folder / "feed.jsonl"))


def test_copies_merge_into_the_earliest_with_lineage(feed, shared_runs):
    out = shared_runs.run([feed])
    events = query(out, "SELECT article_id, mention_count, cluster_id = event_id FROM events ORDER BY article_id")
    assert events == [("paper-4", 1, True), ("wire-1", 5, True)]
    dups = query(out, "SELECT d.article_id, d.method, d.similarity >= 0.6 FROM duplicates d JOIN events e"
                      " USING (event_id, event_date) WHERE e.article_id = 'wire-1' ORDER BY ALL")
    # the re-scrape of paper-1 follows its kept row into the near cluster
    assert dups == [("paper-1", "near", True), ("paper-1", "near", True), ("paper-2", "near", True),
                    ("paper-3", "near", True)]
    assert query(out, "SELECT sum(near_duplicates), sum(exact_duplicates), sum(blocks_read) FROM quality") == [(4, 0, 6)]


def test_near_dedup_is_deterministic_and_can_be_turned_off(tmp_path, feed, shared_runs):
    run_pipeline([feed], tmp_path / "b")  # a second run of the same input, beside the shared one
    sql = "SELECT * FROM duplicates ORDER BY ALL"
    assert query(shared_runs.run([feed]), sql) == query(tmp_path / "b", sql)
    run_pipeline([feed], tmp_path / "off", "--near", "off")
    assert query(tmp_path / "off", "SELECT count(*) FROM events") == [(5,)]
    assert query(tmp_path / "off", "SELECT method, count(*) FROM duplicates GROUP BY 1") == [("exact", 1)]
