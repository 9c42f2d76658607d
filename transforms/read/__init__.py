"""Read: input files -> Arrow batches of *updates*, plus rejects.

An update is what a publisher emitted at one time: a whole text article snapshot, one line of
the update feed, one live-blog post. Splitting updates into blocks is the next step
(`transforms.split`). Supported formats (`--format auto` picks by content, see `sniff`):

- `text`: `date YYYY-MM-DD <headline>` then one block per line (`../shared/data/seed/`).
- `jsonl`: one JSON object per line with `text`, `published_at`, `article_id` or `url`.
- `liveblog`: one JSON object with `documents` (posts with `time` [Y,M,D,h,m], `title`, `text`).
- `headlines-csv`: a headline CSV, optionally zipped (`../shared/data/ruwa/`): `title`, `Date`
  (MM/DD/YYYY), `src`, `Site`, optional `desc`; one update per row.
- `headlines-json`: a JSON array of headlines (`../shared/data/headlines/`): `title`, Unix
  `timestamp`, `link`, `domain`; one update per item.

Example: the JSONL line `{"url": "https://x.org/a", "text": "Shelling.\\nNo casualties.",
"published_at": 1645344000}` gives one update row with article_id `https://x.org/a`,
source `x.org`, published_at 2022-02-20T08:00Z and the two-line text.

Guarantee: every input line (or record, or unusable file) ends as an update row or as a
rejects row with `stage` and a specific `reason`; a bad line never stops the good lines of
the same file. Large JSONL files are read in byte ranges aligned to line starts, so the
work spreads over workers; line numbers stay exact (counted when the ranges are planned).

The parts:
- `formats`: sniffing (`sniff`, `detect`) and the format parsers (rows);
- `planning`: files -> read tasks (`ReadTask`, `split_into_ranges`, `input_problem`);
- `jsonl`: the vectorised Arrow JSONL engine (`read_jsonl_batch`, `ArrowJsonlReader`);
- `batches`: one task's bytes -> (update batch, rejects) (`parse_task`, `rows_to_batch`);
- `fns`: the Beam transform `ReadUpdates` and its DoFns.
"""
from transforms.read.formats import (FORMATS, SNIFF_BYTES, UPDATE_SCHEMA, decode_lines, detect, jsonl_line_row,
                                     read_headlines_csv, read_headlines_json, read_liveblog, read_text_article,
                                     read_whole_file, sniff)
from transforms.read.planning import RANGE_BYTES, ReadTask, input_problem, split_into_ranges
from transforms.read.jsonl import PY_WHITESPACE, ArrowJsonlReader, read_jsonl_batch
from transforms.read.batches import parse_task, rows_to_batch
from transforms.read.fns import ReadUpdates

__all__ = [
    "FORMATS", "SNIFF_BYTES", "UPDATE_SCHEMA", "RANGE_BYTES", "PY_WHITESPACE",
    "sniff", "detect", "decode_lines", "jsonl_line_row", "read_text_article", "read_liveblog",
    "read_headlines_csv", "read_headlines_json", "read_whole_file",
    "ReadTask", "split_into_ranges", "input_problem",
    "ArrowJsonlReader", "read_jsonl_batch", "parse_task", "rows_to_batch", "ReadUpdates",
]
