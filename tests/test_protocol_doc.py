"""Every hex dump in docs/protocol.md is a test vector: the doc cannot drift from the code."""

import json
import re
from pathlib import Path

from metrotrace.firmware.metro.wire import record

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "protocol.md").read_text()
VECTORS = json.loads((REPO / "firmware" / "tests" / "vectors.json").read_text())
BLOCK = re.compile(r"```(hex|hex-annotated) (\S+)\n(.*?)```", re.S)
HEX_PAIR = re.compile(r"^[0-9a-f]{2}$")


def vector(path: str) -> str:
    node = VECTORS
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else node[part]
    return node


def block_bytes(style: str, text: str) -> bytes:
    out = []
    for line in text.splitlines():
        for token in line.split():
            if not HEX_PAIR.match(token):
                if style == "hex":
                    raise AssertionError(f"not a hex byte: {token!r}")
                break  # an annotation follows the bytes
            out.append(token)
    return bytes.fromhex("".join(out))


def test_doc_has_a_dump_of_every_kind_and_the_control_frames():
    names = [m.group(2) for m in BLOCK.finditer(DOC)]
    for i in range(len(record.KIND_NAMES)):
        assert f"records.{i}.record" in names
    assert {"records.0.frame", "ack_1007", "time_frame"} <= set(names)


def test_every_hex_dump_matches_its_vector():
    blocks = list(BLOCK.finditer(DOC))
    assert len(blocks) >= 10
    for m in blocks:
        style, path, text = m.groups()
        assert block_bytes(style, text).hex() == vector(path), path


def test_doc_record_fields_match_vectors():
    for i, vec in enumerate(VECTORS["records"]):
        assert f"Fields: `{json.dumps(vec['fields'])}`" in DOC, i
