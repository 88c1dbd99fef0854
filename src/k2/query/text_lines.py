"""CSV and JSON lines of a table in the text form (query/frames.py), built by Arrow.

Making a Python object per value cost most of an export: a day of trades went out as CSV or JSON
lines at about 300,000 rows/s, against 1.5-1.9 million as Arrow or Parquet (bench/query.py).
Here Arrow builds the lines. Each returns None when a value needs something this fast path does
not do (a null, a quote, a backslash, a comma or a control character in a string), and the caller
then writes that table the slow way. The bytes are the same either way: the tests compare them.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from k2.query.frames import as_text

# what a JSON string must escape, and what CSV must quote
_JSON_SPECIAL = r'["\\\x00-\x1f]'
_CSV_SPECIAL = r'[",\r\n]'


def _plain(table: pa.Table, special: str) -> bool:
    """Whether no value is null and no string holds a character matching `special`. Decimals and
    times are not looked at: their text (digits, point, sign, T, colons, Z) never needs it."""
    for column in table.columns:
        if column.null_count:
            return False
        if (
            pa.types.is_string(column.type)
            and pc.any(pc.match_substring_regex(column, special)).as_py()
        ):
            return False
    return True


def jsonl(table: pa.Table) -> bytes | None:
    """One JSON object per row of `table`'s text, keys in column order, as orjson writes a row's
    dict; None where a value needs escaping or is null."""
    if not len(table) or not _plain(table, _JSON_SPECIAL):
        return None
    table = as_text(table)
    pieces: list[pa.Array | pa.ChunkedArray | str] = []
    for i, (name, column) in enumerate(zip(table.column_names, table.columns, strict=True)):
        pieces.append(("{" if i == 0 else ",") + f'"{name}":')
        if pa.types.is_string(column.type):
            pieces += ['"', column, '"']
        elif pa.types.is_integer(column.type):
            pieces.append(pc.cast(column, pa.string()))
        else:
            return None
    pieces.append("}\n")
    return _concat(pc.binary_join_element_wise(*pieces, ""))


def _concat(lines: pa.ChunkedArray | pa.Array) -> bytes:
    """The strings of `lines` back to back, straight from their data buffer."""
    array = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    _, offsets, data = array.buffers()
    if data is None:
        return b""
    kind = pa.int64() if pa.types.is_large_string(array.type) else pa.int32()
    bounds = pa.Array.from_buffers(kind, len(array) + 1, [None, offsets], offset=array.offset)
    first, end = int(bounds[0].as_py()), int(bounds[len(array)].as_py())
    return bytes(data.slice(first, end - first).to_pybytes())


def csv(table: pa.Table, header: bool) -> bytes | None:
    """`table`'s text as CSV, `header` first if asked, as Python's csv module writes it by
    default (a value is quoted only if it must be); None where one would need quotes or is null."""
    if not _plain(table, _CSV_SPECIAL):
        return None
    table = as_text(table)
    out = io.BytesIO()
    if header:  # Arrow quotes the names whatever the style; the csv module does not
        out.write((",".join(table.column_names) + "\n").encode())
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    pacsv.write_csv(table, out, options)
    return out.getvalue()
