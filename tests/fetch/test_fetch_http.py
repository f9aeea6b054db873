"""Downloads against the local test server.

Resume, retries and backoff, refusal, HTML pages, truncated gzip, checksums, the rate limit and local copies
of an archive.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from morphomass.errors import FetchError, InputDataError
from morphomass.fetch.archives import decompress_to, fetch_table_file, is_gzip
from morphomass.fetch.http import HttpClient, check_not_html, full_url, local_path
from morphomass.workdir import file_sha256

PAYLOAD = np.random.default_rng(1).bytes(200_000)
TEXT = "".join(f"{1237660000000000000 + k} -99 1 2 3 10.0 20.0 0.05\n" for k in range(3000)).encode()


def _client(sleeps: list[float] | None = None, **options: float) -> HttpClient:
    settings = {"timeout_s": 5.0, "retries": 3, "backoff_s": 0.0, "requests_per_second": 1000.0} | options
    return HttpClient(sleep=sleeps.append if sleeps is not None else lambda s: None, **settings)


def _serve(archive, path: str, body: bytes, headers: dict[str, str] | None = None) -> str:
    archive.static[path] = (body, headers or {})
    return f"{archive.url}{path}"


def test_dropped_connection_resumes_with_a_range_request(archive, tmp_path: Path) -> None:
    url = _serve(archive, "/f/blob.bin", PAYLOAD)
    archive.fault("/f/blob.bin", "drop", after_bytes=70_000)
    client = _client()
    dest = client.download(url, tmp_path / "blob.bin")
    assert dest.read_bytes() == PAYLOAD
    first, second = archive.hits("/f/blob.bin")
    assert "Range" not in first.headers
    start = int(re.fullmatch(r"bytes=(\d+)-", second.headers["Range"])[1])
    assert 0 < start <= 70_000  # only the missing tail was asked for
    assert client.stats.retries == 1
    assert client.stats.bytes == len(PAYLOAD)
    assert not (tmp_path / "blob.bin.part").exists()


def test_partial_file_never_counts_as_done_and_the_next_run_resumes_it(archive, tmp_path: Path) -> None:
    url = _serve(archive, "/f/blob.bin", PAYLOAD)
    archive.fault("/f/blob.bin", "drop", after_bytes=100_000)
    dest = tmp_path / "blob.bin"
    with pytest.raises(FetchError, match=r"failed after 1 attempts: .*kept in .*blob\.bin\.part"):
        _client(retries=0).download(url, dest)
    assert not dest.exists()
    part = tmp_path / "blob.bin.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)
    kept = part.stat().st_size
    _client(retries=0).download(url, dest)  # a later run: resumes, does not start over
    assert dest.read_bytes() == PAYLOAD
    assert archive.hits("/f/blob.bin")[-1].headers["Range"] == f"bytes={kept}-"


def test_server_ignoring_range_sends_everything_again(archive, tmp_path: Path) -> None:
    url = _serve(archive, "/f/blob.bin", PAYLOAD)
    (tmp_path / "blob.bin.part").write_bytes(b"stale bytes that are no prefix")
    archive.fault("/f/blob.bin", "status", status=416)  # "range not satisfiable": the part is dropped
    dest = _client().download(url, tmp_path / "blob.bin")
    assert dest.read_bytes() == PAYLOAD


def test_http_500_then_success_is_retried_with_doubling_backoff(archive, tmp_path: Path) -> None:
    url = _serve(archive, "/f/blob.bin", PAYLOAD)
    archive.fault("/f/blob.bin", "status", status=500, times=2)
    sleeps: list[float] = []
    client = _client(sleeps, backoff_s=0.5, max_backoff_s=10.0)
    assert client.download(url, tmp_path / "b").read_bytes() == PAYLOAD
    assert len(archive.hits("/f/blob.bin")) == 3
    assert client.stats.retries == 2
    assert [s for s in sleeps if s >= 0.4] == [0.5, 1.0]


def test_retries_give_up_with_the_url_and_the_reason(archive, tmp_path: Path) -> None:
    url = _serve(archive, "/f/blob.bin", PAYLOAD)
    archive.fault("/f/blob.bin", "status", status=503, times=10)
    with pytest.raises(FetchError, match=r"/f/blob\.bin: failed after 3 attempts: HTTP 503"):
        _client(retries=2).download(url, tmp_path / "b")
    assert len(archive.hits("/f/blob.bin")) == 3
    assert not (tmp_path / "b").exists()


def test_client_errors_are_not_retried(archive, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"/f/missing\.bin: HTTP 404"):
        _client().download(f"{archive.url}/f/missing.bin", tmp_path / "m")
    assert len(archive.hits("/f/missing.bin")) == 1


def test_rate_limit_spaces_requests_to_one_server(archive, tmp_path: Path) -> None:
    for k in range(4):
        _serve(archive, f"/f/{k}", b"x")
    sleeps: list[float] = []
    settings = {"timeout_s": 5.0, "retries": 3, "backoff_s": 0.0, "requests_per_second": 4.0}
    client = HttpClient(sleep=sleeps.append, clock=lambda: 100.0, **settings)  # a stopped clock: no real time
    for k in range(4):
        client.download(f"{archive.url}/f/{k}", tmp_path / str(k))
    # the clock never moves, so the four slots are 0, 0.25, 0.5 and 0.75 s after the first request
    assert sleeps == pytest.approx([0.25, 0.5, 0.75])
    port = archive.url.rsplit(":", 1)[1]
    client.download(f"http://localhost:{port}/f/0", tmp_path / "other-server")  # another host name: no wait
    assert len(sleeps) == 3


def test_html_page_instead_of_a_gzip_table_is_a_clear_error_and_is_not_cached(
    archive, tmp_path: Path
) -> None:
    url = _serve(archive, "/gswlc/G.dat.gz", gzip.compress(TEXT))
    archive.fault("/gswlc/G.dat.gz", "html")
    cache = tmp_path / "cache"
    with pytest.raises(
        InputDataError, match=r"answered with an HTML page \(title: '503 Service Unavailable'\)"
    ):
        fetch_table_file(_client(), url, cache, "G.dat.gz", expected="the GSWLC-2 table")
    assert not any(cache.rglob("*"))
    plain = fetch_table_file(_client(), url, cache, "G.dat.gz", expected="the GSWLC-2 table")  # server fixed
    assert plain.read_bytes() == TEXT


def test_truncated_gzip_is_a_clear_error_and_is_not_cached(archive, tmp_path: Path) -> None:
    url = _serve(archive, "/gz/t.csv.gz", gzip.compress(TEXT)[:-300])
    cache = tmp_path / "cache"
    with pytest.raises(InputDataError, match=r"t\.csv\.gz: truncated gzip file"):
        fetch_table_file(_client(), url, cache, "t.csv.gz", expected="a table")
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_gzip_is_detected_by_magic_bytes_not_by_name(archive, tmp_path: Path) -> None:
    # the server may have decompressed the .gz already ...
    url = _serve(archive, "/gz/plain.dat.gz", TEXT)
    assert fetch_table_file(_client(), url, tmp_path, "plain.dat.gz", expected="t").read_bytes() == TEXT
    # ... or send the gzip bytes with Content-Encoding: gzip (as the GSWLC server does): kept as sent, then
    # gunzipped
    url = _serve(archive, "/gz/encoded.dat.gz", gzip.compress(TEXT), {"Content-Encoding": "gzip"})
    plain = fetch_table_file(_client(), url, tmp_path, "encoded.dat.gz", expected="t")
    assert is_gzip(tmp_path / "encoded.dat.gz")
    assert plain.read_bytes() == TEXT


def test_empty_and_corrupt_files_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gz"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(InputDataError, match="empty.gz is empty; expected a table"):
        decompress_to(empty, tmp_path / "out", source=str(empty), expected="a table")
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    with pytest.raises(InputDataError, match="corrupt gzip file"):
        decompress_to(corrupt, tmp_path / "out", source=str(corrupt), expected="a table")
    assert not (tmp_path / "out").exists()


def test_checksum_mismatch_rejects_the_download(archive, tmp_path: Path) -> None:
    url = _serve(archive, "/f/blob.bin", PAYLOAD)
    with pytest.raises(InputDataError, match="SHA-256 .* does not match the expected 00ff"):
        _client().download(url, tmp_path / "b", sha256="00ff")
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.part").exists()
    good = tmp_path / "ref"
    good.write_bytes(PAYLOAD)
    assert _client().download(url, tmp_path / "b", sha256=file_sha256(good).upper()).read_bytes() == PAYLOAD


def test_existing_download_is_not_fetched_again(archive, tmp_path: Path) -> None:
    url = _serve(archive, "/f/blob.bin", PAYLOAD)
    client = _client()
    client.download(url, tmp_path / "b")
    client.download(url, tmp_path / "b")
    assert len(archive.hits("/f/blob.bin")) == 1
    assert client.stats.files == 1


def test_local_copy_of_an_archive(tmp_path: Path) -> None:
    source = tmp_path / "mirror" / "GSWLC-X2.dat.gz"
    source.parent.mkdir()
    source.write_bytes(gzip.compress(TEXT))
    for url in (source.as_uri(), str(source)):
        assert local_path(url) == source
        dest = tmp_path / "cache" / url.replace("/", "_")
        assert _client().download(url, dest).read_bytes() == source.read_bytes()
    assert local_path("https://example.org/x") is None
    with pytest.raises(FetchError, match="does not exist"):
        _client().download(str(tmp_path / "nothing"), tmp_path / "n")
    with pytest.raises(FetchError, match="cannot answer a query"):
        _client().download(str(source), tmp_path / "q", params={"sql": "x"})


def test_full_url_encodes_the_query() -> None:
    url = full_url("https://h/x_results.aspx", {"cmd": "SELECT a,b FROM t WHERE c=6", "format": "csv"})
    assert url == "https://h/x_results.aspx?cmd=SELECT+a%2Cb+FROM+t+WHERE+c%3D6&format=csv"
    assert full_url("https://h/p", None) == "https://h/p"


@pytest.mark.parametrize(
    "head",
    [
        b"<!DOCTYPE html><html>",
        b"\n  <html><body>x",
        b"<HEAD><TITLE>Error</TITLE>",
        b"<?xml version='1.0'?><html>",
    ],
)
def test_check_not_html_recognises_pages(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "page"
    path.write_bytes(head + b"</html>")
    with pytest.raises(InputDataError, match="answered with an HTML page"):
        check_not_html(path, source="u", expected="data")


def test_check_not_html_accepts_data(tmp_path: Path) -> None:
    path = tmp_path / "d"
    path.write_bytes(b"pgc|objname\n1|<unnamed>\n")
    check_not_html(path, source="u", expected="data")
