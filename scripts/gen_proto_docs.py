"""Generate docs/proto-reference.md from the comments in proto/mcptasks/v1/*.proto.

    python scripts/gen_proto_docs.py [--out docs/proto-reference.md] [--check]

It compiles the protos with grpc_tools.protoc (`--include_source_info`) and walks
the FileDescriptorSet's source_code_info, so the page is exactly what the comments
say. Every service, RPC, message, field, oneof, enum and enum value must have a
comment: the script lists the ones that have none and fails. With `--check` it
writes nothing and fails when the page is not what it would generate.

Needs grpcio-tools (the venv scripts/generate_protos.sh keeps under .cache/,
which also runs this script).
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PACKAGE = "mcptasks.v1"
DEFAULT_OUT = ROOT / "docs" / "proto-reference.md"
FILE_ORDER = ["mcptasks/v1/task.proto", "mcptasks/v1/task_service.proto", "mcptasks/v1/bridge_service.proto"]

# Field numbers inside descriptor.proto, for source_code_info paths.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM, MESSAGE_ONEOF = 2, 3, 4, 8
ENUM_VALUE = 2
SERVICE_METHOD = 2

FDP = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}
WELL_KNOWN = "https://protobuf.dev/reference/protobuf/google.protobuf/"


@dataclass
class Comments:
    """The comments of one .proto file, by source_code_info path."""

    file: str
    by_path: dict[tuple[int, ...], tuple[str, int]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def get(self, path: tuple[int, ...], what: str) -> str:
        text, line = self.by_path.get(path, ("", 0))
        if not text:
            where = f"proto/{self.file}:{line}" if line else f"proto/{self.file}"
            self.missing.append(f"{where}: {what} has no comment")
        return text


def compile_protos() -> descriptor_pb2.FileDescriptorSet:
    files = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.glob("mcptasks/**/*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "descriptors.pb"
        command = [sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTO_ROOT)]
        command += [f"--descriptor_set_out={out}", "--include_source_info", *files]
        subprocess.run(command, check=True, cwd=PROTO_ROOT)
        descriptors = descriptor_pb2.FileDescriptorSet()
        descriptors.ParseFromString(out.read_bytes())
        return descriptors


def clean(comment: str) -> str:
    """A comment's text: one leading space per line removed, surrounding blank lines dropped."""
    lines = [line[1:] if line.startswith(" ") else line for line in comment.split("\n")]
    return "\n".join(lines).strip()


def comments_of(proto: descriptor_pb2.FileDescriptorProto) -> Comments:
    comments = Comments(proto.name)
    for location in proto.source_code_info.location:
        text = clean(location.leading_comments) or clean(location.trailing_comments)
        comments.by_path[tuple(location.path)] = (text, location.span[0] + 1)
    return comments


def anchor(name: str) -> str:
    """GitHub's anchor for a heading that is just `name`."""
    return name.lower()


def type_link(f: descriptor_pb2.FieldDescriptorProto) -> str:
    if f.type in SCALARS:
        return f"`{SCALARS[f.type]}`"
    full = f.type_name.lstrip(".")
    if full.startswith(PACKAGE + "."):
        short = full[len(PACKAGE) + 1 :]
        return f"[`{short}`](#{anchor(short)})"
    if full.startswith("google.protobuf."):
        return f"[`{full}`]({WELL_KNOWN}#{full.rsplit('.', 1)[1].lower()})"
    return f"`{full}`"


def message_link(type_name: str) -> str:
    full = type_name.lstrip(".")
    short = full[len(PACKAGE) + 1 :] if full.startswith(PACKAGE + ".") else full
    return f"[`{short}`](#{anchor(short)})"


def cell(text: str) -> str:
    """Comment text inside a table cell: one line, paragraphs kept apart, pipes escaped."""
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    return "<br><br>".join(p for p in paragraphs if p).replace("|", "\\|")


