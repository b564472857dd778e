"""The policy expression language: forms, units, errors, nulls, odd bytes, and
the property that the vectorized evaluation agrees with the per-row reference."""

from __future__ import annotations

import math
import os
import pwd

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiering.core.inventory import CATALOG_FIELDS, SCHEMA
from tiering.policy import (
    ExpressionError,
    PolicyError,
    augment,
    compile_condition,
    compile_value,
    evaluate_row,
    explain,
    needed_columns,
    project,
)
from tiering.policy.reference import field_value

S, D = 10**9, 86400 * 10**9
NOW = 1_700_000_000 * S
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
FULL_SCHEMA = pa.schema([*SCHEMA, *CATALOG_FIELDS])


def entry(path: bytes, size: int = 0, age_days: float = 0, kind: str = "file", **more) -> dict:
    ns = NOW - int(age_days * D)
    row = {"path": path, "type": kind, "size": size, "blocks": size // 512, "mode": 0o644, "uid": 0, "gid": 0,
               "atime_ns": ns, "mtime_ns": ns, "ctime_ns": ns, "ino": len(path), "nlink": 1, "state": None, "tier": None,
               "heat": None, "pinned": None}
    row.update(more)
    return row


ROWS = [
    entry(b"shards/0001.tar", 3 * GiB, 41, mtime_ns=NOW - 50 * D),                                  # 0
    entry(b"shards/old/0002.tar", 100 * MiB, 10, state="archived", tier="hdd", heat=2.5, pinned=False),  # 1
    entry(b"ckpt/step-100/model.PT", 0, 1, state="released", tier="oss", heat=0.5, pinned=True),    # 2
    entry(b"x\xff\xfe/.bashrc", 10, 0, uid=1000, gid=1000, nlink=2),                                  # 3
    entry(b"README", 4 * KiB, 400, kind="dir"),                                                      # 4
    entry(b"data/a.tar.gz", 64 * KiB, 31, kind="symlink", state="dirty", heat=0.0),                 # 5
    entry("café/photo.JPG".encode(), 2_000_000, 5, heat=7.0),                                        # 6
]
BATCH = pa.RecordBatch.from_pylist(ROWS, schema=FULL_SCHEMA)


