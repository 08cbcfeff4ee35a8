"""The harness that replays the README: it must notice a broken command or a stale output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .walkthrough import (
    README_ADDRESS,
    json_documents,
    marked_blocks,
    missing_line,
    run,
    serve_arguments,
    walkthrough,
)

MARKDOWN = """\
Start it:

<!-- test: grpcurl-serve -->
```sh
bash scripts/serve.sh --no-mcp --store memory://
```

Not run:

```sh
rm -rf /
```

<!-- test: grpcurl-walkthrough -->
```sh
echo "calling 127.0.0.1:50051"
NAME=world
```

<!-- test: expected-output -->
```
calling 127.0.0.1:50051
```

<!-- test: grpcurl-walkthrough -->
```sh
echo "hello $NAME"
```
"""


def test_only_marked_blocks_are_found_and_outputs_attach_to_their_commands() -> None:
    blocks = marked_blocks(MARKDOWN)
    assert serve_arguments(blocks) == ["--no-mcp", "--store", "memory://"]
    steps = walkthrough(blocks)
    assert [s.text for s in steps] == ['echo "calling 127.0.0.1:50051"\nNAME=world\n', 'echo "hello $NAME"\n']
    assert steps[0].expected is not None
    assert steps[0].expected.text == "calling 127.0.0.1:50051\n"
    assert steps[1].expected is None


@pytest.mark.parametrize(
    ("markdown", "complaint"),
    [
        (
            "<!-- test: grpcurl-walkthrough -->\n\n```sh\ntrue\n```\n",
            "must be followed by a fenced code block",
        ),
        ("<!-- test: grpcurl-walkthru -->\n```sh\ntrue\n```\n", "unknown test marker"),
        ("<!-- test: grpcurl-walkthrough -->\n```sh\ntrue\n", "not closed"),
    ],
)
def test_a_misplaced_marker_is_an_error(markdown: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        marked_blocks(markdown)


@pytest.mark.parametrize(
    ("markdown", "complaint"),
    [
        ("<!-- test: grpcurl-walkthrough -->\n```bash\ntrue\n```\n", "must be ```sh"),
        (
            "<!-- test: grpcurl-walkthrough -->\n```sh\ngrpcurl 127.0.0.1:9999 list\n```\n",
            "use 127.0.0.1:50051",
        ),
        ("<!-- test: expected-output -->\n```\nx\n```\n", "without a walk-through block"),
    ],
)
def test_a_bad_walkthrough_block_is_an_error(markdown: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        walkthrough(marked_blocks(markdown))


def test_the_blocks_share_one_shell_and_the_address_is_replaced(tmp_path: Path) -> None:
    session = run(walkthrough(marked_blocks(MARKDOWN)), "127.0.0.1:4242", tmp_path, dict(os.environ), 30)
    assert session.failure() is None
    assert [s.output for s in session.steps] == ["calling 127.0.0.1:4242\n", "hello world\n"]


def test_a_failing_command_stops_the_session_and_names_its_block(tmp_path: Path) -> None:
    markdown = MARKDOWN.replace("NAME=world", "grpcurl-that-does-not-exist list")
    session = run(walkthrough(marked_blocks(markdown)), README_ADDRESS, tmp_path, dict(os.environ), 30)
    failure = session.failure()
    assert failure is not None
    assert "README.md:15" in failure
    assert "exit status 127" in failure
    assert len(session.steps) == 1


def test_a_failing_command_in_a_pipeline_stops_the_session(tmp_path: Path) -> None:
    markdown = MARKDOWN.replace("NAME=world", "false | cat")
    session = run(walkthrough(marked_blocks(markdown)), README_ADDRESS, tmp_path, dict(os.environ), 30)
    assert session.failure() is not None


def test_a_hanging_session_is_killed_at_the_timeout(tmp_path: Path) -> None:
    markdown = MARKDOWN.replace("NAME=world", "sleep 60 &\nwait")
    session = run(walkthrough(marked_blocks(markdown)), README_ADDRESS, tmp_path, dict(os.environ), 1)
    failure = session.failure()
    assert failure is not None
    assert "timed out" in failure


def test_expected_output_is_matched_line_by_line_in_order() -> None:
    output = (
        "ERROR:\n  Code: DeadlineExceeded\n  Message: Deadline Exceeded\n"
        '{\n  "task": {\n    "task_id": "nn4f0zdp3QOkT5_w3Mm1DA",\n'
        '    "created_at": "2026-11-21T23:52:50.423Z",\n    "status": "TASK_STATUS_WORKING"\n  }\n}\n'
    )
    shown = (
        "ERROR:\n  Code: DeadlineExceeded\n  Message: ...\n"
        '{\n  "task": {\n    "task_id": "-A_adq4UvLJd1PvicYAxjA",\n    ...\n'
        '    "status": "TASK_STATUS_WORKING"\n  }\n}\n'
    )
    assert missing_line(shown, output) is None
    stale = shown.replace("TASK_STATUS_WORKING", "TASK_STATUS_COMPLETED")
    assert missing_line(stale, output) == '    "status": "TASK_STATUS_COMPLETED"'
    reordered = '    "status": "TASK_STATUS_WORKING"\n    "task_id": "-A_adq4UvLJd1PvicYAxjA",\n'
    assert missing_line(reordered, output) == '    "task_id": "-A_adq4UvLJd1PvicYAxjA",'


def test_json_documents_reads_a_stream_and_skips_error_text() -> None:
    output = 'ERROR:\n  Code: X\n  1)\t{"@type":"t"}\n{\n  "a": {\n    "b": 1\n  }\n}\n{\n  \n}\n69\n'
    assert json_documents(output) == [{"a": {"b": 1}}, {}]
