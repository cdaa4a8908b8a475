#!/usr/bin/env python3
"""An independent Python implementation of the LiteStash data contract, version 1.

This program is a test oracle: it knows the on-disk contract
(shared/contract/CONTRACT.md) and nothing about any LiteStash implementation.
It can

* ``verify`` a data dir against the contract and against expected values,
* ``write`` rows into a data dir the way a separate program would,
* ``read`` keys from a data dir,
* ``selftest`` itself against the contract's vectors and fixture.

Values cross the command line as "tagged JSON" (see README.md):

    null / true / false          nil / true / false
    1, -5, 18446744073709551615  integer
    1.5, 1e+100                  float (float64)
    "text"                       UTF-8 text (MessagePack str)
    {"bin": "<base64>"}          bytes (MessagePack bin)
    [ ... ]                      list
    {"map": [[k, v], ...]}       map (keys are scalars)
    {"float": "nan"}             NaN, also "inf" and "-inf"

Inside this program a value is a plain Python object: None, bool, int, float,
str, bytes, list, or MsgMap (a map kept as a list of pairs, so that keys such
as 1, 1.0 and true stay distinct). Only the standard library and the
``msgpack`` package are used; the MessagePack encoder and the strict decoder
are written by hand so that they check the byte-level rules of the contract.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import shutil
import sqlite3
import stat
import string
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, NoReturn

try:
    import msgpack
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("contract.py needs the 'msgpack' package (pip install msgpack)")


# ---------------------------------------------------------------------------
# Contract constants
# ---------------------------------------------------------------------------

CONTRACT_VERSION = 1
APPLICATION_ID = 1280527190  # 0x4C534B56, "LSKV"
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 64 * 1024 * 1024
# A value is nested at most MAX_DEPTH levels: every list or map on the way
# from the top of the value down counts one level, the outermost one included.
# So a bare scalar is depth 0, [] is depth 1 and [[]] is depth 2.
MAX_DEPTH = 512
# Timestamps before 2000-01-01 or more than a day ahead are not "sane".
MIN_TIMESTAMP = 946684800
MAX_TIMESTAMP_AHEAD = 86400
BUSY_TIMEOUT_SECONDS = 60.0

# The encoder, the decoder and canonical() recurse once per nesting level and
# use a few Python frames per level; 512 levels need more than the default
# limit of 1000 frames.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * MAX_DEPTH))

BASE64URL_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
LETTER_PAIRS = ("ab", "cd", "ef", "gh", "ij", "kl", "mn", "op", "qr", "st", "uv", "wx", "yz")
SHARDS = ("tables_03", "tables_47", "tables_89hu") + tuple(f"tables_{p}" for p in LETTER_PAIRS)

# The five columns of every data table: name and declared type, in order.
COLUMNS = (
    ("key_hash", "VARCHAR"),
    ("key", "VARCHAR"),
    ("value", "BLOB"),
    ("timestamp", "INTEGER"),
    ("microsecond", "INTEGER"),
)

EXPIRY_TABLE = "litestash_expiry"
# Section 10: a replica's state (its applied log index). Readers ignore it.
REPLICA_TABLE = "litestash_replica"
EXPIRY_INDEX = "ix_litestash_expiry_expires_at"
EXPIRY_COLUMNS = (("key_hash", "VARCHAR"), ("expires_at", "INTEGER"))


class ContractError(Exception):
    """A key, value or file that the contract forbids."""


# ---------------------------------------------------------------------------
# Keys, key hashes and routing (contract sections 1-3)
# ---------------------------------------------------------------------------

def key_to_bytes(key: object) -> bytes:
    """Return the UTF-8 bytes of a valid key, or raise ContractError."""
    if not isinstance(key, str):
        raise ContractError(f"key is not a string: {key!r}")
    try:
        data = key.encode("utf-8")  # fails on lone surrogates
    except UnicodeEncodeError:
        raise ContractError("key is not valid UTF-8") from None
    if not 1 <= len(data) <= MAX_KEY_BYTES:
        raise ContractError(f"key is {len(data)} bytes long; it must be 1 to {MAX_KEY_BYTES} bytes")
    return data


def hash_key_bytes(data: bytes) -> str:
    """The canonical key hash: padded base64url of the 64-byte BLAKE2b digest."""
    digest = hashlib.blake2b(data, digest_size=64).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def key_hash(key: str) -> str:
    """Validate a key and return its key hash."""
    return hash_key_bytes(key_to_bytes(key))


def route_char(char: str) -> tuple[str, str]:
    """Return (shard, table) for the first character of a key hash."""
    if len(char) != 1 or char not in BASE64URL_ALPHABET:
        raise ContractError(f"{char!r} is not a base64url character")
    if char in "0123":
        shard = "tables_03"
        return shard, f"{shard}_hash_{char}"
    if char in "4567":
        shard = "tables_47"
        return shard, f"{shard}_hash_{char}"
    if char in "89":
        return "tables_89hu", f"tables_89hu_hash_{char}"
    if char == "-":
        return "tables_89hu", "tables_89hu_hash_hyphen"
    if char == "_":
        return "tables_89hu", "tables_89hu_hash_underscore"
    letter = char.lower()
    shard = "tables_" + LETTER_PAIRS[(ord(letter) - ord("a")) // 2]
    case = "lower" if char.islower() else "upper"
    return shard, f"{shard}_{case}_hash_{letter}"


def route(hash_text: str) -> tuple[str, str]:
    """Return (shard, table) for a key hash."""
    if not hash_text:
        raise ContractError("empty key hash")
    return route_char(hash_text[0])


def _tables_by_shard() -> dict[str, tuple[str, ...]]:
    """Map every shard to its 4 tables, derived from the routing rule."""
    tables: dict[str, list[str]] = {shard: [] for shard in SHARDS}
    for char in BASE64URL_ALPHABET:
        shard, table = route_char(char)
        tables[shard].append(table)
    return {shard: tuple(names) for shard, names in tables.items()}


TABLES_BY_SHARD = _tables_by_shard()


def shard_path(data_dir: Path, shard: str) -> Path:
    """The file of one shard: <data_dir>/<shard>/<shard>.db."""
    return Path(data_dir) / shard / f"{shard}.db"


# ---------------------------------------------------------------------------
# The value model
# ---------------------------------------------------------------------------

@dataclass
class MsgMap:
    """A map value, kept as a list of (key, value) pairs.

    A Python dict cannot hold both 1 and True (or 1 and 1.0) as keys, so maps
    are pairs; their order carries no meaning (see values_equal).
    """

    pairs: list = field(default_factory=list)


SCALAR_TYPES = (type(None), bool, int, float, str, bytes)


def is_scalar(value: object) -> bool:
    """True for the values allowed as map keys: nil, bool, int, float, str, bytes."""
    return isinstance(value, SCALAR_TYPES)


def canonical(value: object) -> tuple:
    """A hashable, type-exact form of a value, for comparing values.

    Distinguishes str from bytes, int from float and bool from int; compares
    floats by their bits (so -0.0 != 0.0) except that all NaNs are equal; and
    ignores map order.
    """
    if value is None:
        return ("nil",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else struct.pack(">d", value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, bytes):
        return ("bin", value)
    if isinstance(value, list):
        return ("list", tuple(canonical(item) for item in value))
    if isinstance(value, MsgMap):
        return ("map", frozenset((canonical(k), canonical(v)) for k, v in value.pairs))
    raise ContractError(f"not a storable value: {type(value).__name__}")


def values_equal(a: object, b: object) -> bool:
    """Type-exact equality of two values, map order ignored."""
    return canonical(a) == canonical(b)


# ---------------------------------------------------------------------------
# Tagged JSON (the exchange format)
# ---------------------------------------------------------------------------

class TaggedJsonError(ValueError):
    """Input that is not valid tagged JSON."""


class _JsonObject(list):
    """The (name, value) pairs of one parsed JSON object, in order."""


def _reject_constant(name: str) -> None:
    raise TaggedJsonError(f"bare {name} is not allowed; write {{\"float\": \"nan\"|\"inf\"|\"-inf\"}}")


def _parse_json_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise TaggedJsonError(f"number {text} does not fit a float64")
    return number


def parse_json(text: str) -> object:
    """Parse JSON text, keeping objects as _JsonObject pairs."""
    try:
        return json.loads(
            text,
            object_pairs_hook=_JsonObject,
            parse_float=_parse_json_float,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as error:
        raise TaggedJsonError(f"invalid JSON: {error}") from None


def from_tagged(node: object, path: str = "$") -> object:
    """Convert one parsed tagged-JSON node into a value."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, _JsonObject):
        if len(node) != 1:
            raise TaggedJsonError(f"{path}: an object must have exactly one of bin, map, float")
        tag, body = node[0]
        if tag == "bin":
            if not isinstance(body, str):
                raise TaggedJsonError(f"{path}: bin must be a base64 string")
            try:
                return base64.b64decode(body, validate=True)
            except ValueError as error:
                raise TaggedJsonError(f"{path}: bad base64 in bin: {error}") from None
        if tag == "map":
            return _map_from_tagged(body, path)
        if tag == "float":
            specials = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
            if body not in specials:
                raise TaggedJsonError(f"{path}: float must be \"nan\", \"inf\" or \"-inf\"")
            return specials[body]
        raise TaggedJsonError(f"{path}: unknown tag {tag!r}")
    if isinstance(node, list):
        return [from_tagged(item, f"{path}[{i}]") for i, item in enumerate(node)]
    raise TaggedJsonError(f"{path}: unexpected JSON node {node!r}")