def selected(text: str, batch: pa.RecordBatch = BATCH, rows: list[dict] = ROWS, **kw) -> list[int]:
    """Rows the vectorized evaluation selects, after checking the reference agrees."""
    cond = compile_condition(text, **kw)
    mask = cond.mask(batch, NOW).to_pylist()
    assert mask == [cond.evaluate_row(row, NOW) for row in rows], text
    assert None not in mask
    return [i for i, hit in enumerate(mask) if hit]


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        # comparisons over each kind
        ("size >= 1GiB", [0]),
        ("size > 100MiB or size == 0", [0, 2]),
        ("size < 64KiB", [2, 3, 4]),
        ("size <= 65536", [2, 3, 4, 5]),
        ("size != 10", [0, 1, 2, 4, 5, 6]),
        ("size > 1.9MB and size < 2.1MB", [6]),
        ("blocks * 512 == size", [0, 1, 2, 4, 5]),
        ("atime_age > 30d", [0, 4, 5]),
        ("atime_age >= 720h and mtime_age > 49d", [0, 4]),
        ("atime_age < 90m", [3]),
        ("atime_age > 86400", [0, 1, 4, 5, 6]),
        ("ctime_age > 2w", [0, 4, 5]),
        ("atime < 2023-10-05", [0, 4]),
        ("mtime >= '2023-11-14T00:00:00Z'", [3]),
        ("mtime > 2023-11-14T08:00:00+08:00", [3]),
        ("depth == 1", [4]),
        ("depth >= 3", [1, 2]),
        ("uid == 1000 and gid == 1000", [3]),
        ("nlink > 1", [3]),
        ("heat > 1", [1, 6]),
        ("heat == 0", [0, 3, 4, 5]),
        # text fields
        ('path == "README"', [4]),
        ('name == "0002.tar"', [1]),
        ('name == ".bashrc"', [3]),
        ('suffix == ".tar"', [0, 1]),
        ('suffix == ".gz"', [5]),
        ('suffix == ""', [3, 4]),
        ('suffix == ".JPG"', [6]),
        ('dirname == ""', [4]),
        ('dirname == "shards"', [0]),
        ('dirname == "x\\xff\\xfe"', [3]),
        ('type == "dir"', [4]),
        ('type != "file"', [4, 5]),
        ('state == "resident"', [0, 3, 4, 6]),
        ('state in ["archived", "dirty"]', [1, 5]),
        ('state not in ["resident"]', [1, 2, 5]),
        ('tier == ""', [0, 3, 4, 5, 6]),
        ('tier == "oss"', [2]),
        ("pinned", [2]),
        ("not pinned", [0, 1, 3, 4, 5, 6]),
        ("pinned == false", [0, 1, 3, 4, 5, 6]),
        # lists
        ('suffix in [".tar", ".gz",]', [0, 1, 5]),
        ('suffix not in [".tar", ".gz"]', [2, 3, 4, 6]),
        ("size in [0, 10, 4KiB]", [2, 3, 4]),
        ("heat in [0.5, 7]", [2, 6]),
        ("depth in []", []),
        ("depth not in []", [0, 1, 2, 3, 4, 5, 6]),
        # globs: whole value, * within a directory, ** across
        ('path ~ "shards/*"', [0]),
        ('path ~ "shards/**"', [0, 1]),
        ('path ~ "**/*.tar"', [0, 1]),
        ('path ~ "**/model.??"', [2]),
        ('name ~ "*.[Tt][Aa][Rr]"', [0, 1]),
        ('name ~ "[!0-9]*"', [2, 3, 4, 5, 6]),
        ('path ~ "caf\\xc3\\xa9/*"', [6]),
        ('path ~ "café/*"', [6]),
        ('path ~ "x??/*"', [3]),
        ('path ~ "x\\xff*"', []),
        ('path ~ "x\\xff*/*"', [3]),
        ("path ~ 'shards/\\*'", []),
        ("path ~ 'shards/\\0001.tar'", [0]),
        ('state ~ "re*"', [0, 2, 3, 4, 6]),
        # regular expressions: searched, RE2, bytes
        ('path =~ "^shards/"', [0, 1]),
        ("name =~ '^[0-9]+\\.tar$'", [0, 1]),
        ("suffix =~ '(?i)^\\.jpe?g$'", [6]),
        ('path =~ "\\xff"', [3]),
        ("path =~ 'é'", [6]),
        ("type =~ 'link'", [5]),
        # logic and precedence
        ('not size > 1MiB and type == "file"', [2, 3]),
        ('size > 1MiB or type == "dir" and depth == 1', [0, 1, 4, 6]),
        ('(size > 1MiB or type == "dir") and depth == 1', [4]),
        ("not not pinned", [2]),
        ("true", [0, 1, 2, 3, 4, 5, 6]),
        ("false or size == 10", [3]),
        ("(size > 1GiB) == true", [0]),
        # arithmetic
        ("size / 1GiB > 2", [0]),
        ("size + 1GiB > 2GiB", [0]),
        ("size - 1MiB < 0", [2, 3, 4, 5]),
        ("atime_age * 2 > 60d", [0, 4, 5]),
        ("atime_age / 1d > 40 and -size < 0", [0, 4]),
        ("size * atime_age > 1000000000000000", [0]),
        ("size / 0 > 1", [0, 1, 3, 4, 5, 6]),
        ("size / size == 1", [0, 1, 3, 4, 5, 6]),
        ("heat * 2 - 1 >= 4", [1, 6]),
        ("-(atime_age) < -30d", [0, 4, 5]),
        ("2 * 3 == 6", [0, 1, 2, 3, 4, 5, 6]),
    ],
)
def test_expression_forms(text, rows):
    assert selected(text) == rows


def test_users_and_groups_resolve_by_name():
    root = pwd.getpwuid(0).pw_name
    assert selected(f'user == "{root}"') == [0, 1, 2, 4, 5, 6]
    assert selected("user != 0") == [3]
    assert selected(f'user in ["{root}", 1000]') == list(range(7))
    assert selected("group == 1000") == [3]


