"""Replay the README's grpcurl sessions: find the marked blocks, run them, split the output.

An HTML comment right before a fenced block marks it for the test (GitHub does not
render the comment):

    <!-- test: grpcurl-serve -->         the command that starts the service (its flags are used)
    <!-- test: grpcurl-walkthrough -->   ```sh commands, run in order in one bash session
    <!-- test: expected-output -->       what the walk-through block before it prints
    <!-- test: tokens-tls -->            "Tokens and TLS": the commands (test_tokens_tls.py)
    <!-- test: tokens-tls-refused -->    "Tokens and TLS": `$ ` commands, each with its output

Blocks without a marker are not run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

SERVE = "grpcurl-serve"
WALKTHROUGH = "grpcurl-walkthrough"
EXPECTED_OUTPUT = "expected-output"
# "Tokens and TLS", run by test_tokens_tls.py: its set-up commands, then refused calls and their output.
TOKENS_TLS = "tokens-tls"
TOKENS_TLS_REFUSED = "tokens-tls-refused"
MARKERS = (SERVE, WALKTHROUGH, EXPECTED_OUTPUT, TOKENS_TLS, TOKENS_TLS_REFUSED)

# The address every README command uses; the test substitutes its own service's.
README_ADDRESS = "127.0.0.1:50051"

_MARKER = re.compile(r"^<!--\s*test:\s*([\w-]+)\s*-->$")
_FENCE = re.compile(r"^(`{3,})\s*([\w-]*)\s*$")
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}:\d+\b")
_SEPARATOR = "@@readme-block"


@dataclasses.dataclass
class Block:
    """A fenced block of README.md with the marker before it."""

    marker: str
    language: str
    text: str
    line: int  # of the opening fence, from 1
    expected: Block | None = None  # for a walk-through block: its expected-output block

    def where(self) -> str:
        return f"README.md:{self.line}"


def marked_blocks(markdown: str) -> list[Block]:
    """Every fenced block that comes right after a `<!-- test: ... -->` line."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        marker = _MARKER.match(lines[index].strip())
        index += 1
        if marker is None:
            continue
        name = marker.group(1)
        if name not in MARKERS:
            raise ValueError(f"README.md:{index}: unknown test marker {name!r} (known: {', '.join(MARKERS)})")
        fence = _FENCE.match(lines[index]) if index < len(lines) else None
        if fence is None:
            raise ValueError(f"README.md:{index}: marker {name!r} must be followed by a fenced code block")
        ticks, language = fence.groups()
        start = index + 1
        end = next((i for i in range(start, len(lines)) if lines[i].strip() == ticks), None)
        if end is None:
            raise ValueError(f"README.md:{index + 1}: the code block is not closed")
        text = "".join(line + "\n" for line in lines[start:end])
        blocks.append(Block(name, language, text, index + 1))
        index = end + 1
    return blocks


def serve_arguments(blocks: list[Block]) -> list[str]:
    """The flags of the README's `serve` command (`bash scripts/serve.sh ...` or `taskservice serve ...`)."""
    serve = [b for b in blocks if b.marker == SERVE]
    if len(serve) != 1:
        raise ValueError(f"README.md needs exactly one {SERVE!r} block, found {len(serve)}")
    words = shlex.split(serve[0].text, comments=True)
    for index, word in enumerate(words):
        if word.endswith("serve.sh"):
            return words[index + 1 :]
        if word.endswith("taskservice") and words[index + 1 : index + 2] == ["serve"]:
            return words[index + 2 :]
    raise ValueError(f"{serve[0].where()}: no `scripts/serve.sh` or `taskservice serve` command")


def walkthrough(blocks: list[Block]) -> list[Block]:
    """The walk-through blocks in README order, each with its expected output attached."""
    steps: list[Block] = []
    for block in blocks:
        if block.marker == WALKTHROUGH:
            if block.language != "sh":
                raise ValueError(f"{block.where()}: a walk-through block must be ```sh")
            stray = {a for a in _ADDRESS.findall(block.text) if a != README_ADDRESS}
            if stray:
                raise ValueError(f"{block.where()}: use {README_ADDRESS}, not {sorted(stray)}")
            steps.append(block)
        elif block.marker == EXPECTED_OUTPUT:
            if not steps or steps[-1].expected is not None:
                raise ValueError(f"{block.where()}: expected output without a walk-through block before it")
            if block.language:
                raise ValueError(f"{block.where()}: expected output goes in a plain ``` block")
            steps[-1].expected = block
    return steps


