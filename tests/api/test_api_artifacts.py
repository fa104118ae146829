"""Artifacts: metadata, lineage, streamed downloads (sha256 ETag, If-None-Match 304, single Range 206,
416 past the end), directory artifacts by manifest path, and path tricks that must never reach a file."""

from __future__ import annotations

import hashlib
import json

from api_testing import assert_error


def test_metadata_and_lineage(client, admin, seed):
    a = seed.artifact_ids
    body = client.get(f"/artifacts/{a['export']}", headers=admin).json()
    assert body["sha256"] == hashlib.sha256(seed.file_bytes).hexdigest()
    assert body["bytes"] == len(seed.file_bytes) and body["kind"] == "export" and body["is_dir"] is False
    assert "uri" not in body  # server paths stay on the server
    listed = client.get("/artifacts", params={"kind": "export"}, headers=admin).json()
    assert listed["count"] == 2
    by_run = client.get("/artifacts", params={"run_id": seed.run_id}, headers=admin).json()
    assert by_run["count"] == 3  # student + two exports were made by the run's stages
    graph = client.get(f"/artifacts/{a['export']}/lineage", headers=admin).json()
    assert {n["artifact_id"] for n in graph["nodes"]} == {a["export"], a["student"], a["teacher"]}
    assert client.get(f"/artifacts/{a['teacher']}/metrics", headers=admin).json()["count"] == 1
    assert_error(client.get("/artifacts/999999", headers=admin), 404, "not_found")


def test_download_etag_and_ranges(client, admin, seed):
    data, url = seed.file_bytes, f"/artifacts/{seed.artifact_ids['export']}/download"
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    r = client.get(url, headers=admin)
    assert r.status_code == 200 and r.content == data
    assert r.headers["etag"] == etag and r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(data))

    r = client.get(url, headers={**admin, "If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    r = client.get(url, headers={**admin, "If-None-Match": f'W/"other", {etag}'})
    assert r.status_code == 304
    assert client.get(url, headers={**admin, "If-None-Match": '"other"'}).status_code == 200

    n = len(data)
    for spec, (first, last) in {"bytes=0-99": (0, 99), "bytes=1000-1999": (1000, 1999),
                                "bytes=10000-": (10000, n - 1), "bytes=-50": (n - 50, n - 1),
                                f"bytes=5-{n + 100}": (5, n - 1)}.items():
        r = client.get(url, headers={**admin, "Range": spec})
        assert r.status_code == 206, (spec, r.status_code)
        assert r.content == data[first:last + 1], spec
        assert r.headers["content-range"] == f"bytes {first}-{last}/{n}", spec
        assert r.headers["content-length"] == str(last - first + 1)
    err = assert_error(client.get(url, headers={**admin, "Range": f"bytes={n}-"}), 416, "range_not_satisfiable")
    assert "past the end" in err["message"]
    # Ignored (full 200): multi-range, other units, malformed, and an If-Range that names other bytes.
    for headers in ({"Range": "bytes=0-1,5-6"}, {"Range": "items=0-1"}, {"Range": "bytes=abc"},
                    {"Range": "bytes=9-3"}, {"Range": "bytes=0-9", "If-Range": '"stale"'}):
        r = client.get(url, headers={**admin, **headers})
        assert r.status_code == 200 and r.content == data, headers
    r = client.get(url, headers={**admin, "Range": "bytes=0-9", "If-Range": etag})
    assert r.status_code == 206 and r.content == data[:10]


def test_directory_artifact(client, admin, seed):
    aid = seed.artifact_ids["export_dir"]
    manifest = client.get(f"/artifacts/{aid}/download", headers=admin)
    assert manifest.status_code == 200
    assert manifest.headers["etag"] == f'"{hashlib.sha256(manifest.content).hexdigest()}"'
    assert {f["path"] for f in json.loads(manifest.content)["files"]} == set(seed.dir_files)
    files = client.get(f"/artifacts/{aid}/files", headers=admin).json()
    assert files["count"] == 2
    for rel, data in seed.dir_files.items():
        r = client.get(f"/artifacts/{aid}/files/{rel}", headers=admin)
        assert r.status_code == 200 and r.content == data, rel
        assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    r = client.get(f"/artifacts/{aid}/files/weights/model.safetensors", headers={**admin, "Range": "bytes=2-5"})
    assert r.status_code == 206 and r.content == seed.dir_files["weights/model.safetensors"][2:6]
    assert_error(client.get(f"/artifacts/{aid}/files/nope.bin", headers=admin), 404)
    assert_error(client.get(f"/artifacts/{seed.artifact_ids['export']}/files", headers=admin), 409, "invalid_state")


def test_path_tricks_never_reach_a_file(client, admin, seed, tmp_path):
    (tmp_path / "secret.txt").write_text("top secret")
    aid = seed.artifact_ids["export_dir"]
    for path in (f"/artifacts/{aid}/files/%2e%2e/%2e%2e/secret.txt", f"/artifacts/{aid}/files/weights/..%2F..%2Fx",
                 f"/artifacts/{aid}/files/%2Fetc%2Fpasswd", f"/artifacts/{aid}/files/..%5C..%5Csecret.txt",
                 f"/artifacts/{aid}/files/a%00b"):
        r = client.get(path, headers=admin)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert_error(r, r.status_code)
    for path in ("/artifacts/..%2F..%2Fsecret.txt/download", "/artifacts/1%2F..%2F2/download",
                 "/artifacts/-1/download", "/artifacts/99999999999999999999/download", "/models/..%2Fetc",
                 "/models/mnist-mlp/versions/..%2F1", "/runs/..%2F1"):
        r = client.get(path, headers=admin)
        assert r.status_code in (404, 422), (path, r.status_code)
        assert_error(r, r.status_code)
    sha = hashlib.sha256(seed.file_bytes).hexdigest()
    for bad in ("../" + sha[3:], sha.upper(), sha + "0"):
        assert_error(client.get("/artifacts", params={"sha256": bad}, headers=admin), 422)
    assert client.get("/artifacts", params={"sha256": sha}, headers=admin).json()["count"] == 1