@pytest.mark.parametrize(
    ("literal", "value"),
    [("64KiB", 64 * KiB), ("1.5GiB", 3 * GiB // 2), ("10MB", 10_000_000), ("4096B", 4096), ("2tib", 2 << 40),
     ("1KB", 1000), ("30d", 30 * 86400.0), ("12h", 43200.0), ("90m", 5400.0), ("45s", 45.0), ("500ms", 0.5),
     ("2w", 14 * 86400.0), ("42", 42), ("1.5", 1.5), ("-3", -3)],
)
def test_literals_with_units(literal, value):
    ast = compile_value(literal).ast
    assert ast.value == value and type(ast.value) is type(value)


def test_dates_are_utc_unless_zoned():
    assert compile_condition("mtime < 1970-01-02").ast.right.value == D
    assert compile_condition("mtime < 1970-01-01T01:00:00+01:00").ast.right.value == 0
    assert compile_condition("mtime < 1969-12-31").ast.right.value == -D


def test_null_and_missing_catalog_columns_read_as_defaults():
    rows = [entry(b"a"), entry(b"b", state="archived", tier="hdd", heat=3.0, pinned=True)]
    bare_rows = [{k: r[k] for k in SCHEMA.names} for r in rows]
    bare = pa.RecordBatch.from_pylist(bare_rows, schema=SCHEMA)
    nulls = pa.RecordBatch.from_pylist(rows, schema=FULL_SCHEMA)
    defaults = 'state == "resident" and tier == "" and heat == 0 and not pinned'
    assert selected(defaults, bare, bare_rows) == [0, 1]
    assert selected(defaults, nulls, rows) == [0]
    assert selected("heat > 1 and pinned", nulls, rows) == [1]
    assert augment(bare, {"state", "heat", "pinned", "tier"}, NOW).column("state").to_pylist() == ["resident"] * 2


def test_string_typed_paths_and_dictionary_types_are_accepted():
    batch = pa.RecordBatch.from_pydict(
        {"path": ["a/b.txt", "c"], "type": pa.array(["file", "dir"]).dictionary_encode(), "size": [1, 2]})
    cond = compile_condition('suffix == ".txt" and type == "file" and path ~ "a/*"')
    assert cond.mask(batch, NOW).to_pylist() == [True, False]


def test_non_utf8_paths_never_fail():
    odd = [b"\xff", b"\xff/\xfe.\xfd", b"a\n/b\n.c\n", b"/", b"a//b", b"", b".x.", b"..y", b"d/\x80\x81/e"]
    rows = [entry(p) for p in odd]
    batch = pa.RecordBatch.from_pylist(rows, schema=FULL_SCHEMA)
    aug = augment(batch, {"name", "suffix", "dirname", "depth"}, NOW)
    assert aug.column("name").to_pylist() == [b"\xff", b"\xfe.\xfd", b"b\n.c\n", b"", b"b", b"", b".x.", b"..y", b"e"]
    assert aug.column("dirname").to_pylist() == [b"", b"\xff", b"a\n", b"", b"a/", b"", b"", b"", b"d/\x80\x81"]
    assert aug.column("suffix").to_pylist() == [b"", b".\xfd", b".c\n", b"", b"", b"", b"", b".y", b""]
    assert aug.column("depth").to_pylist() == [1, 2, 2, 2, 3, 1, 1, 1, 3]
    assert selected('name ~ "*" and path =~ "."', batch, rows) == [0, 1, 2, 3, 4, 6, 7, 8]
    assert selected('suffix == ".\\xfd" or dirname ~ "d/\\x80?"', batch, rows) == [1, 8]


def test_explain_quotes_values_with_units():
    cond = compile_condition('path ~ "shards/*" and atime_age > 30d and size >= 1GiB')
    assert cond.explain(ROWS[0], NOW) == ["path matches 'shards/*'", "atime_age 41d > 30d", "size 3GiB >= 1GiB"]
    assert cond.explain(ROWS[1], NOW) == ["path does not match 'shards/*'"]
    assert explain(cond.ast, ROWS[6], NOW) == ["path does not match 'shards/*'"]
    either = compile_condition("atime_age > 30d or size > 1GiB or pinned")
    assert either.explain(ROWS[4], NOW) == ["atime_age 400d > 30d"]
    assert either.explain(ROWS[3], NOW) == ["atime_age 0s <= 30d", "size 10B <= 1GiB", "not pinned"]


def test_explain_lists_matches_classes_and_arithmetic():
    big = compile_condition("size > 1MiB")
    cond = compile_condition('big and suffix in [".tar"] and name =~ "^0" and (size / 1GiB) > 2', {"big": big})
    assert cond.explain(ROWS[0], NOW) == [
        "big: size 3GiB > 1MiB", "suffix '.tar' in [\".tar\"]", "name '0001.tar' matches regex '^0'",
        "(size / 1GiB) 3 > 2",
    ]
    assert cond.explain(ROWS[6], NOW) == ["suffix '.JPG' not in [\".tar\"]"]
    assert compile_condition("mtime < 2023-10-01").explain(ROWS[0], NOW) == ["mtime 2023-09-25T22:13:20Z < 2023-10-01"]
    assert compile_condition('dirname == "x"').explain(ROWS[3], NOW) == ["dirname 'x\\xff\\xfe' != \"x\""]


def test_weights_are_float64_per_row():
    weight = compile_value("size * atime_age")
    values = weight.values(BATCH, NOW)
    assert values.type == pa.float64()
    assert values.to_pylist() == [weight.evaluate_row(row, NOW) for row in ROWS]
    assert values[0].as_py() == 3 * GiB * 41 * 86400.0


def test_planner_path_augment_once_then_project():
    conds = [compile_condition(t) for t in ('suffix == ".tar"', "atime_age > 30d", 'user == 0 and depth > 1')]
    batch = augment(BATCH, needed_columns(*conds), NOW)
    masks = [project(batch, c.arrow).to_pylist() for c in conds]
    assert masks == [c.mask(BATCH, NOW).to_pylist() for c in conds]
    assert len(compile_condition("size > 1").filter(BATCH, NOW)) == 6
    assert evaluate_row(conds[0].ast, ROWS[0], NOW) is True


# -- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path ~ 'x/*' and size > ", "column 25: expected a value after '>', found end of expression"),
        ("", "column 1: empty expression; expected a condition such as size > 1GiB"),
        ("atme > 30d", "column 1: unknown field 'atme'; did you mean 'atime'?"),
        ("atime_age > 30dd", "column 13: unknown unit 'dd' in '30dd'; did you mean 'd'?"),
        ("size > 64KiBs", "column 8: unknown unit 'KiBs' in '64KiBs'; did you mean 'KiB'?"),
        ("size > 1.5B", ("column 8: '1.5B' is not a whole number of bytes; expected a size like 4096, '512KiB', "
                        "'64MiB' or '1.5GB'")),
        ('size > "big"', ("column 8: cannot compare size (a size) with \"big\" (text); expected a size like 64KiB "
                         "or 1.5GiB (or a number of bytes)")),
        ("size > 30d", ("column 8: cannot compare size (a size) with 30d (a duration); expected a size like 64KiB "
                       "or 1.5GiB (or a number of bytes)")),
        ("atime_age > 1GiB", ("column 13: cannot compare atime_age (a duration) with 1GiB (a size); expected a "
                             "duration like 30d, 12h or 90m (or a number of seconds)")),
        ("mtime > 30", ("column 9: cannot compare mtime (a timestamp) with 30 (a number); expected a date like "
                       "2024-01-31 or 2024-01-31T12:00:00Z")),
        ('size ~ "*.tar"', ("column 1: '~' (glob) needs text on the left, found size (a size); text fields are "
                           "path, name, suffix, dirname, type, state, tier, storage_class")),
        ("heat =~ '1'", ("column 1: '=~' (regex) needs text on the left, found heat (a number); text fields are "
                        "path, name, suffix, dirname, type, state, tier, storage_class")),
        ('path < "a"', "column 1: '<' does not apply to path (text); use ==, !=, in, ~ or =~"),
        ("pinned > false", "column 1: '>' does not apply to pinned (a condition); use ==, != or in"),
        ("chekpoint and size > 1", "column 1: unknown class 'chekpoint'; did you mean 'checkpoint'?"),
        ("zzz", "column 1: unknown class 'zzz'; known classes: checkpoint"),
        ("size", "column 1: expected a condition, found size (a size); compare it, e.g. size > 1GiB"),
        ("size > 1 and atime", "column 14: expected a condition, found atime (a timestamp)"),
        ("atime + 1d > 0", "column 1: cannot add atime (a timestamp); use atime_age"),
        ("size + 1d > 0", "column 8: cannot add size (a size) and 1d (a duration)"),
        ('path + 1 > 0', "column 1: cannot add path (text)"),
        ("size > 1 size < 2", ("column 10: expected 'and', 'or', an operator or the end of the expression after "
                              "'1', found 'size'")),
        ("1 < size < 5", "column 10: comparisons cannot be chained; use 'and' before '<'"),
        ("(size > 1", "column 10: expected ')' to close '(' at column 1 after '1', found end of expression"),
        ("size = 1", "column 6: unexpected '='; did you mean '=='?"),
        ("size > 1 && pinned", "column 10: unexpected '&&'; did you mean 'and'?"),
        ("size > $", "column 8: unexpected character '$'"),
        ("size>1and pinned", "column 6: unknown unit 'and' in '1and'; put a space before 'and'"),
        ('path == "abc', "column 9: unterminated string; expected a closing \""),
        ('path == "a\\qb"', ("column 11: unknown escape '\\q' in a string; use \\\\, \\\", \\n, \\t, \\xHH, or a "
                            "'single-quoted' raw string")),
        ("path ~ 5", "column 8: expected a quoted glob pattern after '~', found '5'"),
        ("size in 5", "column 9: expected '[' starting a list of values after 'in', found '5'"),
        ("size in [1 2]", "column 12: expected ',' or ']' after '1', found '2'"),
        ("size in [size]", "column 10: expected a literal value in the list, found 'size'"),
        ("suffix in [1]", "column 12: cannot compare suffix (text) with 1 (a number); expected a quoted string"),
        ('state == "archvied"', "column 10: unknown state 'archvied'; did you mean 'archived'?"),
        ('type == "socket"', "column 9: unknown type 'socket'; expected one of 'file', 'dir', 'symlink'"),
        ('user == "no-such-user-x"', ("column 9: unknown user 'no-such-user-x' on this host; expected an existing "
                                     "user or a numeric id")),
        ("user > 0", "column 1: '>' does not apply to user (a user or group); use ==, != or in"),
        ("path =~ '(?<=a)b'", "column 9: invalid regular expression: invalid perl operator: (?<="),
        ("path =~ '('", "column 9: invalid regular expression: missing ), unterminated subpattern at position 0"),
        ('path ~ "[abc"', "column 8: invalid glob pattern: unclosed '[' in the glob pattern"),
        ("mtime < 2024-13-01", "column 9: invalid date '2024-13-01': month must be in 1..12"),
        ("size > 99999999999999999999", "column 8: number 99999999999999999999 is too large"),
        ("size >\n  ", "line 2, column 3: expected a value after '>', found end of expression"),
    ],
)
def test_error_messages(text, message):
    checkpoint = compile_condition('path ~ "ckpt/**"')
    with pytest.raises(ExpressionError) as caught:
        compile_condition(text, {"checkpoint": checkpoint})
    assert str(caught.value) == message
    assert isinstance(caught.value, PolicyError) and "\n" not in str(caught.value)


