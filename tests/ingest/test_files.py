"""One file to a raw table: unsupported, unparseable and unreadable files, delimiters, the series key read dictionary-encoded."""
import os

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from gpu_features import read_bars
from gpu_features.errors import BarsError
from gpu_features.ingest import ReadSpec
from tests.ingest.samples import tbl, walk


def test_unsupported_type(tmp_path):
    (tmp_path / "bars.xlsx").write_text("x")
    with pytest.raises(BarsError, match="unsupported file type '.xlsx'; give a .parquet"):
        read_bars(tmp_path / "bars.xlsx")


def test_unparseable_file(tmp_path):
    (tmp_path / "bars.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(BarsError, match="could not be parsed .*valid parquet file"):
        read_bars(tmp_path / "bars.parquet")


def test_unreadable_file_says_permission(tmp_path, monkeypatch):
    path = tmp_path / "locked.parquet"
    path.write_bytes(b"PAR1")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make the open fail as it does for other users
        import builtins

        real_open = builtins.open

        def deny(file, *a, **kw):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *a, **kw)

        monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(BarsError, match="cannot be read \\(permission denied\\)"):
        read_bars(path)


def test_semicolon_file_is_sniffed_and_a_wrong_delimiter_gets_a_hint(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("timestamp;open;high;low;close\n2024-01-01T00:00:00Z;1;2;0.5;1.5\n2024-01-01T00:01:00Z;1;2;0.5;1\n")
    assert read_bars(path).n == 2
    with pytest.raises(BarsError, match=r"--delimiter ',' does not occur in the first line \(which looks "
                                        r"';'-separated\); leave --delimiter out \(it is sniffed\)"):
        read_bars(path, delimiter=",")


def test_symbol_column_is_read_dictionary_encoded(tmp_path):
    from gpu_features.ingest.files import read_csv, read_parquet

    path = tmp_path / "s.parquet"
    pq.write_table(tbl(walk(10), symbol=["A", "B"] * 5), path)
    assert pa.types.is_dictionary(read_parquet(path, ReadSpec()).schema.field("symbol").type)
    csv = tmp_path / "s.csv"
    pcsv.write_csv(tbl(walk(10), symbol=["A", "B"] * 5), csv)
    assert pa.types.is_dictionary(read_csv(csv, ReadSpec())[0].schema.field("symbol").type)


CSV_OPTIONS = [  # (first lines, read settings, the words of the refusal naming the option; None: read)
    ("timestamp,open,high,low,close", {"delimiter": "|"}, "--delimiter '|' does not occur in the first line "
                                                         "(which looks ','-separated)"),
    ("timestamp,open,high,low,close", {"columns": ("time", "open", "high", "low", "close")},
     "--columns names the columns of a CSV without a header line, but the file's first line is read as its header"),
    ("timestamp,open,high,low,close", {"header": False}, "--no-header reads the first line as a bar, but it names "
                                                         "columns (timestamp,open,high,low,close)"),
    ("2024-01-01T00:00:00Z,1,2,0.5,1.5", {"header": False, "columns": ("time", "open", "high", "low", "close")}, None),
    ("timestamp\topen\thigh\tlow\tclose", {"delimiter": "\t"}, None),
]


@pytest.mark.parametrize("first, settings, words", CSV_OPTIONS, ids=[str(s) for _, s, _ in CSV_OPTIONS])
def test_csv_options_the_first_line_contradicts_are_refused_naming_the_option(tmp_path, first, settings, words):
    sep = "\t" if "\t" in first else ","
    rows = [first] + [sep.join([f"2024-01-01T00:0{k + 1}:00Z", "1", "2", "0.5", "1.5"]) for k in range(3)]
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(rows) + "\n")
    if words is None:
        assert read_bars(path, **settings).n == (4 if not settings.get("header", True) else 3)
        return
    with pytest.raises(BarsError) as err:
        read_bars(path, **settings)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value)