def _map_from_tagged(body: object, path: str) -> MsgMap:
    if not isinstance(body, list) or isinstance(body, _JsonObject):
        raise TaggedJsonError(f"{path}: map must be a list of [key, value] pairs")
    pairs = []
    for i, entry in enumerate(body):
        if not isinstance(entry, list) or isinstance(entry, _JsonObject) or len(entry) != 2:
            raise TaggedJsonError(f"{path}.map[{i}]: each entry must be [key, value]")
        key = from_tagged(entry[0], f"{path}.map[{i}][0]")
        if not is_scalar(key):
            raise TaggedJsonError(f"{path}.map[{i}]: map key must be a scalar")
        pairs.append((key, from_tagged(entry[1], f"{path}.map[{i}][1]")))
    return MsgMap(pairs)


def to_tagged(value: object) -> object:
    """Convert a value into a JSON-serialisable tagged-JSON node."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return {"float": "nan"}
        if math.isinf(value):
            return {"float": "inf" if value > 0 else "-inf"}
        return value
    if isinstance(value, bytes):
        return {"bin": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [to_tagged(item) for item in value]
    if isinstance(value, MsgMap):
        return {"map": [[to_tagged(k), to_tagged(v)] for k, v in value.pairs]}
    raise ContractError(f"not a storable value: {type(value).__name__}")


def load_tagged_object(text: str) -> list[tuple[str, object]]:
    """Parse a top-level tagged-JSON object {key: tagged value} into pairs."""
    document = parse_json(text)
    if not isinstance(document, _JsonObject):
        raise TaggedJsonError("the top level must be a JSON object {key: value}")
    seen = set()
    pairs = []
    for key, node in document:
        if key in seen:
            raise TaggedJsonError(f"duplicate key {key!r}")
        seen.add(key)
        pairs.append((key, from_tagged(node, f"${json.dumps(key, ensure_ascii=False)}")))
    return pairs


def dump_tagged_object(pairs: list[tuple[str, object]]) -> str:
    """Render {key: value} as tagged JSON, one key per line."""
    lines = [
        f"{json.dumps(key, ensure_ascii=False)}: "
        f"{json.dumps(to_tagged(value), ensure_ascii=False, allow_nan=False)}"
        for key, value in pairs
    ]
    if not lines:
        return "{}\n"
    return "{\n" + ",\n".join(lines) + "\n}\n"


def show(value: object, limit: int = 200) -> str:
    """A short tagged-JSON rendering of a value, for messages."""
    try:
        text = json.dumps(to_tagged(value), ensure_ascii=False, allow_nan=False)
    except ContractError:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def show_key(key: str) -> str:
    """A short quoted rendering of a key, for messages."""
    text = json.dumps(key, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + '..."'


# ---------------------------------------------------------------------------
# MessagePack encoding (contract section 5)
# ---------------------------------------------------------------------------

def encode_int(number: int) -> bytes:
    """Encode an integer in the smallest MessagePack form (uint for >= 0)."""
    if 0 <= number <= 0x7F:
        return bytes([number])
    if -32 <= number < 0:
        return struct.pack(">b", number)
    if number > 0:
        for limit, head, fmt in ((0xFF, 0xCC, ">B"), (0xFFFF, 0xCD, ">H"),
                                 (0xFFFFFFFF, 0xCE, ">I"), (0xFFFFFFFFFFFFFFFF, 0xCF, ">Q")):
            if number <= limit:
                return bytes([head]) + struct.pack(fmt, number)
    else:
        for limit, head, fmt in ((-0x80, 0xD0, ">b"), (-0x8000, 0xD1, ">h"),
                                 (-0x80000000, 0xD2, ">i"), (-0x8000000000000000, 0xD3, ">q")):
            if number >= limit:
                return bytes([head]) + struct.pack(fmt, number)
    raise ContractError(f"integer {number} is outside -2^63 .. 2^64-1")


def _length_header(length: int, fix_base: int | None, fix_max: int, heads: tuple[int, ...]) -> bytes:
    """Header of a str/bin/array/map of `length`, in the smallest family.

    `heads` are the 8-, 16- and 32-bit length heads (None where the family
    has no 8-bit form).
    """
    if fix_base is not None and length <= fix_max:
        return bytes([fix_base | length])
    for head, fmt, limit in zip(heads, (">B", ">H", ">I"), (0xFF, 0xFFFF, 0xFFFFFFFF)):
        if head is not None and length <= limit:
            return bytes([head]) + struct.pack(fmt, length)
    raise ContractError(f"length {length} does not fit MessagePack")


def str_header(length: int) -> bytes:
    return _length_header(length, 0xA0, 31, (0xD9, 0xDA, 0xDB))


def bin_header(length: int) -> bytes:
    return _length_header(length, None, -1, (0xC4, 0xC5, 0xC6))


def array_header(length: int) -> bytes:
    return _length_header(length, 0x90, 15, (None, 0xDC, 0xDD))


def map_header(length: int) -> bytes:
    return _length_header(length, 0x80, 15, (None, 0xDE, 0xDF))


def encode_value(value: object) -> bytes:
    """Encode a value to MessagePack per the contract, or raise ContractError."""
    out = bytearray()
    _encode_into(out, value, depth=0)
    if len(out) > MAX_VALUE_BYTES:
        raise ContractError(f"encoded value is {len(out)} bytes; the limit is {MAX_VALUE_BYTES}")
    return bytes(out)


def _encode_into(out: bytearray, value: object, depth: int) -> None:
    if value is None:
        out.append(0xC0)
    elif value is False:
        out.append(0xC2)
    elif value is True:
        out.append(0xC3)
    elif isinstance(value, int):
        out += encode_int(value)
    elif isinstance(value, float):
        out.append(0xCB)
        out += struct.pack(">d", value)
    elif isinstance(value, str):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            raise ContractError("text is not valid UTF-8") from None
        out += str_header(len(data)) + data
    elif isinstance(value, bytes):
        out += bin_header(len(value)) + value
    elif isinstance(value, (list, MsgMap)):
        if depth + 1 > MAX_DEPTH:
            raise ContractError(f"value is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, list):
            out += array_header(len(value))
            for item in value:
                _encode_into(out, item, depth + 1)
        else:
            out += map_header(len(value.pairs))
            seen = set()
            for key, item in value.pairs:
                if not is_scalar(key):
                    raise ContractError(f"map key {show(key)} is not a scalar")
                if canonical(key) in seen:
                    raise ContractError(f"duplicate map key {show(key)}")
                seen.add(canonical(key))
                _encode_into(out, key, depth + 1)
                _encode_into(out, item, depth + 1)
    else:
        raise ContractError(f"a {type(value).__name__} is not storable")


# ---------------------------------------------------------------------------
# MessagePack decoding: a hand-written byte-level walker
# ---------------------------------------------------------------------------

class DecodeError(ValueError):
    """A MessagePack value that breaks the contract (with the byte offset)."""


class MsgpackDecoder:
    """Decodes one MessagePack value from a byte string.

    With strict=True (used by verify) it also enforces the writer rules of the
    contract: ints and str lengths in their smallest encoding and floats as
    float64 only. With strict=False (used by read) it accepts what a reader
    must accept, including float32. Both modes refuse extension types, the
    never-used byte 0xc1, str that is not UTF-8, non-scalar or duplicate map
    keys, nesting deeper than MAX_DEPTH, truncation and trailing bytes.
    """

    def __init__(self, data: bytes, strict: bool = True):
        self.data = data
        self.strict = strict
        self.pos = 0

    def decode(self) -> object:
        """Decode the whole buffer as exactly one value."""
        if self.strict and len(self.data) > MAX_VALUE_BYTES:
            raise DecodeError(f"value is {len(self.data)} bytes; the limit is {MAX_VALUE_BYTES}")
        value = self._value(depth=0)
        if self.pos != len(self.data):
            raise DecodeError(f"{len(self.data) - self.pos} trailing bytes after the value at offset {self.pos}")
        return value

    def _fail(self, offset: int, message: str) -> NoReturn:
        raise DecodeError(f"at offset {offset}: {message}")

    def _take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            self._fail(self.pos, f"truncated: needs {count} bytes, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def _unpack(self, fmt: str) -> int | float:
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _value(self, depth: int) -> object:
        start = self.pos
        head = self._take(1)[0]
        if head <= 0x7F:
            return head
        if head >= 0xE0:
            return head - 0x100
        if 0x80 <= head <= 0x8F:
            return self._map(head & 0x0F, depth, start)
        if 0x90 <= head <= 0x9F:
            return self._array(head & 0x0F, depth, start)
        if 0xA0 <= head <= 0xBF:
            return self._str(head & 0x1F, start)
        if head == 0xC0:
            return None
        if head == 0xC2:
            return False
        if head == 0xC3:
            return True
        if head == 0xC1:
            self._fail(start, "byte 0xc1 is never used in MessagePack")
        if head in (0xC7, 0xC8, 0xC9) or 0xD4 <= head <= 0xD8:
            self._fail(start, f"extension type (0x{head:02x}) is not used in contract version 1")
        if head == 0xC4:
            return self._take(self._unpack(">B"))
        if head == 0xC5:
            return self._take(self._unpack(">H"))
        if head == 0xC6:
            return self._take(self._unpack(">I"))
        if head == 0xCA:
            if self.strict:
                self._fail(start, "float32 (0xca); writers must use float64 (0xcb)")
            return self._unpack(">f")
        if head == 0xCB:
            return self._unpack(">d")
        int_formats = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
                       0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
        if head in int_formats:
            number = self._unpack(int_formats[head])
            if self.strict and self.data[start:self.pos] != encode_int(number):
                self._fail(start, f"integer {number} is encoded as 0x{head:02x} in {self.pos - start} bytes; "
                                  f"the smallest encoding is {encode_int(number).hex()}")
            return number
        if head == 0xD9:
            return self._str(self._unpack(">B"), start)
        if head == 0xDA:
            return self._str(self._unpack(">H"), start)
        if head == 0xDB:
            return self._str(self._unpack(">I"), start)
        if head == 0xDC:
            return self._array(self._unpack(">H"), depth, start)
        if head == 0xDD:
            return self._array(self._unpack(">I"), depth, start)
        if head == 0xDE:
            return self._map(self._unpack(">H"), depth, start)
        if head == 0xDF:
            return self._map(self._unpack(">I"), depth, start)
        self._fail(start, f"unknown byte 0x{head:02x}")  # unreachable: every byte is covered

    def _str(self, length: int, start: int) -> str:
        header = self.data[start:self.pos]
        if self.strict and header != str_header(length):
            self._fail(start, f"str of {length} bytes uses header {header.hex()}; "
                              f"the smallest is {str_header(length).hex()}")
        raw = self._take(length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(start, "str is not valid UTF-8")

    def _enter(self, depth: int, count: int, start: int) -> None:
        """Checks before reading the items of a list or map at `depth`."""
        if depth + 1 > MAX_DEPTH:
            self._fail(start, f"nested more than {MAX_DEPTH} levels deep")
        if count > len(self.data) - self.pos:  # every item takes at least one byte
            self._fail(start, f"truncated: {count} items announced, {len(self.data) - self.pos} bytes left")

    def _array(self, count: int, depth: int, start: int) -> list:
        self._enter(depth, count, start)
        return [self._value(depth + 1) for _ in range(count)]

    def _map(self, count: int, depth: int, start: int) -> MsgMap:
        self._enter(depth, count, start)
        pairs = []
        seen = set()
        for _ in range(count):
            key_start = self.pos
            key = self._value(depth + 1)
            if not is_scalar(key):
                self._fail(key_start, "map key is a list or map; keys must be scalars")
            if canonical(key) in seen:
                self._fail(key_start, f"duplicate map key {show(key)}")
            seen.add(canonical(key))
            pairs.append((key, self._value(depth + 1)))
        return MsgMap(pairs)


def decode_strict(data: bytes) -> object:
    """Decode under the writer rules of the contract (see MsgpackDecoder)."""
    return MsgpackDecoder(data, strict=True).decode()


def decode_reader(data: bytes) -> object:
    """Decode as a contract reader must (accepts float32, non-minimal forms)."""
    return MsgpackDecoder(data, strict=False).decode()


def decode_with_package(data: bytes) -> object:
    """Decode with the msgpack package, maps as MsgMap.

    The maps come back as pairs (object_pairs_hook) rather than dicts, since
    a dict would merge the distinct keys 1, 1.0 and true.
    """
    return msgpack.unpackb(data, raw=False, strict_map_key=False,
                           object_pairs_hook=lambda pairs: MsgMap(list(pairs)))


def decode_checked(data: bytes) -> object:
    """Strict decode, cross-checked against the msgpack package.

    Raises DecodeError if the value breaks the contract or if the two
    decoders disagree. The strict walker runs first, so the package never
    sees an extension type here.
    """
    value = decode_strict(data)
    try:
        other = decode_with_package(data)
    except Exception as error:  # the package raises many exception types
        raise DecodeError(f"the msgpack package cannot decode it: {error!r}") from None
    if not values_equal(value, other):
        raise DecodeError(f"decoders disagree: strict walker {show(value)}, msgpack package {other!r:.200}")
    return value


# ---------------------------------------------------------------------------
# SQLite files (contract sections 4, 7, 8)
# ---------------------------------------------------------------------------

def table_ddl(table: str) -> tuple[str, str]:
    """The CREATE TABLE and CREATE UNIQUE INDEX statements of one data table."""
    return (
        f'CREATE TABLE IF NOT EXISTS "{table}" (key_hash VARCHAR NOT NULL, "key" VARCHAR, '
        f'value BLOB, timestamp INTEGER, microsecond INTEGER, PRIMARY KEY (key_hash))',
        f'CREATE UNIQUE INDEX IF NOT EXISTS "ix_{table}_key" ON "{table}" ("key")',
    )


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing shard file for reading only (raises if it is absent).

    Even a read-only connection makes SQLite create -wal and -shm files
    beside a WAL database, and as root it does so in a folder without write
    permission too. So a folder without any write permission bit is taken as
    a read-only snapshot (such as shared/contract/fixture_v1) and opened with
    immutable=1, which creates nothing, unless it holds a non-empty -wal file
    whose rows immutable=1 would not see.
    """
    path = Path(path).resolve()
    params = "mode=ro"
    if _is_read_only_snapshot(path):
        params += "&immutable=1"
    return sqlite3.connect(f"{path.as_uri()}?{params}", uri=True,
                           timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)