def paragraphs(text: str) -> str:
    """Comment text as Markdown paragraphs (lines of a paragraph joined)."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())


def render_service(
    service: descriptor_pb2.ServiceDescriptorProto, path: tuple[int, ...], comments: Comments
) -> list[str]:
    out = [f"### {service.name}", "", f"`proto/{comments.file}`", ""]
    out += [paragraphs(comments.get(path, f"service {service.name}")), ""]
    out += ["| RPC | Request | Response | Description |", "|---|---|---|---|"]
    for index, method in enumerate(service.method):
        text = comments.get((*path, SERVICE_METHOD, index), f"rpc {service.name}.{method.name}")
        request = ("stream " if method.client_streaming else "") + message_link(method.input_type)
        response = ("stream " if method.server_streaming else "") + message_link(method.output_type)
        out.append(f"| `{method.name}` | {request} | {response} | {cell(text)} |")
    return [*out, ""]


def render_enum(
    enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], comments: Comments, prefix: str = ""
) -> list[str]:
    name = prefix + enum.name
    out = [f"#### {name}", "", f"enum · `proto/{comments.file}`", ""]
    out += [paragraphs(comments.get(path, f"enum {name}")), ""]
    out += ["| Value | Number | Description |", "|---|---|---|"]
    for index, value in enumerate(enum.value):
        text = comments.get((*path, ENUM_VALUE, index), f"enum value {name}.{value.name}")
        out.append(f"| `{value.name}` | {value.number} | {cell(text)} |")
    return [*out, ""]


def render_message(
    message: descriptor_pb2.DescriptorProto, path: tuple[int, ...], comments: Comments, prefix: str = ""
) -> list[str]:
    name = prefix + message.name
    out = [f"#### {name}", "", f"message · `proto/{comments.file}`", ""]
    out += [paragraphs(comments.get(path, f"message {name}")), ""]
    real_oneofs = {
        index
        for index, _ in enumerate(message.oneof_decl)
        if any(
            f.HasField("oneof_index") and f.oneof_index == index and not f.proto3_optional
            for f in message.field
        )
    }
    for index, oneof in enumerate(message.oneof_decl):
        if index in real_oneofs:
            text = comments.get((*path, MESSAGE_ONEOF, index), f"oneof {name}.{oneof.name}")
            out += [f"One of `{oneof.name}`: {cell(text)}", ""]
    if message.field:
        out += ["| Field | Number | Type | Description |", "|---|---|---|---|"]
        for index, f in enumerate(message.field):
            text = comments.get((*path, MESSAGE_FIELD, index), f"field {name}.{f.name}")
            kind = type_link(f)
            if f.label == FDP.LABEL_REPEATED:
                kind = f"repeated {kind}"
            elif f.proto3_optional:
                kind = f"optional {kind}"
            if f.HasField("oneof_index") and f.oneof_index in real_oneofs:
                kind += f" (oneof `{message.oneof_decl[f.oneof_index].name}`)"
            out.append(f"| `{f.name}` | {f.number} | {kind} | {cell(text)} |")
    else:
        out.append("No fields.")
    out.append("")
    for index, nested in enumerate(message.nested_type):
        out += render_message(nested, (*path, MESSAGE_NESTED, index), comments, f"{name}.")
    for index, enum in enumerate(message.enum_type):
        out += render_enum(enum, (*path, MESSAGE_ENUM, index), comments, f"{name}.")
    return out


def render(descriptors: descriptor_pb2.FileDescriptorSet) -> tuple[str, list[str]]:
    files = [f for f in descriptors.file if f.package == PACKAGE]
    # Shared types first, then the workers' service, then the others.
    files.sort(key=lambda f: (FILE_ORDER.index(f.name) if f.name in FILE_ORDER else len(FILE_ORDER), f.name))
    all_comments = {f.name: comments_of(f) for f in files}
    services: list[str] = []
    types: list[str] = []
    contents_services: list[str] = []
    contents_types: list[str] = []
    for proto in files:
        comments = all_comments[proto.name]
        for index, service in enumerate(proto.service):
            services += render_service(service, (FILE_SERVICE, index), comments)
            contents_services.append(f"[{service.name}](#{anchor(service.name)})")
        names: list[str] = []
        types += [f"### {proto.name}", ""]
        for index, enum in enumerate(proto.enum_type):
            types += render_enum(enum, (FILE_ENUM, index), comments)
            names.append(enum.name)
        for index, message in enumerate(proto.message_type):
            types += render_message(message, (FILE_MESSAGE, index), comments)
            names.append(message.name)
        contents_types.append(f"- `{proto.name}`: " + ", ".join(f"[{n}](#{anchor(n)})" for n in names))
    header = [
        f"# `{PACKAGE}` reference",
        "",
        "<!-- Generated by scripts/gen_proto_docs.py from the comments in proto/; do not edit.",
        "     Change the .proto comments and run `bash scripts/generate_protos.sh`. -->",
        "",
        "The gRPC contract of mcp-taskservice (the buf module `proto/`). `TaskService` is what",
        "workers call; `BridgeService` is what an MCP bridge calls on behalf of its clients.",
        "MCP payloads travel as `google.protobuf.Struct` / `Value` holding MCP's own JSON;",
        "64-bit integers are JSON strings in grpcurl's output, as protobuf's JSON mapping has them.",
        "",
        "Services: " + ", ".join(contents_services),
        "",
        "Messages and enums, by file:",
        "",
        *contents_types,
        "",
        "## Services",
        "",
    ]
    page = [*header, *services, "## Messages and enums", "", *types]
    text = "\n".join(page).rstrip("\n") + "\n"
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    missing = [m for c in all_comments.values() for m in c.missing]
    return text, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the page to write (or check)")
    parser.add_argument(
        "--check", action="store_true", help="fail when the page is out of date; write nothing"
    )
    args = parser.parse_args(argv)
    text, missing = render(compile_protos())
    shown = args.out.resolve().relative_to(ROOT) if args.out.resolve().is_relative_to(ROOT) else args.out
    status = 0
    if missing:
        print("\n".join(missing), file=sys.stderr)
        print(f"error: {len(missing)} element(s) of the contract have no comment", file=sys.stderr)
        status = 1
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{shown} (committed)",
                f"{shown}",
            )
            sys.stdout.writelines(diff)
            print(f"error: {shown} is out of date: run 'bash scripts/generate_protos.sh'", file=sys.stderr)
            return 1
        if status == 0:
            print(f"ok: {shown} matches proto/")
        return status
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {shown}")
    return status


if __name__ == "__main__":
    sys.exit(main())