def test_unknown_tier_only_when_tiers_are_known():
    assert selected('tier == "hdd"', tiers=("hdd", "oss")) == [1]
    with pytest.raises(ExpressionError, match=r"column 9: unknown tier 'os'; did you mean 'oss'\?"):
        compile_condition('tier == "os"', tiers=("hdd", "oss"))
    assert selected('tier == "os"') == []


def test_weight_must_be_numeric():
    with pytest.raises(ExpressionError, match=r"column 1: expected a number, size or duration, found path \(text\)"):
        compile_value("path")


# -- property: vectorized == per-row ----------------------------------------------------

_TEXT = ["path", "name", "suffix", "dirname"]
_NUMERIC = {"size": ["0", "1", "4KiB", "1MiB", "1.5GiB", "1000"], "blocks": ["0", "8", "2000"],
            "atime_age": ["0s", "90m", "12h", "30d", "-1d", "86400"], "mtime_age": ["1h", "7d"],
            "ctime_age": ["45s", "2w"], "heat": ["0", "0.5", "1", "2.5", "-1"], "depth": ["1", "2", "3"],
            "nlink": ["1", "2"], "uid": ["0", "1000"]}
_GLOB_PARTS = ["a", "b", ".", "/", "*", "**", "?", "[ab]", "[!a]", "\\xff", "\\n", "**/"]
_REGEX_PARTS = ["a", "b", "\\\\.", "/", ".", "^", "[ab]", "[^a]", "a*", "b+", ".?", "(a|b)", "\\xff", "\\n"]
_BYTES = st.sampled_from([b"a", b"b", b".", b"/", b"\xff", b"\n", b"*", b"\xc3\xa9", b"tar", b".."])