def _is_read_only_snapshot(path: Path) -> bool:
    folder_writable = path.parent.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    wal = path.with_name(path.name + "-wal")
    return not folder_writable and not (wal.exists() and wal.stat().st_size > 0)


def file_is_wal(path: Path) -> bool:
    """True if the file is in WAL mode, read from the SQLite file header.

    PRAGMA journal_mode = WAL persists as the value 2 in header bytes 18 and
    19; reading them also works where the pragma cannot tell (immutable=1).
    """
    with open(path, "rb") as handle:
        header = handle.read(100)
    return len(header) == 100 and header[18] == 2 and header[19] == 2


def connect_readwrite(path: Path) -> sqlite3.Connection:
    """Open (or create) a shard file for writing, with a long busy timeout."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    return conn


def pragma_value(conn: sqlite3.Connection, name: str) -> object:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def table_names(conn: sqlite3.Connection) -> set[str]:
    """Names of the tables of a file, without SQLite's own sqlite_* tables."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows if not name.startswith("sqlite_")}


def check_version_header(conn: sqlite3.Connection, where: str) -> None:
    """Raise ContractError unless the file is a version-1 LiteStash file."""
    version = pragma_value(conn, "user_version")
    app_id = pragma_value(conn, "application_id")
    if version > CONTRACT_VERSION:
        raise ContractError(f"{where}: user_version {version} is newer than contract version "
                            f"{CONTRACT_VERSION}; refusing it")
    if version != CONTRACT_VERSION:
        raise ContractError(f"{where}: user_version {version} is not contract version {CONTRACT_VERSION} "
                            "(0 means a litestash 0.1 file or no LiteStash file)")
    if app_id != APPLICATION_ID:
        raise ContractError(f"{where}: application_id {app_id} is not {APPLICATION_ID}")


