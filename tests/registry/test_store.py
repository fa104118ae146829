"""Content-addressed store: layout, dedup, atomic writes, verification on read, directories, fsspec roots.
The store needs no database, so these tests run once (the registry tests cover both backends)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from registry.errors import ArtifactCorrupt, InvalidState, NotFound
from registry.store import ArtifactStore


def _corrupt(path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_put_file_layout_dedup_and_no_temp_left(store, make_file):
    data = b"weights" * 1000
    sha = hashlib.sha256(data).hexdigest()
    a = store.put_file(make_file(data))
    b = store.put_bytes(data)
    assert a == b and a.sha256 == sha and a.bytes == len(data)
    assert store.path(sha) == store.root / "sha256" / sha[:2] / sha[2:]
    assert a.uri == (store.root / "sha256" / sha[:2] / sha[2:]).as_uri()
    assert list(store.iter_blobs()) == [sha]  # stored once
    assert list((store.root / "tmp").iterdir()) == []  # temp files renamed or removed
    assert store.read_bytes(sha) == data
    assert not os.access(store.path(sha), os.W_OK) or os.geteuid() == 0  # blobs are read-only


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ab" * 31, "A" * 64, "g" * 64, "", "../" + "a" * 61])
def test_rejects_non_digest_names(store, bad):
    with pytest.raises(InvalidState, match="64 lowercase hex"):
        store.open(bad)
    with pytest.raises(InvalidState):
        store.path(bad)


def test_missing_blob_is_not_found(store):
    with pytest.raises(NotFound):
        store.open("0" * 64)


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_corrupted_blob_detected_on_every_read_path(store, make_file, tmp_path, damage):
    data = bytes(range(256)) * 4096  # 1 MiB: more than one read chunk
    blob = store.put_file(make_file(data))
    path = store.path(blob.sha256)
    bad = {"flip": data[:1000] + bytes([data[1000] ^ 1]) + data[1001:], "truncate": data[:-1],
           "append": data + b"x"}[damage]
    _corrupt(path, bad)
    with pytest.raises(ArtifactCorrupt, match=blob.sha256):
        store.verify(blob.sha256)
    with pytest.raises(ArtifactCorrupt):
        store.read_bytes(blob.sha256)
    with pytest.raises(ArtifactCorrupt):
        store.path(blob.sha256)
    dest = tmp_path / "out" / "model.bin"
    with pytest.raises(ArtifactCorrupt):
        store.get_file(blob.sha256, dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no partial copy left behind


@pytest.mark.parametrize("damaged", [b"short", b"b" * 100])
def test_re_registering_repairs_a_damaged_blob(store, damaged):
    data = b"a" * 100
    blob = store.put_bytes(data)
    _corrupt(store.path(blob.sha256, verify=False), damaged)
    store.put_bytes(data)  # the dedup check sees the damage and writes the good bytes again
    assert store.verify(blob.sha256) == 100


def test_put_dir_roundtrip_and_dedup(store, tmp_path):
    src = tmp_path / "export"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"a": 1}')
    (src / "model.safetensors").write_bytes(b"\x00" * 5000)
    (src / "sub" / "tokenizer.json").write_text('{"a": 1}')  # same bytes as config.json
    blob = store.put_dir(src)
    assert blob.is_dir and blob.bytes == 8 + 5000 + 8
    assert store.put_dir(src) == blob  # same tree, same manifest
    assert len(list(store.iter_blobs())) == 3  # two distinct files + the manifest
    out = store.materialize_dir(blob.sha256, tmp_path / "restored")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "config.json", "model.safetensors", "sub/tokenizer.json"]
    assert (out / "model.safetensors").read_bytes() == b"\x00" * 5000
    assert store.verify_dir(blob.sha256) == blob.bytes


def test_manifest_with_unsafe_path_is_refused(store, tmp_path):
    inner = store.put_bytes(b"x")
    evil = json.dumps({"kind": "shrinkwrap-dir-manifest", "version": 1,
                       "files": [{"path": "../escape", "sha256": inner.sha256, "bytes": 1}]}).encode()
    manifest = store.put_bytes(evil)
    with pytest.raises(ArtifactCorrupt, match="unsafe path"):
        store.materialize_dir(manifest.sha256, tmp_path / "dest")
    assert not (tmp_path / "escape").exists()


def test_fsspec_memory_root(make_file, tmp_path):
    store = ArtifactStore("memory://sw-test-store")
    data = b"remote bytes"
    blob = store.put_file(make_file(data))
    assert store.put_bytes(data) == blob
    assert blob.uri.startswith("memory://sw-test-store/sha256/")
    assert store.read_bytes(blob.sha256) == data
    assert store.get_file(blob.sha256, tmp_path / "copy.bin").read_bytes() == data
    with pytest.raises(InvalidState, match="not a local directory"):
        store.path(blob.sha256)
    store.fs.pipe_file(store._remote(blob.sha256), b"tampered")
    with pytest.raises(ArtifactCorrupt):
        store.verify(blob.sha256)
    store.delete(blob.sha256)
    assert not store.exists(blob.sha256)


# -- fsspec roots (the shared artifact store of several workers: s3://, gs://, a network file system) --
@pytest.fixture(params=["memory", "local"])
def remote_root(request, tmp_path):
    """An fsspec root that takes the non-local branch: fsspec's in-memory filesystem, or its local one
    addressed as `local://` (a shared directory seen through fsspec, as an NFS mount would be)."""
    if request.param == "memory":
        import fsspec

        root = f"memory://sw-{tmp_path.name}"
        yield root
        fsspec.filesystem("memory").rm(root.removeprefix("memory://"), recursive=True)
    else:
        yield f"local://{tmp_path / 'shared'}"


def test_fsspec_root_directory_roundtrip_and_maintenance(remote_root, tmp_path):
    store = ArtifactStore(remote_root)
    assert store.fs is not None and store.root is None  # the fsspec branch, not the local one
    src = tmp_path / "export"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"a": 1}')
    (src / "sub" / "weights.bin").write_bytes(b"w" * 5000)
    blob = store.put(src)
    assert blob.is_dir and blob.bytes == 5008 and blob.uri.startswith(remote_root.rstrip("/"))
    assert store.put_dir(src) == blob  # dedup: same manifest, same blobs
    assert len(set(store.iter_blobs())) == 3  # two files + the manifest
    out = store.materialize_dir(blob.sha256, tmp_path / "copy")
    assert (out / "sub" / "weights.bin").read_bytes() == b"w" * 5000 and store.verify_dir(blob.sha256) == 5008
    assert store.age_seconds(blob.sha256) >= 0.0 and store.stale_temp_files(0) == []
    for sha in list(store.iter_blobs()):
        store.delete(sha)
    assert list(store.iter_blobs()) == []


def test_fsspec_store_is_shared_between_instances(remote_root, make_file, tmp_path):
    """What one worker writes another (a separate ArtifactStore on the same root) reads and verifies."""
    writer, reader = ArtifactStore(remote_root), ArtifactStore(remote_root)
    blob = writer.put_file(make_file(b"checkpoint" * 100))
    assert reader.exists(blob.sha256) and reader.read_bytes(blob.sha256) == b"checkpoint" * 100
    assert reader.get_file(blob.sha256, tmp_path / "local.bin").read_bytes() == b"checkpoint" * 100
    writer.fs.pipe_file(writer._remote(blob.sha256), b"damaged")
    with pytest.raises(ArtifactCorrupt, match=blob.sha256):
        reader.get_file(blob.sha256, tmp_path / "again.bin")
    assert not (tmp_path / "again.bin").exists()