def _quoted(parts: list[str]) -> str:
    return '"' + "".join(parts) + '"'


_CONSTANTS = ["2", "0.5", "0", "-3", "1000000"]
_FIELD_PAIRS = ["atime_age > mtime_age", "size >= blocks * 512", "atime < mtime", "heat > depth", "uid == gid",
                "ctime == mtime"]


@st.composite
def numeric_value(draw, depth: int = 0):
    """A numeric field, or arithmetic over them (+/- only with plain numbers, as the kinds require)."""
    if depth >= 2 or draw(st.booleans()):
        return draw(st.sampled_from(sorted(_NUMERIC)))
    left, op = draw(numeric_value(depth + 1)), draw(st.sampled_from("+-*/"))
    constant = st.sampled_from(_CONSTANTS)
    right = draw(constant if op in "+-" else constant | numeric_value(depth + 1))
    return f"{'-' if draw(st.booleans()) else ''}({left} {op} {right})"


@st.composite
def comparison(draw):
    shape = draw(st.sampled_from(["num", "num", "arith", "pair", "text", "glob", "regex", "in", "bool", "state",
                                  "time", "class"]))
    op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
    if shape == "num":
        field = draw(st.sampled_from(sorted(_NUMERIC)))
        return f"{field} {op} {draw(st.sampled_from(_NUMERIC[field]))}"
    if shape == "arith":
        return f"{draw(numeric_value())} {op} {draw(st.sampled_from(_CONSTANTS))}"
    if shape == "pair":
        return draw(st.sampled_from(_FIELD_PAIRS))
    if shape == "text":
        value = b"".join(draw(st.lists(_BYTES, max_size=4)))
        shown = "".join(f"\\x{b:02x}" for b in value)
        return f'{draw(st.sampled_from(_TEXT))} {draw(st.sampled_from(["==", "!="]))} "{shown}"'
    if shape == "glob":
        return f"{draw(st.sampled_from(_TEXT))} ~ {_quoted(draw(st.lists(st.sampled_from(_GLOB_PARTS), max_size=5)))}"
    if shape == "regex":
        return f"{draw(st.sampled_from(_TEXT))} =~ {_quoted(draw(st.lists(st.sampled_from(_REGEX_PARTS), max_size=4)))}"
    if shape == "in":
        items = draw(st.lists(st.sampled_from(['".tar"', '".gz"', '""', '".\\xff"', '"."', '"a"', '"a/b"', '"/"',
                                               '"\\xff"', '"..a"']), max_size=3))
        return f"{draw(st.sampled_from(_TEXT))} {draw(st.sampled_from(['in', 'not in']))} [{', '.join(items)}]"
    if shape == "bool":
        return draw(st.sampled_from(["pinned", "pinned == true", "pinned != false", "true", "false"]))
    if shape == "state":
        return draw(st.sampled_from(['state == "resident"', 'state in ["archived", "released"]', 'tier == ""',
                                     'tier != "hdd"', 'type == "dir"', "heat in [0, 1.5, 2]", "size in [0, 1KiB]"]))
    if shape == "time":
        return draw(st.sampled_from(["mtime < 2001-01-01", "atime >= 1999-12-31T23:59:59Z", "ctime != 1970-01-01"]))
    return draw(st.sampled_from(["big", "not big", "tarball"]))