def prepare_shard(data_dir: Path, shard: str) -> sqlite3.Connection:
    """Open a shard file for writing, creating what the contract requires.

    A new (or empty) file gets the application_id, user_version 1, WAL and
    its 4 tables with their key indexes. An existing version-1 file only gets
    tables or indexes that are missing. Any other file is refused before
    anything is written to it.
    """
    path = shard_path(data_dir, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect_readwrite(path)
    try:
        _refuse_foreign_file(conn, path)
        _switch_to_wal(conn, path)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _refuse_foreign_file(conn, path):
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {CONTRACT_VERSION}")
            for table in TABLES_BY_SHARD[shard]:
                for statement in table_ddl(table):
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except BaseException:
        conn.close()
        raise
    return conn


def _switch_to_wal(conn: sqlite3.Connection, path: Path) -> None:
    """Set journal_mode = WAL, retrying while the file is locked.

    While another process creates or uses the same new file, SQLite can
    answer this pragma with "database is locked" at once, without waiting on
    the busy timeout (seen with 24 writers on a fresh data dir). So it is
    retried until the same deadline as the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while pragma_value(conn, "journal_mode") != "wal":
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if mode != "wal":
            raise ContractError(f"{path}: cannot switch to WAL (journal_mode is {mode})")


def _refuse_foreign_file(conn: sqlite3.Connection, path: Path) -> bool:
    """Raise unless the file is version 1 or blank; return True if blank."""
    version = pragma_value(conn, "user_version")
    app_id = pragma_value(conn, "application_id")
    if version == 0 and app_id == 0 and not table_names(conn):
        return True
    check_version_header(conn, str(path))
    return False


class Write(NamedTuple):
    """One validated key and its encoded value, routed to its shard and table."""

    shard: str
    table: str
    key_hash: str
    key: str
    blob: bytes


def upsert_rows(conn: sqlite3.Connection, writes: list[Write]) -> None:
    """Upsert writes of one shard file in one transaction, stamped with now.

    Writing a key without an expiry also deletes its expiry row (section 9).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        has_expiry = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (EXPIRY_TABLE,)
        ).fetchone() is not None
        for write in writes:
            nanoseconds = time.time_ns()
            seconds, micro = nanoseconds // 1_000_000_000, (nanoseconds // 1000) % 1_000_000
            conn.execute(
                f'INSERT INTO "{write.table}" (key_hash, "key", value, timestamp, microsecond) '
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_hash) DO UPDATE SET "
                '"key" = excluded."key", value = excluded.value, '
                "timestamp = excluded.timestamp, microsecond = excluded.microsecond",
                (write.key_hash, write.key, write.blob, seconds, micro),
            )
            if has_expiry:
                conn.execute(f"DELETE FROM {EXPIRY_TABLE} WHERE key_hash = ?", (write.key_hash,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def is_expired(conn: sqlite3.Connection, hash_text: str, now_ms: int) -> bool:
    """True if the file's expiry table says the key expired at or before now."""
    if EXPIRY_TABLE not in table_names(conn):
        return False
    row = conn.execute(f"SELECT 1 FROM {EXPIRY_TABLE} WHERE key_hash = ? AND expires_at <= ?",
                       (hash_text, now_ms)).fetchone()
    return row is not None


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------

class RawRow(NamedTuple):
    """One data-table row as verify selects it: SQLite types and raw content."""

    hash_type: str
    hash_raw: bytes | None
    key_type: str
    key_raw: bytes | None
    value_type: str
    value: object
    ts_type: str
    timestamp: object
    us_type: str
    microsecond: object


ROW_SELECT = ('SELECT typeof(key_hash), CAST(key_hash AS BLOB), typeof("key"), CAST("key" AS BLOB), '
              "typeof(value), value, typeof(timestamp), timestamp, typeof(microsecond), microsecond "
              'FROM "{table}"')


@dataclass
class StoredKey:
    """What verify remembers of one stored row."""

    where: str
    key_hash: str
    decoded: bool
    value: object = None  # kept only for keys that are expected


class Verifier:
    """Checks a data dir against the contract and against expected values.

    Problems are printed as they are found, one line each, and collected in
    `problems`.
    """

    def __init__(self, data_dir: Path, expected: dict[str, object] | None = None,
                 exact: bool = False, out=None):
        self.data_dir = Path(data_dir)
        self.expected = expected or {}
        self.exact = exact
        self.out = out if out is not None else sys.stdout
        self.problems: list[str] = []
        self.rows_checked = 0
        self.stored: dict[str, StoredKey] = {}
        self.expired: set[str] = set()
        self.now = time.time()

    def problem(self, where: str, message: str) -> None:
        line = f"{where}: {message}"
        self.problems.append(line)
        print(line, file=self.out)

    def run(self) -> list[str]:
        """Check every shard, then the expected values; return the problems."""
        for shard in SHARDS:
            self.check_shard(shard)
        self.check_expected()
        return self.problems

    # -- files ------------------------------------------------------------

    def check_shard(self, shard: str) -> None:
        path = shard_path(self.data_dir, shard)
        where = f"{shard}/{shard}.db"
        if not path.is_file():
            self.problem(where, f"shard file is missing ({path})")
            return
        try:
            conn = connect_readonly(path)
        except sqlite3.Error as error:
            self.problem(where, f"cannot open: {error}")
            return
        try:
            self.check_file(conn, shard, where)
        except sqlite3.Error as error:
            self.problem(where, f"SQLite error: {error}")
        finally:
            conn.close()

    def check_file(self, conn: sqlite3.Connection, shard: str, where: str) -> None:
        for name, wanted in (("application_id", APPLICATION_ID), ("user_version", CONTRACT_VERSION)):
            found = pragma_value(conn, name)
            if found != wanted:
                self.problem(where, f"{name} is {found!r}, expected {wanted!r}")
        if not file_is_wal(shard_path(self.data_dir, shard)):
            self.problem(where, "journal_mode is not WAL (file header bytes 18-19 are not 2)")
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            self.problem(where, "integrity_check: " + "; ".join(map(str, integrity[:5])))

        present = table_names(conn)
        wanted_tables = TABLES_BY_SHARD[shard]
        for table in wanted_tables:
            if table not in present:
                self.problem(where, f"table {table} is missing")
        for table in sorted(present - set(wanted_tables) - {EXPIRY_TABLE, REPLICA_TABLE}):
            self.problem(where, f"unexpected table {table}")

        conn.execute("BEGIN")  # one consistent snapshot of the whole file
        try:
            hashes_here = set()
            for table in wanted_tables:
                if table in present:
                    self.check_table_shape(conn, table, f"{where}: {table}")
                    hashes_here |= self.check_rows(conn, shard, table, f"{where}: {table}")
            if EXPIRY_TABLE in present:
                self.check_expiry(conn, hashes_here, f"{where}: {EXPIRY_TABLE}")
        finally:
            conn.execute("COMMIT")

    def check_columns(self, conn: sqlite3.Connection, table: str, wanted: tuple, where: str) -> None:
        """Columns (name, declared type) in order, primary key on key_hash only."""
        info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        found = [(name, decl_type.upper()) for _cid, name, decl_type, _nn, _dflt, _pk in info]
        if found != list(wanted):
            self.problem(where, f"columns are {found}, expected {list(wanted)}")
        pk_columns = [name for _cid, name, _t, _nn, _dflt, pk in info if pk]
        if pk_columns != ["key_hash"]:
            self.problem(where, f"primary key is {pk_columns}, expected ['key_hash']")
        not_null = {name for _cid, name, _t, notnull, _dflt, _pk in info if notnull}
        if "key_hash" not in not_null:
            self.problem(where, "key_hash is not NOT NULL")

    def check_index(self, conn: sqlite3.Connection, table: str, index: str, column: str,
                    unique: bool, where: str) -> None:
        """The named index exists on `table`, over exactly `column`."""
        indexes = {row[1]: row for row in conn.execute(f'PRAGMA index_list("{table}")')}
        if index not in indexes:
            self.problem(where, f"index {index} is missing")
            return
        _seq, _name, is_unique, _origin, partial = indexes[index]
        if unique and not is_unique:
            self.problem(where, f"index {index} is not UNIQUE")
        if partial:
            self.problem(where, f"index {index} is partial")
        columns = [row[2] for row in conn.execute(f'PRAGMA index_info("{index}")')]
        if columns != [column]:
            self.problem(where, f"index {index} covers {columns}, expected [{column!r}]")

    def check_table_shape(self, conn: sqlite3.Connection, table: str, where: str) -> None:
        self.check_columns(conn, table, COLUMNS, where)
        self.check_index(conn, table, f"ix_{table}_key", "key", unique=True, where=where)

    # -- rows -------------------------------------------------------------

    def check_rows(self, conn: sqlite3.Connection, shard: str, table: str, where: str) -> set[str]:
        """Check every row of one table; return the key hashes found."""
        hashes = set()
        for values in conn.execute(ROW_SELECT.format(table=table)):
            self.rows_checked += 1
            hash_text = self.check_row(shard, table, where, RawRow(*values))
            if hash_text is not None:
                hashes.add(hash_text)
        return hashes

    def check_row(self, shard: str, table: str, where: str, row: RawRow) -> str | None:
        """Check one row; remember its key; return its stored key hash."""
        stored_hash = bytes(row.hash_raw).decode("utf-8", "replace") if row.hash_raw is not None else None
        key_raw = bytes(row.key_raw) if row.key_raw is not None else None
        try:
            key = key_raw.decode("utf-8") if key_raw is not None else None
        except UnicodeDecodeError:
            key = None
        label = f"key {show_key(key)}" if key is not None else f"row with key_hash {stored_hash!r}"
        here = f"{where}: {label}"

        if row.hash_type != "text":
            self.problem(here, f"key_hash is {row.hash_type}, expected text")
        if row.key_type != "text":
            self.problem(here, f"key is {row.key_type}, expected text")
        if key_raw is not None and key is None:
            self.problem(here, f"key is not valid UTF-8: {key_raw[:40].hex()}")
        if key is None:
            return stored_hash
        try:
            wanted_hash = hash_key_bytes(key_to_bytes(key))
        except ContractError as error:
            self.problem(here, str(error))
            return stored_hash
        if stored_hash != wanted_hash:
            self.problem(here, f"key_hash is {stored_hash!r}, expected {wanted_hash!r}")
        wanted_shard, wanted_table = route(wanted_hash)
        if (wanted_shard, wanted_table) != (shard, table):
            self.problem(here, f"row belongs in {wanted_shard}/{wanted_shard}.db table {wanted_table}")

        self.check_time(here, row)
        decoded, decoded_value = self.check_value(here, row.value_type, row.value)

        if key in self.stored:
            self.problem(here, f"key is stored twice (also in {self.stored[key].where})")
        else:
            keep = decoded_value if key in self.expected else None
            self.stored[key] = StoredKey(f"{shard}/{shard}.db {table}", stored_hash, decoded, keep)
        return stored_hash

    def check_time(self, here: str, row: RawRow) -> None:
        """timestamp: INTEGER seconds, sane; microsecond: INTEGER 0..999999."""
        latest = int(self.now) + MAX_TIMESTAMP_AHEAD
        if row.ts_type != "integer":
            self.problem(here, f"timestamp is {row.ts_type}, expected integer")
        elif not MIN_TIMESTAMP <= row.timestamp <= latest:
            self.problem(here, f"timestamp {row.timestamp} is not between {MIN_TIMESTAMP} and {latest}")
        if row.us_type != "integer":
            self.problem(here, f"microsecond is {row.us_type}, expected integer")
        elif not 0 <= row.microsecond <= 999_999:
            self.problem(here, f"microsecond {row.microsecond} is not in 0..999999")

    def check_value(self, here: str, value_type: str, value: object) -> tuple[bool, object]:
        """Return (decoded?, value). A NULL value reads as nil."""
        if value_type == "null":
            return True, None
        if value_type != "blob":
            self.problem(here, f"value is {value_type}, expected blob")
            return False, None
        try:
            return True, decode_checked(bytes(value))
        except DecodeError as error:
            self.problem(here, f"value: {error}")
            return False, None

    def check_expiry(self, conn: sqlite3.Connection, hashes_here: set[str], where: str) -> None:
        """Shape and rows of the optional expiry table (section 9)."""
        self.check_columns(conn, EXPIRY_TABLE, EXPIRY_COLUMNS, where)
        info = conn.execute(f"PRAGMA table_info({EXPIRY_TABLE})").fetchall()
        if any(name == "expires_at" and not notnull for _c, name, _t, notnull, _d, _p in info):
            self.problem(where, "expires_at is not NOT NULL")
        self.check_index(conn, EXPIRY_TABLE, EXPIRY_INDEX, "expires_at", unique=False, where=where)
        now_ms = int(self.now * 1000)
        rows = conn.execute(f"SELECT key_hash, typeof(expires_at), expires_at FROM {EXPIRY_TABLE}")
        for hash_text, expires_type, expires_at in rows:
            here = f"{where}: key_hash {hash_text!r}"
            if hash_text not in hashes_here:
                self.problem(here, "expiry row for a key that is not stored in this file")
            if expires_type != "integer":
                self.problem(here, f"expires_at is {expires_type}, expected integer")
            elif expires_at <= now_ms:
                self.expired.add(hash_text)

    # -- expected values --------------------------------------------------

    def check_expected(self) -> None:
        """Every expected key is live with an equal value; with --exact, no other key is.

        A key whose expiry has passed counts as absent (section 9). A value
        that could not be decoded was reported already and is not compared.
        """
        live = {key: row for key, row in self.stored.items() if row.key_hash not in self.expired}
        for key, wanted in self.expected.items():
            here = f"expected key {show_key(key)}"
            try:
                key_to_bytes(key)
            except ContractError as error:
                self.problem(here, f"not a valid key: {error}")
                continue
            row = live.get(key)
            if row is None:
                reason = "expired" if key in self.stored else "missing"
                self.problem(here, f"{reason} from the data dir")
            elif row.decoded and not values_equal(row.value, wanted):
                self.problem(here, f"value differs: expected {show(wanted)}, found {show(row.value)}")
        if self.exact:
            for key in sorted(live.keys() - self.expected.keys()):
                self.problem(f"key {show_key(key)}", f"not expected (--exact), stored in {live[key].where}")


def verify(data_dir: Path, expected: dict[str, object] | None, exact: bool, out=None) -> Verifier:
    """Run all verify checks; the returned Verifier holds the problems."""
    verifier = Verifier(data_dir, expected, exact, out)
    verifier.run()
    return verifier


# ---------------------------------------------------------------------------
# write and read
# ---------------------------------------------------------------------------

def prepare_writes(pairs: list[tuple[str, object]]) -> tuple[list[Write], list[str]]:
    """Validate and encode every (key, value); return (writes, errors)."""
    writes, errors = [], []
    for key, value in pairs:
        try:
            hash_text = key_hash(key)
            blob = encode_value(value)
        except ContractError as error:
            errors.append(f"key {show_key(key)}: {error}")
            continue
        shard, table = route(hash_text)
        writes.append(Write(shard, table, hash_text, key, blob))
    return writes, errors


def write_data(data_dir: Path, writes: list[Write], batch: int) -> None:
    """Create the data dir as needed and upsert the writes.

    Keys are taken in order; each shard file commits its keys `batch` at a
    time, so the default batch of 1 is one transaction per key.
    """
    connections = {shard: prepare_shard(data_dir, shard) for shard in SHARDS}
    try:
        pending: dict[str, list[Write]] = {shard: [] for shard in SHARDS}
        for write in writes:
            pending[write.shard].append(write)
            if len(pending[write.shard]) >= batch:
                upsert_rows(connections[write.shard], pending[write.shard])
                pending[write.shard] = []
        for shard, rest in pending.items():
            if rest:
                upsert_rows(connections[shard], rest)
    finally:
        for conn in connections.values():
            conn.close()


_MISSING = object()  # what _lookup returns for an absent or expired key


def read_keys(data_dir: Path, keys: list[str]) -> tuple[list[tuple[str, object]], list[str]]:
    """Read keys; return ([(key, value)] for the keys found, errors).

    Missing and expired keys are left out. A NULL value reads as nil.
    """
    found, errors = [], []
    connections: dict[str, sqlite3.Connection | None] = {}
    now_ms = int(time.time() * 1000)
    try:
        for key in keys:
            try:
                hash_text = key_hash(key)
                shard, table = route(hash_text)
                if shard not in connections:
                    connections[shard] = _open_for_reading(data_dir, shard)
                conn = connections[shard]
                if conn is None:
                    continue
                value = _lookup(conn, table, hash_text, key, now_ms)
                if value is not _MISSING:
                    found.append((key, value))
            except (ContractError, DecodeError, sqlite3.Error) as error:
                errors.append(f"key {show_key(key) if isinstance(key, str) else repr(key)}: {error}")
    finally:
        for conn in connections.values():
            if conn is not None:
                conn.close()
    return found, errors


def _open_for_reading(data_dir: Path, shard: str) -> sqlite3.Connection | None:
    """Open a shard read-only after checking its version; None if absent."""
    path = shard_path(data_dir, shard)
    if not path.is_file():
        return None
    conn = connect_readonly(path)
    try:
        check_version_header(conn, str(path))
    except BaseException:
        conn.close()
        raise
    return conn


def _lookup(conn: sqlite3.Connection, table: str, hash_text: str, key: str, now_ms: int) -> object:
    """The decoded value of one key, or _MISSING if absent or expired."""
    row = conn.execute(
        f'SELECT CAST("key" AS BLOB), typeof(value), value FROM "{table}" WHERE key_hash = ?',
        (hash_text,),
    ).fetchone()
    if row is None or is_expired(conn, hash_text, now_ms):
        return _MISSING
    stored_key, value_type, value = row
    if stored_key is None or bytes(stored_key) != key.encode("utf-8"):
        raise ContractError(f"row with this key_hash holds another key: {bytes(stored_key or b'')!r:.80}")
    if value_type == "null":
        return None
    if value_type != "blob":
        raise ContractError(f"value is {value_type}, expected blob")
    return decode_reader(bytes(value))


# ---------------------------------------------------------------------------
# Elixir literals (for vectors.json and fixture_v1.exs)
# ---------------------------------------------------------------------------

class ElixirParseError(ValueError):
    """Text outside the subset of Elixir literals that ElixirTermParser reads."""


class ElixirTermParser:
    """Reads the literal Elixir terms used by the contract's ground truth.

    Supported: nil, true, false, integers, floats, "strings" (with the usual
    escapes), <<byte, ...>>, [lists], {tuples}, %{maps} with `=>` or keyword
    keys, :atoms and # comments. A binary (string or <<>>) becomes str when it
    is valid UTF-8 and bytes otherwise; an atom other than nil/true/false
    becomes its name as str; a tuple becomes a Python tuple (not storable).
    Those are the contract's rules for Elixir values (section 5).
    """

    _ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "a": "\a", "b": "\b", "f": "\f",
                "v": "\v", "e": "\x1b", "s": " ", "\\": "\\", '"': '"', "#": "#"}

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def parse(self) -> object:
        """Parse the whole text as one term."""
        value = self.term()
        self.skip_space()
        if self.pos != len(self.text):
            self.fail("unexpected text after the term")
        return value

    def fail(self, message: str) -> NoReturn:
        line = self.text.count("\n", 0, self.pos) + 1
        raise ElixirParseError(f"line {line}: {message}: {self.text[self.pos:self.pos + 30]!r}")

    def skip_space(self) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char.isspace():
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def expect(self, literal: str) -> None:
        self.skip_space()
        if not self.peek(literal):
            self.fail(f"expected {literal!r}")
        self.pos += len(literal)

    def term(self) -> object:
        self.skip_space()
        if self.peek("%{"):
            return self.map()
        if self.peek("<<"):
            return self.binary()
        if self.peek("["):
            return self.sequence("[", "]")
        if self.peek("{"):
            return tuple(self.sequence("{", "}"))
        if self.peek('"'):
            return self.string()
        if self.peek(":"):
            self.pos += 1
            return self.atom_value(self.identifier())
        if self.pos < len(self.text) and (self.text[self.pos].isdigit() or self.peek("-")):
            return self.number()
        name = self.identifier()
        if name in ("nil", "true", "false"):
            return self.atom_value(name)
        self.fail(f"unsupported term {name!r}")

    @staticmethod
    def atom_value(name: str) -> object:
        return {"nil": None, "true": True, "false": False}.get(name, name)

    def identifier(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "_?!"):
            self.pos += 1
        if start == self.pos:
            self.fail("expected a term")
        return self.text[start:self.pos]

    def number(self) -> int | float:
        start = self.pos
        if self.peek("-"):
            self.pos += 1
        self.digits()
        is_float = False
        if self.peek(".") and self.pos + 1 < len(self.text) and self.text[self.pos + 1].isdigit():
            is_float = True
            self.pos += 1
            self.digits()
            if self.pos < len(self.text) and self.text[self.pos] in "eE":
                self.pos += 1
                if self.pos < len(self.text) and self.text[self.pos] in "+-":
                    self.pos += 1
                self.digits()
        text = self.text[start:self.pos].replace("_", "")
        return float(text) if is_float else int(text)

    def digits(self) -> None:
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isdigit() or self.text[self.pos] == "_"):
            self.pos += 1
        if start == self.pos:
            self.fail("expected digits")

    def sequence(self, open_: str, close: str) -> list:
        self.expect(open_)
        items = []
        self.skip_space()
        while not self.peek(close):
            items.append(self.term())
            self.skip_space()
            if self.peek(","):
                self.pos += 1
                self.skip_space()
            elif not self.peek(close):
                self.fail(f"expected ',' or {close!r}")
        self.pos += len(close)
        return items

    def map(self) -> MsgMap:
        self.expect("%{")
        pairs = []
        self.skip_space()
        while not self.peek("}"):
            pairs.append(self.map_entry())
            self.skip_space()
            if self.peek(","):
                self.pos += 1
                self.skip_space()
            elif not self.peek("}"):
                self.fail("expected ',' or '}'")
        self.pos += 1
        return MsgMap(pairs)

    def map_entry(self) -> tuple[object, object]:
        start = self.pos
        if self.pos < len(self.text) and (self.text[self.pos].isalpha() or self.text[self.pos] == "_"):
            name = self.identifier()
            if self.peek(": ") or self.peek(":\n"):  # keyword syntax: `name: value`
                self.pos += 1
                return name, self.term()
            self.pos = start
        key = self.term()
        self.expect("=>")
        return key, self.term()

    def binary(self) -> str | bytes:
        self.expect("<<")
        data = bytearray()
        self.skip_space()
        while not self.peek(">>"):
            part = self.term()
            if isinstance(part, int) and 0 <= part <= 255:
                data.append(part)
            elif isinstance(part, str):
                data += part.encode("utf-8")
            elif isinstance(part, bytes):
                data += part
            else:
                self.fail("only bytes 0..255 and strings are supported inside << >>")
            self.skip_space()
            if self.peek(","):
                self.pos += 1
                self.skip_space()
            elif not self.peek(">>"):
                self.fail("expected ',' or '>>'")
        self.pos += 2
        return self.binary_value(bytes(data))

    @staticmethod
    def binary_value(data: bytes) -> str | bytes:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data

    def string(self) -> str | bytes:
        self.expect('"')
        data = bytearray()
        while True:
            if self.pos >= len(self.text):
                self.fail("unterminated string")
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return self.binary_value(bytes(data))
            if char == "#" and self.peek("{"):
                self.fail("string interpolation is not supported")
            if char != "\\":
                data += char.encode("utf-8")
                continue
            data += self.escape()

    def escape(self) -> bytes:
        char = self.text[self.pos]
        self.pos += 1
        if char in self._ESCAPES:
            return self._ESCAPES[char].encode("utf-8")
        if char == "x":
            hex_digits = self.text[self.pos:self.pos + 2]
            self.pos += 2
            return bytes([int(hex_digits, 16)])
        if char == "u":
            if self.peek("{"):
                end = self.text.index("}", self.pos)
                code = int(self.text[self.pos + 1:end], 16)
                self.pos = end + 1
            else:
                code = int(self.text[self.pos:self.pos + 4], 16)
                self.pos += 4
            return chr(code).encode("utf-8")
        self.fail(f"unsupported escape \\{char}")