@dataclasses.dataclass
class Step:
    block: Block
    output: str  # stdout and stderr of the block's commands, interleaved as printed


@dataclasses.dataclass
class Session:
    steps: list[Step]
    returncode: int | None  # None: killed at the timeout
    finished: bool  # every block ran to its end

    def failure(self) -> str | None:
        """Why the session failed, with the failing block and what it printed; None when it passed."""
        if self.finished and self.returncode == 0:
            return None
        how = "timed out" if self.returncode is None else f"failed (exit status {self.returncode})"
        if not self.steps:
            return f"the walk-through {how} before its first block"
        last = self.steps[-1]
        return (
            f"the README command block at {last.block.where()} {how}:\n{last.block.text}"
            f"--- it printed ---\n{last.output}"
        )

    def step(self, *needles: str) -> Step:
        """The one step whose commands contain every needle."""
        found = [s for s in self.steps if all(n in s.block.text for n in needles)]
        if len(found) != 1:
            raise AssertionError(f"expected one README block containing {needles}, found {len(found)}")
        return found[0]


def script(steps: list[Block], address: str) -> str:
    """One bash script: every block in order, each announced on stdout, stderr merged in."""
    parts = [
        "set -euo pipefail\n",
        "exec 2>&1\n",
        # Background grpcurl calls left behind by a failing block would hold the output open.
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n",
    ]
    for index, block in enumerate(steps):
        parts.append(f"echo '{_SEPARATOR} {index}'\n")
        parts.append(block.text.replace(README_ADDRESS, address))
    parts.append(f"echo '{_SEPARATOR} end'\n")
    return "".join(parts)


def run(steps: list[Block], address: str, workdir: Path, env: dict[str, str], timeout: float) -> Session:
    """Run the blocks with bash in `workdir`; at most `timeout` seconds."""
    path = workdir / "walkthrough.sh"
    path.write_text(script(steps, address))
    process = subprocess.Popen(
        ["bash", str(path)],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    returncode: int | None
    try:
        output, _ = process.communicate(timeout=timeout)
        returncode = process.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        returncode = None
    finally:
        # Whatever the script started in the background goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return split(steps, output.decode(errors="replace"), returncode)


def split(steps: list[Block], output: str, returncode: int | None) -> Session:
    ran: list[Step] = []
    finished = False
    for line in output.splitlines(keepends=True):
        if line.startswith(_SEPARATOR):
            label = line[len(_SEPARATOR) :].strip()
            if label == "end":
                finished = True
            else:
                ran.append(Step(steps[int(label)], ""))
        elif ran:
            ran[-1].output += line
    return Session(ran, returncode, finished)


# ----------------------------------------------------------- reading outputs

_TIMESTAMP = re.compile(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"')
_ID = re.compile(r"(?<=[\"'])[A-Za-z0-9_-]{22}(?=[\"'])")  # quoted; 128 random bits, URL-safe base64


def normalize(line: str) -> str:
    """A line with what changes from run to run (ids, times, spacing) masked."""
    return _ID.sub("<id>", _TIMESTAMP.sub('"<time>"', " ".join(line.split())))


def missing_line(expected: str, output: str) -> str | None:
    """The first line of `expected` not found, in order, among the lines of `output`.

    Blank lines and `...` lines (elisions) in `expected` match nothing; a line ending
    in `...` matches any line that starts like it; ids, timestamps and spacing are
    ignored.
    """
    have = [normalize(line) for line in output.splitlines()]
    position = 0
    for line in expected.splitlines():
        want = normalize(line)
        if not want or want == "...":
            continue
        if want.endswith("..."):
            prefix = want.removesuffix("...").rstrip()
            found = next((i for i in range(position, len(have)) if have[i].startswith(prefix)), None)
        else:
            found = have.index(want, position) if want in have[position:] else None
        if found is None:
            return line
        position = found + 1
    return None


def json_documents(output: str) -> list[dict[str, Any]]:
    """The JSON documents grpcurl printed, one per message, in order (other text skipped).

    grpcurl starts each message's `{` at the beginning of a line and indents the rest.
    """
    decoder = json.JSONDecoder()
    documents: list[dict[str, Any]] = []
    end = 0
    for start in re.finditer(r"^\{", output, re.MULTILINE):
        if start.start() >= end:
            document, end = decoder.raw_decode(output, start.start())
            documents.append(document)
    return documents