@st.composite
def condition(draw, depth: int = 0):
    if depth >= 3 or draw(st.integers(0, 2)) == 0:
        return draw(comparison())
    kind = draw(st.sampled_from(["and", "or", "not"]))
    if kind == "not":
        return f"not ({draw(condition(depth + 1))})"
    return f"({draw(condition(depth + 1))} {kind} {draw(condition(depth + 1))})"


_TIMES = st.integers(min_value=0, max_value=4 * 10**18)
_ROW = st.fixed_dictionaries({
    "path": st.lists(_BYTES, max_size=8).map(b"".join) | st.binary(max_size=12),
    "type": st.sampled_from(["file", "dir", "symlink"]),
    "size": st.integers(0, 1 << 45) | st.sampled_from([0, 1, 4096, 1 << 30]),
    "blocks": st.integers(0, 1 << 20),
    "mode": st.just(0o644),
    "uid": st.sampled_from([0, 1000]),
    "gid": st.sampled_from([0, 1000]),
    "atime_ns": _TIMES, "mtime_ns": _TIMES, "ctime_ns": _TIMES,
    "ino": st.just(1),
    "nlink": st.integers(1, 3),
    "state": st.none() | st.sampled_from(["resident", "archived", "released", "dirty"]),
    "tier": st.none() | st.sampled_from(["hdd", "oss", ""]),
    "heat": st.none() | st.floats(allow_nan=True, allow_infinity=True, width=64) | st.sampled_from([0.0, 1.5, 2.0]),
    "pinned": st.none() | st.booleans(),
})
#: Examples per property test; raise it for a longer hunt: POLICY_EXAMPLES=5000 pytest ...
EXAMPLES = int(os.environ.get("POLICY_EXAMPLES", "200"))
CLASSES = {"big": compile_condition("size >= 1MiB"), "tarball": compile_condition('name ~ "*.tar" or suffix == ".gz"')}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_ROW, min_size=1, max_size=25), text=condition(), now=_TIMES)
def test_vectorized_agrees_with_reference(rows, text, now):
    cond = compile_condition(text, CLASSES)
    batch = pa.RecordBatch.from_pylist(rows, schema=FULL_SCHEMA)
    expected = [cond.evaluate_row(row, now) for row in rows]
    assert cond.mask(batch, now).to_pylist() == expected
    assert all(isinstance(line, str) for line in cond.explain(rows[0], now))