def parse_elixir(text: str) -> object:
    """Parse one Elixir literal term."""
    return ElixirTermParser(text).parse()


def exs_pairs(text: str) -> list[tuple[str, object]]:
    """The [{key, value}, ...] list of an .exs fixture file, as pairs."""
    term = parse_elixir(text)
    if not isinstance(term, list):
        raise ElixirParseError("the .exs file must hold a list of {key, value} tuples")
    pairs, seen = [], set()
    for item in term:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ElixirParseError(f"not a {{key, value}} tuple with a text key: {item!r:.80}")
        if item[0] in seen:
            raise ElixirParseError(f"duplicate key {item[0]!r}")
        seen.add(item[0])
        pairs.append(item)
    return pairs


# ---------------------------------------------------------------------------
# selftest
# ---------------------------------------------------------------------------

HERE = Path(__file__).resolve().parent
FIXTURE_EXPECTED_JSON = HERE / "fixture_v1.expected.json"


def default_contract_dir() -> Path:
    """shared/contract: $LITESTASH_CONTRACT_DIR, else found beside the checkout."""
    if os.environ.get("LITESTASH_CONTRACT_DIR"):
        return Path(os.environ["LITESTASH_CONTRACT_DIR"])
    for base in HERE.parents:
        candidate = base / "shared" / "contract"
        if (candidate / "vectors.json").is_file():
            return candidate
    return Path("/work/shared/contract")


def copy_data_dir(source: Path, target: Path) -> None:
    """Copy a data dir and make the copy writable (the original is read-only)."""
    shutil.copytree(source, target, copy_function=shutil.copyfile)
    for folder, _dirs, files in os.walk(target):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


class SelfTest:
    """Checks this implementation against the contract's ground truth."""

    def __init__(self, contract_dir: Path):
        self.contract_dir = Path(contract_dir)
        self.vectors = json.loads((self.contract_dir / "vectors.json").read_text(encoding="utf-8"))
        self.checks = 0
        self.failures: list[str] = []

    def check(self, condition: bool, message: str) -> bool:
        self.checks += 1
        if not condition:
            self.failures.append(message)
            print(f"FAIL {message}")
        return condition

    def section(self, name: str, run) -> None:
        before_checks, before_failures = self.checks, len(self.failures)
        try:
            run()
        except Exception as error:  # a crash is a failure of the section, not of selftest
            self.check(False, f"{name}: crashed: {error!r}")
        failed = len(self.failures) - before_failures
        status = "ok" if not failed else f"{failed} FAILED"
        print(f"selftest: {name}: {self.checks - before_checks} checks, {status}")

    def run(self) -> bool:
        self.section("constants", self.test_constants)
        self.section("key hashes", self.test_key_hashes)
        self.section("routing", self.test_routing)
        self.section("value encodings", self.test_value_encodings)
        self.section("strict decoder rejects", self.test_decoder_rejects)
        self.section("encoder and key rejects", self.test_encoder_rejects)
        self.section("tagged JSON", self.test_tagged_json)
        self.section("fixture_v1", self.test_fixture)
        self.section("corrupted fixture copies", self.test_corruptions)
        self.section("write, read, verify", self.test_write_read)
        self.section("concurrent writers", self.test_concurrent_writers)
        print(f"selftest: {self.checks} checks, {len(self.failures)} failures")
        return not self.failures

    # -- vectors ----------------------------------------------------------

    def test_constants(self) -> None:
        self.check(self.vectors["contract_version"] == CONTRACT_VERSION, "contract_version")
        self.check(self.vectors["application_id"] == APPLICATION_ID, "application_id")
        self.check(tuple(self.vectors["shards"]) == SHARDS, f"shards {self.vectors['shards']}")
        self.check(all(len(tables) == 4 for tables in TABLES_BY_SHARD.values()), "4 tables per shard")

    def test_key_hashes(self) -> None:
        for entry in self.vectors["keys"]:
            key = entry["key"]
            name = show_key(key)
            self.check(key_to_bytes(key).hex() == entry["key_utf8_hex"], f"{name}: UTF-8 bytes")
            hash_text = key_hash(key)
            self.check(hash_text == entry["key_hash"], f"{name}: key_hash {hash_text}")
            self.check(len(hash_text) == 88 and hash_text.endswith("=="), f"{name}: 88 chars ending ==")
            shard, table = route(hash_text)
            self.check((shard, table) == (entry["shard"], entry["table"]), f"{name}: routed to {shard} {table}")
            self.check(f"{shard}/{shard}.db" == entry["file"], f"{name}: file")

    def test_routing(self) -> None:
        routing = self.vectors["routing"]
        self.check(sorted(routing) == sorted(BASE64URL_ALPHABET), "routing covers the 64 base64url chars")
        for char, entry in routing.items():
            self.check(route_char(char) == (entry["shard"], entry["table"]), f"routing {char!r}: {route_char(char)}")

    def test_value_encodings(self) -> None:
        for entry in self.vectors["values"]:
            name, wanted = entry["name"], bytes.fromhex(entry["msgpack_hex"])
            value = parse_elixir(entry["elixir"])
            encoded = encode_value(value)
            self.check(encoded == wanted, f"value {name}: encodes to {encoded.hex()}, expected {wanted.hex()}")
            self.check(values_equal(decode_strict(wanted), value), f"value {name}: strict decode")
            self.check(values_equal(decode_with_package(wanted), value), f"value {name}: msgpack package decode")
            self.check(values_equal(decode_checked(wanted), value), f"value {name}: cross-checked decode")
            round_trip = from_tagged(parse_json(json.dumps(to_tagged(value))))
            self.check(values_equal(round_trip, value), f"value {name}: tagged JSON round trip")

    def test_decoder_rejects(self) -> None:
        too_deep = "91" * (MAX_DEPTH + 1) + "c0"
        deepest = "91" * MAX_DEPTH + "c0"
        bad = {
            "int 10 as int8": "d00a",
            "int 5 as uint8": "cc05",
            "int 200 as uint16": "cd00c8",
            "int -1 as int8": "d0ff",
            "int -100 as int16": "d1ff9c",
            "float32": "ca3fc00000",
            "1-byte str as str8": "d90141",
            "str 32 bytes as str16": "da0020" + "73" * 32,
            "str not UTF-8": "a1ff",
            "byte 0xc1": "c1",
            "fixext1": "d40100",
            "ext8": "c70101ff",
            "trailing bytes": "c0c0",
            "truncated array": "92c0",
            "truncated str": "a3616263"[:-2],
            "list as map key": "8190c0",
            "duplicate map key": "8201c001c0",
            f"{MAX_DEPTH + 1} levels": too_deep,
        }
        for name, hex_text in bad.items():
            try:
                decode_strict(bytes.fromhex(hex_text))
                self.check(False, f"strict decoder accepted {name}")
            except DecodeError:
                self.check(True, name)
        self.check(decode_strict(bytes.fromhex(deepest)) is not None, f"{MAX_DEPTH} levels accepted")
        self.check(decode_reader(bytes.fromhex("ca3fc00000")) == 1.5, "reader accepts float32")
        self.check(decode_reader(bytes.fromhex("d00a")) == 10, "reader accepts non-minimal int")

    def test_encoder_rejects(self) -> None:
        deep: list = []
        for _ in range(MAX_DEPTH):
            deep = [deep]
        bad_values = {
            "2^64": 2 ** 64,
            "-2^63-1": -(2 ** 63) - 1,
            "tuple": (1, 2),
            "list map key": MsgMap([([1], 2)]),
            "duplicate map key": MsgMap([(1, 2), (1, 3)]),
            "text with a lone surrogate": "\udc80",
            f"{MAX_DEPTH + 1} levels": deep,
        }
        for name, value in bad_values.items():
            try:
                encode_value(value)
                self.check(False, f"encoder accepted {name}")
            except ContractError:
                self.check(True, name)
        self.check(encode_value(deep[0]) is not None, f"{MAX_DEPTH} levels encoded")
        for name, key in {"empty key": "", "1025-byte key": "x" * 1025, "lone surrogate key": "\ud800",
                          "not a string": 5}.items():
            try:
                key_hash(key)
                self.check(False, f"key accepted: {name}")
            except ContractError:
                self.check(True, name)
        self.check(key_hash("é" * 512) is not None, "1024-byte key accepted")

    def test_tagged_json(self) -> None:
        text = ('{"k": [null, true, 1, -1, 18446744073709551615, 1.0, 1e+100, "s", {"bin": "/wD+"}, '
                '{"map": [[1, "i"], [1.0, "f"], [true, "b"], ["1", "s"]]}, '
                '{"float": "nan"}, {"float": "inf"}, {"float": "-inf"}, -0.0]}')
        [(_key, value)] = load_tagged_object(text)
        self.check(isinstance(value[5], float) and isinstance(value[4], int), "int vs float")
        self.check(value[8] == b"\xff\x00\xfe", "bin")
        self.check(len(value[9].pairs) == 4, "map keys 1, 1.0, true, '1' stay distinct")
        self.check(values_equal(decode_checked(encode_value(value[9])), value[9]),
                   "map keys 1, 1.0, true, '1' survive the cross-checked decode")
        self.check(math.isnan(value[10]) and value[11] == math.inf and value[12] == -math.inf, "special floats")
        self.check(not values_equal(0.0, -0.0) and not values_equal(1, 1.0) and not values_equal(1, True)
                   and not values_equal("a", b"a"), "type-exact comparison")
        self.check(values_equal(MsgMap([(1, 2), ("a", "b")]), MsgMap([("a", "b"), (1, 2)])), "map order ignored")
        again = load_tagged_object(dump_tagged_object([("k", value)]))[0][1]
        self.check(values_equal(again, value), "dump then load")
        for bad in ('{"k": NaN}', '{"k": 1e999}', '{"k": {"bin": "!!"}}', '{"k": {"x": 1}}',
                    '{"k": 1, "k": 2}', '[1]', '{"k": {"map": [[[1], 2]]}}', '{"k": {"float": "NaN"}}'):
            try:
                load_tagged_object(bad)
                self.check(False, f"tagged JSON accepted {bad}")
            except TaggedJsonError:
                self.check(True, bad)

    # -- fixture ----------------------------------------------------------
    # The original fixture is never opened: SQLite could create -wal/-shm
    # files beside it. Every test works on a copy in a temporary folder.

    def fixture_copy(self, temp: str) -> Path:
        copy = Path(temp) / "fixture_v1"
        copy_data_dir(self.contract_dir / "fixture_v1", copy)
        return copy

    def fixture_expected(self) -> dict[str, object]:
        return dict(load_tagged_object(FIXTURE_EXPECTED_JSON.read_text(encoding="utf-8")))

    def test_fixture(self) -> None:
        from_exs = exs_pairs((self.contract_dir / "fixture_v1.exs").read_text(encoding="utf-8"))
        expected = self.fixture_expected()
        self.check(len(from_exs) == len(expected), f"{FIXTURE_EXPECTED_JSON.name} has every .exs key")
        for key, value in from_exs:
            self.check(key in expected and values_equal(expected[key], value),
                       f"{FIXTURE_EXPECTED_JSON.name} matches the .exs for {show_key(key)}")
        with tempfile.TemporaryDirectory() as temp:
            copy = self.fixture_copy(temp)
            result = verify(copy, expected, exact=True, out=sys.stdout)
            self.check(not result.problems, f"verify fixture copy: {len(result.problems)} problems")
            self.check(result.rows_checked == len(expected), f"fixture holds {result.rows_checked} rows")
            found, errors = read_keys(copy, list(expected) + ["no such key"])
            self.check(not errors, f"read fixture: {errors[:3]}")
            self.check(len(found) == len(expected), "read returns every fixture key, not the missing one")
            self.check(all(values_equal(v, expected[k]) for k, v in found), "read returns the fixture values")
            self.check_read_only_snapshot(copy, expected)

    def check_read_only_snapshot(self, copy: Path, expected: dict[str, object]) -> None:
        """A data dir without write bits verifies, and nothing is created in it."""
        before = sorted(path.name for path in copy.rglob("*"))
        for folder in [copy, *copy.iterdir()]:
            os.chmod(folder, 0o555)
        try:
            result = verify(copy, expected, exact=True, out=sys.stdout)
            found, errors = read_keys(copy, ["fixture:bin"])
        finally:
            for folder in [copy, *copy.iterdir()]:
                os.chmod(folder, 0o755)
        self.check(not result.problems, f"verify read-only snapshot: {len(result.problems)} problems")
        self.check(not errors and found == [("fixture:bin", b"\xff\x00\xfe")], f"read read-only snapshot: {errors}")
        after = sorted(path.name for path in copy.rglob("*"))
        self.check(before == after, f"nothing created in a read-only snapshot: {sorted(set(after) - set(before))}")

    def test_corruptions(self) -> None:
        expected = self.fixture_expected()
        target = key_hash("fixture:uint16")
        shard, table = route(target)

        def corrupt_value(conn):
            conn.execute(f'UPDATE "{table}" SET value = X\'cdea61\' WHERE key_hash = ?', (target,))

        def corrupt_hash(conn):
            conn.execute(f'UPDATE "{table}" SET key_hash = ? WHERE key_hash = ?', (target[:-3] + "A==", target))

        def corrupt_version(conn):
            conn.execute("PRAGMA user_version = 2")

        def corrupt_float32(conn):
            conn.execute(f'UPDATE "{table}" SET value = X\'ca3fc00000\' WHERE key_hash = ?', (target,))

        cases = {"one value byte": (corrupt_value, "value differs"),
                 "one key_hash": (corrupt_hash, "key_hash is"),
                 "user_version": (corrupt_version, "user_version is 2"),
                 "float32 value": (corrupt_float32, "float32")}
        for name, (corrupt, wanted_text) in cases.items():
            with tempfile.TemporaryDirectory() as temp:
                copy = self.fixture_copy(temp)
                conn = sqlite3.connect(shard_path(copy, shard), isolation_level=None)
                corrupt(conn)
                conn.close()
                with open(os.devnull, "w") as quiet:
                    result = verify(copy, expected, exact=True, out=quiet)
                self.check(any(wanted_text in line for line in result.problems),
                           f"corrupted {name}: verify reports {wanted_text!r} (got {result.problems[:3]})")

    # -- write ------------------------------------------------------------

    def vector_values(self) -> list[tuple[str, object]]:
        return [(f"vector:{entry['name']}", parse_elixir(entry["elixir"])) for entry in self.vectors["values"]]

    def test_write_read(self) -> None:
        pairs = self.vector_values() + [
            ("🔑 emoji key", "x" * 70000),
            ("special floats", [math.nan, math.inf, -math.inf, -0.0]),
            ("mixed map keys", MsgMap([(1, "i"), (1.0, "f"), (True, "t"), (None, "n"), (b"\x00", "b")])),
        ]
        with tempfile.TemporaryDirectory() as temp:
            data_dir = Path(temp) / "data"
            writes, errors = prepare_writes(pairs)
            self.check(not errors, f"prepare writes: {errors}")
            write_data(data_dir, writes[:10], batch=1)
            write_data(data_dir, writes[10:], batch=7)
            write_data(data_dir, writes[:3], batch=1)  # overwrite: upsert, not a second row
            result = verify(data_dir, dict(pairs), exact=True, out=sys.stdout)
            self.check(not result.problems, f"verify written dir: {len(result.problems)} problems")
            found, errors = read_keys(data_dir, [key for key, _ in pairs])
            self.check(not errors and len(found) == len(pairs), f"read back written keys: {errors[:3]}")
            self.check(all(values_equal(v, dict(pairs)[k]) for k, v in found), "read back written values")
            for entry in self.vectors["values"]:
                hash_text = key_hash(f"vector:{entry['name']}")
                shard, table = route(hash_text)
                conn = connect_readonly(shard_path(data_dir, shard))
                (blob,) = conn.execute(f'SELECT value FROM "{table}" WHERE key_hash = ?', (hash_text,)).fetchone()
                conn.close()
                self.check(blob.hex() == entry["msgpack_hex"], f"stored bytes of vector {entry['name']}")
            self.check_same_schema(data_dir)

    def check_same_schema(self, data_dir: Path) -> None:
        """Our CREATE statements are the fixture's, text for text."""
        with tempfile.TemporaryDirectory() as temp:
            fixture = self.fixture_copy(temp)
            for shard in SHARDS:
                schemas = []
                for root in (data_dir, fixture):
                    conn = connect_readonly(shard_path(root, shard))
                    schemas.append(sorted(conn.execute("SELECT type, name, sql FROM sqlite_master")))
                    conn.close()
                self.check(schemas[0] == schemas[1], f"{shard}: schema text equals the fixture's")

    def test_concurrent_writers(self) -> None:
        """Several processes write one fresh data dir at once; nothing is lost."""
        writers, keys_each = 12, 30
        with tempfile.TemporaryDirectory() as temp:
            data_dir = Path(temp) / "data"
            expected: dict[str, object] = {}
            processes = []
            for writer in range(writers):
                pairs = [(f"w{writer}:{i}", MsgMap([("writer", writer), ("i", i), ("f", i / 3)]))
                         for i in range(keys_each)]
                pairs.append(("shared", writer))  # every writer overwrites this one
                expected.update(pairs)
                data_file = Path(temp) / f"writer{writer}.json"
                data_file.write_text(dump_tagged_object(pairs), encoding="utf-8")
                batch = "1" if writer % 2 == 0 else "10"
                processes.append(subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "write", str(data_dir), str(data_file),
                     "--batch", batch], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            for process in processes:
                _out, err = process.communicate(timeout=300)
                self.check(process.returncode == 0, f"writer exit {process.returncode}: {err.decode()[-300:]}")
            found, errors = read_keys(data_dir, ["shared"])
            self.check(not errors and len(found) == 1 and found[0][1] in range(writers), "shared key holds one writer")
            expected["shared"] = found[0][1] if found else None
            result = verify(data_dir, expected, exact=True, out=sys.stdout)
            self.check(not result.problems, f"verify after concurrent writes: {len(result.problems)} problems")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def command_verify(args: argparse.Namespace) -> int:
    try:
        expected = dict(load_tagged_object(_read_text(args.expected_json)))
    except (OSError, TaggedJsonError) as error:
        print(f"verify: cannot load {args.expected_json}: {error}", file=sys.stderr)
        return 2
    result = verify(Path(args.dir), expected, args.exact)
    print(f"verify: {result.rows_checked} keys checked, {len(result.problems)} problems")
    return 1 if result.problems else 0