@settings(max_examples=EXAMPLES, deadline=None)
@given(rows=st.lists(_ROW, min_size=1, max_size=10), pick=st.integers(0, 9), field=st.sampled_from(_TEXT),
       how=st.sampled_from(["==", "in", "~"]))
def test_text_tests_find_the_row_they_were_taken_from(rows, pick, field, how):
    row = rows[pick % len(rows)]
    value = field_value(field, row, NOW)
    shown = '"' + "".join(f"\\x{b:02x}" for b in value) + '"'
    text = {"==": f"{field} == {shown}", "in": f'{field} in ["x", {shown}]', "~": f"{field} ~ {shown}"}[how]
    if how == "~" and any(c in value for c in b"*?[\\"):
        text = f"{field} == {shown}"
    cond = compile_condition(text)
    batch = pa.RecordBatch.from_pylist(rows, schema=FULL_SCHEMA)
    mask = cond.mask(batch, NOW).to_pylist()
    assert mask == [cond.evaluate_row(r, NOW) for r in rows]
    assert mask[pick % len(rows)] is True


@settings(max_examples=EXAMPLES, deadline=None)
@given(rows=st.lists(_ROW, min_size=1, max_size=10), text=numeric_value(), now=_TIMES)
def test_weights_agree_with_reference(rows, text, now):
    weight = compile_value(text)
    batch = pa.RecordBatch.from_pylist(rows, schema=FULL_SCHEMA)
    got = weight.values(batch, now).to_pylist()
    for value, row in zip(got, rows, strict=True):
        expected = weight.evaluate_row(row, now)
        assert value == expected or (math.isnan(value) and math.isnan(expected))


def test_tables_work_like_batches():
    table = pa.Table.from_batches([BATCH, BATCH])
    cond = compile_condition('suffix == ".tar" or name =~ "^R" or atime_age > 100d')
    assert cond.mask(table, NOW).to_pylist() == cond.mask(BATCH, NOW).to_pylist() * 2
    assert cond.filter(table, NOW).num_rows == 6