def command_write(args: argparse.Namespace) -> int:
    if args.batch < 1:
        print("write: --batch must be at least 1", file=sys.stderr)
        return 2
    try:
        pairs = load_tagged_object(_read_text(args.data_json))
    except (OSError, TaggedJsonError) as error:
        print(f"write: cannot load {args.data_json}: {error}", file=sys.stderr)
        return 2
    writes, errors = prepare_writes(pairs)
    if errors:
        for error in errors:
            print(f"write: refused: {error}", file=sys.stderr)
        print(f"write: {len(errors)} keys refused; nothing written", file=sys.stderr)
        return 2
    try:
        write_data(Path(args.dir), writes, args.batch)
    except (ContractError, sqlite3.Error, OSError) as error:
        print(f"write: failed: {error}", file=sys.stderr)
        return 1
    print(f"write: {len(writes)} keys written to {args.dir}")
    return 0


def command_read(args: argparse.Namespace) -> int:
    try:
        keys = parse_json(_read_text(args.keys_json))
    except (OSError, TaggedJsonError) as error:
        print(f"read: cannot load {args.keys_json}: {error}", file=sys.stderr)
        return 2
    if not isinstance(keys, list) or isinstance(keys, _JsonObject):
        print("read: KEYS_JSON must be a JSON array of keys", file=sys.stderr)
        return 2
    found, errors = read_keys(Path(args.dir), keys)
    sys.stdout.write(dump_tagged_object(found))
    for error in errors:
        print(f"read: {error}", file=sys.stderr)
    return 1 if errors else 0


def command_selftest(args: argparse.Namespace) -> int:
    return 0 if SelfTest(Path(args.contract_dir)).run() else 1


def command_exs_to_json(args: argparse.Namespace) -> int:
    sys.stdout.write(dump_tagged_object(exs_pairs(_read_text(args.exs))))
    return 0


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(encoding="utf-8")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    verify_parser = commands.add_parser("verify", help="check a data dir against the contract and expected values")
    verify_parser.add_argument("dir")
    verify_parser.add_argument("expected_json", help="tagged JSON object {key: expected value}")
    verify_parser.add_argument("--exact", action="store_true", help="the data dir must hold no other keys")
    verify_parser.set_defaults(run=command_verify)

    write_parser = commands.add_parser("write", help="upsert the keys of a tagged JSON object into a data dir")
    write_parser.add_argument("dir")
    write_parser.add_argument("data_json", help="tagged JSON object {key: value}")
    write_parser.add_argument("--batch", type=int, default=1, help="keys per transaction per file (default 1)")
    write_parser.set_defaults(run=command_write)

    read_parser = commands.add_parser("read", help="print the values of keys as a tagged JSON object")
    read_parser.add_argument("dir")
    read_parser.add_argument("keys_json", help="JSON array of keys")
    read_parser.set_defaults(run=command_read)

    selftest_parser = commands.add_parser("selftest", help="check this program against vectors.json and fixture_v1")
    selftest_parser.add_argument("--contract-dir", default=str(default_contract_dir()),
                                 help="the shared/contract folder (default: %(default)s)")
    selftest_parser.set_defaults(run=command_selftest)

    exs_parser = commands.add_parser("exs-to-json", help="print an .exs fixture list as tagged JSON")
    exs_parser.add_argument("exs")
    exs_parser.set_defaults(run=command_exs_to_json)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
