"""The storage suite, run against both backends: a local folder and a real S3 HTTP endpoint (moto)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import boto3
import pytest

from mlci.clipref import clip_url, decode_clip_path, encode_clip_path
from mlci.storage import (
    AccessDeniedError,
    BucketNotFoundError,
    EndpointUnreachableError,
    InvalidKeyError,
    LocalStore,
    ObjectNotFoundError,
    StoreNotWritableError,
    UnresolvableReferenceError,
    open_store,
    validate_key,
)

BASE = "https://vmlr-workshop.STORAGE/"


def test_write_read_stat_roundtrip(store):
    store.write_bytes("labels/a.json", b'{"x": 1}')
    assert store.read_bytes("labels/a.json") == b'{"x": 1}'
    info = store.stat("labels/a.json")
    assert info.size == 8 and info.key == "labels/a.json" and len(info.identity) >= 32
    store.write_bytes("labels/b.json", b'{"x": 1}')
    assert store.stat("labels/b.json").identity == info.identity
    store.write_bytes("labels/a.json", b'{"x": 2}')
    assert store.stat("labels/a.json").identity != info.identity
    assert store.exists("labels/a.json") and not store.exists("labels/none.json")


def test_missing_object_is_specific(store):
    with pytest.raises(ObjectNotFoundError, match="nope.bin"):
        store.read_bytes("clips/nope.bin")
    with pytest.raises(ObjectNotFoundError):
        store.stat("clips/nope.bin")


def test_listing_past_1000_keys(store):
    keys = [f"features/part-{i:05d}.parquet" for i in range(1105)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.write_bytes(k, b"x"), keys))
    store.write_bytes("featuresX/other", b"y")
    listed = store.list("features/")
    assert listed == keys
    assert len(store.list("features/part-0000")) == 10
    assert store.list("absent/") == []


def test_list_hides_nothing_else_and_sorts(store):
    for key in ["b/2", "a/1", "a/sub/3"]:
        store.write_bytes(key, b"")
    assert store.list() == ["a/1", "a/sub/3", "b/2"]
    assert store.list("a/") == ["a/1", "a/sub/3"]


def test_atomic_write_reader_never_sees_partial(store):
    versions = [bytes([i]) * 3_000_000 for i in range(1, 4)]
    store.write_bytes("big/obj", versions[0])
    seen, stop = set(), threading.Event()

    def reader():
        while not stop.is_set():
            data = store.read_bytes("big/obj")
            seen.add((len(data), data[:1], data[-1:]))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(3):
            for v in versions:
                store.write_bytes("big/obj", v)
    finally:
        stop.set()
        thread.join()
    allowed = {(len(v), v[:1], v[-1:]) for v in versions}
    assert seen and seen <= allowed


def test_write_if_absent_race_exactly_one_wins(store):
    for attempt in range(5):
        key = f"batches/round-{attempt}/manifest.json"
        barrier = threading.Barrier(2)

        def contender(payload: bytes) -> bool:
            barrier.wait()
            return store.write_if_absent(key, payload)

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(contender, [b"first", b"second"]))
        assert sorted(results) == [False, True]
        winner = [b"first", b"second"][results.index(True)]
        assert store.read_bytes(key) == winner
        assert store.write_if_absent(key, b"third") is False
        assert store.read_bytes(key) == winner


_STREAM_PROBE = """
import resource, sys
from mlci.storage import open_store
store = open_store(sys.argv[1], endpoint_url=sys.argv[2] or None)
store.stat("clips/big.mp4")  # clients and connection pools exist before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with store.local_copy("clips/big.mp4") as local:
    size = local.stat().st_size
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(size, (after - before) // 1024)
"""


def test_stream_50mb_without_holding_it_in_memory(store, tmp_path):
    src = tmp_path / "big.bin"
    chunk = os.urandom(1 << 20)
    with open(src, "wb") as fh:
        for _ in range(50):
            fh.write(chunk)
    store.upload("clips/big.mp4", src)
    assert store.stat("clips/big.mp4").size == 50 * (1 << 20)
    with store.local_copy("clips/big.mp4") as local:
        with open(local, "rb") as fh:
            assert fh.read(1 << 20) == chunk
    # Peak memory is measured in a separate process: moto's server shares this one.
    endpoint = getattr(store, "endpoint_url", "") or ""
    out = subprocess.run(
        [sys.executable, "-c", _STREAM_PROBE, store.uri, endpoint], capture_output=True, text=True, check=True
    ).stdout.split()
    size, grown_mib = int(out[0]), int(out[1])
    assert size == 50 * (1 << 20)
    assert grown_mib < 16, f"peak RSS grew {grown_mib} MiB while streaming 50 MiB"


@pytest.mark.parametrize(
    "key",
    ["/etc/passwd", "../secret", "clips/../../x", "clips/./a", "clips//a", "a\\b", "a\x00b", "a\nb", "C:/x", ""],
)
def test_key_validation_rejects(store, key):
    with pytest.raises(InvalidKeyError) as info:
        store.write_bytes(key, b"x")
    assert repr(key)[1:-1][:6] in str(info.value) or key == ""


def test_validate_key_accepts_normal_keys():
    assert validate_key("clips/xmas/vid 1-of-2.mp4") == "clips/xmas/vid 1-of-2.mp4"
    assert validate_key("features/") == "features/"


def test_resolve_clip_references(store):
    assert store.resolve_clip_ref(BASE + "gifts/a.mp4", base_url=BASE) == "clips/gifts/a.mp4"
    assert store.resolve_clip_ref(BASE + "gifts/a%20b.mp4?x=1", base_url=BASE) == "clips/gifts/a b.mp4"
    assert store.resolve_clip_ref("gifts/a.mp4") == "clips/gifts/a.mp4"
    assert store.resolve_clip_ref("clips/gifts/a.mp4") == "clips/gifts/a.mp4"
    assert store.resolve_clip_ref(store.url_for("clips/x/y.mp4")) == "clips/x/y.mp4"
    with pytest.raises(InvalidKeyError):
        store.resolve_clip_ref(BASE + "../../etc/passwd", base_url=BASE)
    with pytest.raises(InvalidKeyError):
        store.resolve_clip_ref("../outside.mp4")
    with pytest.raises(UnresolvableReferenceError):
        store.resolve_clip_ref("https://elsewhere.example/gifts/a.mp4", base_url=BASE)
    with pytest.raises(UnresolvableReferenceError):
        store.resolve_clip_ref("")


def test_resolve_rejects_other_bucket_and_prefix(s3_store):
    with pytest.raises(InvalidKeyError, match="outside"):
        s3_store.resolve_clip_ref("s3://another-bucket/store/clips/a.mp4")
    with pytest.raises(InvalidKeyError, match="outside"):
        s3_store.resolve_clip_ref(f"s3://{s3_store.bucket}/other-prefix/clips/a.mp4")


def test_resolve_rejects_local_path_outside_root(local_store, tmp_path):
    with pytest.raises(InvalidKeyError, match="outside"):
        local_store.resolve_clip_ref((tmp_path / "elsewhere" / "a.mp4").as_uri())
    with pytest.raises(InvalidKeyError):
        local_store.resolve_clip_ref(local_store.root.as_uri() + "/../escape.mp4")


def test_missing_bucket_names_bucket_and_endpoint(s3_endpoint):
    store = open_store("s3://no-such-bucket-xyz/p", endpoint_url=s3_endpoint, max_attempts=1)
    with pytest.raises(BucketNotFoundError) as info:
        store.list("clips/")
    assert "no-such-bucket-xyz" in str(info.value) and s3_endpoint in str(info.value)


def test_unreachable_endpoint_is_specific():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = open_store("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=2)
    with pytest.raises(EndpointUnreachableError, match=f"127.0.0.1:{port}"):
        store.read_bytes("labels/a.json")


def test_access_denied_is_specific_and_hides_secrets(s3_store):
    from moto import settings as moto_settings

    s3_store.write_bytes("labels/a.json", b"{}")
    before = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # the server now checks credentials
    try:
        with pytest.raises(AccessDeniedError) as info:
            s3_store.read_bytes("labels/a.json")
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = before
    message = str(info.value)
    assert "labels/a.json" in message and "credentials" in message
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in message.replace("credentials", "")


def test_unwritable_local_root(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = LocalStore(blocker / "store")
    with pytest.raises(StoreNotWritableError, match="a-file"):
        store.write_bytes("labels/a.json", b"{}")
    with pytest.raises(StoreNotWritableError):
        store.write_if_absent("labels/a.json", b"{}")


def test_transient_outage_succeeds_on_retry(s3_bucket):
    """The endpoint stops and comes back during a retrying call; the call succeeds."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    store = open_store(f"s3://{s3_bucket}/p", endpoint_url=endpoint, max_attempts=10)
    store.write_bytes("labels/a.json", b"payload")
    server.stop()

    def restart():
        time.sleep(1.0)
        revived = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        revived.start()
        restarted.append(revived)

    restarted: list = []
    thread = threading.Thread(target=restart)
    thread.start()
    try:
        t0 = time.monotonic()
        assert store.read_bytes("labels/a.json") == b"payload"
        assert time.monotonic() - t0 >= 0.5  # it really waited for the endpoint to come back
    finally:
        thread.join()
        for srv in restarted:
            srv.stop()


def test_open_store_by_uri(tmp_path, s3_endpoint):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert open_store(tmp_path.as_uri()).root == tmp_path.resolve()
    s3 = open_store("s3://bucket/a/b", endpoint_url=s3_endpoint)
    assert (s3.bucket, s3.prefix) == ("bucket", "a/b")
    with pytest.raises(ValueError, match="ftp"):
        open_store("ftp://host/x")


def test_s3_listing_is_scoped_to_prefix(s3_endpoint, s3_bucket, s3_store):
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=s3_bucket, Key="storeX/leak", Body=b"x")
    s3_store.write_bytes("a", b"1")
    assert s3_store.list() == ["a"]


# --- clip references: percent-encoding on publish, decoding on ingest --------------------------

ODD_PATHS = [
    "real/my clip #1?.mp4",
    "100% real/50%25 off.mp4",  # a literal '%', also one followed by hex digits
    "a+b&c=d;e,f'g(h)i!j*k@l:m$n.mp4",
    "café/über Straße/日本語 クリップ.mp4",
    "emoji 🎄/tab\u00a0nbsp.mp4",
    "x/%2e%2e/y.mp4",  # a literal '%2e%2e' segment in a key is a name, not a traversal
]


@pytest.mark.parametrize("path", ODD_PATHS)
def test_clip_path_encoding_round_trips(path):
    encoded = encode_clip_path(path)
    assert all(c.isascii() and c not in " #?" for c in encoded)
    assert encoded.count("/") == path.count("/")  # segments stay segments
    assert decode_clip_path(encoded) == path


def test_clip_url_encodes_what_would_cut_the_url():
    assert clip_url("clips/real/my clip #1?.mp4", BASE) == BASE + "real/my%20clip%20%231%3F.mp4"
    assert clip_url("clips/café.mp4", "https://h.example/media") == "https://h.example/media/caf%C3%A9.mp4"
    assert clip_url("clips/a b.mp4", "s3://media/clips/") == "s3://media/clips/a b.mp4"  # s3 keys stay literal
    for bad in ("labels/x.json", "clips/", "clips/dir/", ""):
        with pytest.raises(ValueError, match="must name a clip"):
            clip_url(bad, BASE)


@pytest.mark.parametrize("path", [p for p in ODD_PATHS if "%2e%2e" not in p] + ["clips/nested.mp4"])
def test_published_url_resolves_to_the_same_key(store, path):
    key = "clips/" + path
    assert store.resolve_clip_ref(clip_url(key, BASE), base_url=BASE) == key
    assert store.resolve_clip_ref(clip_url(key, "s3://media/clips/"), base_url="s3://media/clips/") == key
    assert store.resolve_clip_ref(store.url_for(key)) == key  # the store's own URI (file:// encoded, s3:// literal)


def test_unencoded_url_is_cut_where_a_url_ends(local_store):
    # A URL published before encoding: '#' starts the fragment. The key is wrong, and ingestion flags
    # it as naming a clip that is not in the store (tests/test_batches.py).
    assert local_store.resolve_clip_ref(BASE + "real/my clip #1?.mp4", base_url=BASE) == "clips/real/my clip "


@pytest.mark.parametrize(
    "ref",
    [
        "%2e%2e/%2e%2e/etc/passwd",
        "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "..%2f..%2fetc/passwd",
        "clips/%2e%2e/%2e%2e/etc/passwd",
        "%252e%252e/%252e%252e/etc/passwd",  # double-encoded
        BASE + "%2e%2e/%2e%2e/etc/passwd",
        BASE + "real/..%2F..%2F..%2Fetc/passwd",
        BASE + "%252E%252E%252Fsecret",
        "%2Fetc%2Fpasswd",
    ],
)
def test_encoded_traversal_is_rejected(store, ref):
    with pytest.raises(InvalidKeyError) as info:
        store.resolve_clip_ref(ref, base_url=BASE)
    assert "'..'" in info.value.reason or "absolute path" in info.value.reason


def test_malformed_escapes_and_folders_are_rejected(local_store):
    with pytest.raises(InvalidKeyError, match="not UTF-8"):
        local_store.resolve_clip_ref(BASE + "a%ff.mp4", base_url=BASE)
    with pytest.raises(InvalidKeyError, match="control characters"):
        local_store.resolve_clip_ref("a%00b.mp4")
    with pytest.raises(UnresolvableReferenceError, match="names no clip"):
        local_store.resolve_clip_ref(BASE, base_url=BASE)
    with pytest.raises(UnresolvableReferenceError, match="not a clip"):
        local_store.resolve_clip_ref(BASE + "gifts/", base_url=BASE)
    with pytest.raises(UnresolvableReferenceError, match="not a clip"):
        local_store.resolve_clip_ref(local_store.url_for("labels/export.json"))


def test_the_s3_pool_holds_as_many_connections_as_the_calls_made_at_once(s3_store, caplog):
    """Listing a folder of clips stats them with ``store.io_threads`` threads: no connection is discarded."""
    import logging

    from mlci.features import plan_feature_run

    for i in range(48):
        s3_store.write_bytes(f"clips/many/c{i:03d}.mp4", b"not decoded by planning")
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    plan = plan_feature_run(s3_store)
    assert len(plan.todo) == 48
    assert s3_store.io_threads == 16 and s3_store.client.meta.config.max_pool_connections == 16
    assert [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()] == []


def test_s3_max_attempts_counts_every_request_the_first_included(cutting_proxy, s3_bucket):
    # MLCI_S3_MAX_ATTEMPTS=3 means three requests on the wire, not one plus three retries.
    store = open_store(f"s3://{s3_bucket}/store", endpoint_url=cutting_proxy.url, max_attempts=3)
    store.write_bytes("a.txt", b"x")
    cutting_proxy.cut(r"^GET /[^ ]*/a\.txt")
    with pytest.raises(EndpointUnreachableError, match="after 3 attempts"):
        store.read_bytes("a.txt")
    assert cutting_proxy.cut_requests == 3


# --- clip references as Label Studio writes them ------------------------------------------------


@pytest.mark.parametrize("suffix", ["/store", "/store/", "", "/", "/a/b"])
def test_s3_uris_from_label_studio_storage_resolve_to_keys(s3_endpoint, s3_bucket, suffix):
    """Label Studio's S3 storage writes ``s3://bucket/<object key>`` with the key literal."""
    store = open_store(f"s3://{s3_bucket}{suffix}", endpoint_url=s3_endpoint)
    root = f"s3://{s3_bucket}/" + (f"{store.prefix}/" if store.prefix else "")
    for path in [p for p in ODD_PATHS if "%2e%2e" not in p] + ["plain.mp4"]:
        assert store.resolve_clip_ref(root + "clips/" + path) == "clips/" + path
    assert store.resolve_clip_ref(root.replace("s3://", "S3://") + "clips/x.mp4") == "clips/x.mp4"
    # Literal: '%20' is part of the key, as the AWS CLI and Label Studio read it.
    assert store.resolve_clip_ref(root + "clips/a%20b.mp4") == "clips/a%20b.mp4"
    with pytest.raises(InvalidKeyError, match="outside"):
        store.resolve_clip_ref(f"s3://other-{s3_bucket}/" + root.split("/", 3)[3] + "clips/x.mp4")
    with pytest.raises(UnresolvableReferenceError, match="not a clip under 'clips/'"):
        store.resolve_clip_ref(root + "labels/export.json")


def test_a_prefix_less_s3_store_does_not_take_keys_of_a_prefixed_one(s3_endpoint, s3_bucket):
    store = open_store(f"s3://{s3_bucket}", endpoint_url=s3_endpoint)
    with pytest.raises(UnresolvableReferenceError, match="names 'store/clips/x.mp4', which is not a clip"):
        store.resolve_clip_ref(f"s3://{s3_bucket}/store/clips/x.mp4")


def local_files_url(path: str, host: str = "") -> str:
    """The URL Label Studio's local files storage writes for ``path`` under its document root."""
    return f"{host}/data/local-files/?d={quote(path)}"


@pytest.mark.parametrize("host", ["", "http://localhost:8080", "https://ls.example"])
@pytest.mark.parametrize("path", [p for p in ODD_PATHS if "%2e%2e" not in p] + ["plain.mp4"])
def test_label_studio_local_files_urls_resolve_under_the_files_root(local_store, tmp_path, host, path):
    key = "clips/" + path
    ref = local_files_url(f"store/{key}", host)
    assert local_store.resolve_clip_ref(ref, base_url=BASE, files_root=tmp_path) == key
    # The store folder itself as the document root; a leading '/' is read under the root too.
    assert local_store.resolve_clip_ref(local_files_url(key, host), files_root=local_store.root) == key
    assert local_store.resolve_clip_ref(local_files_url(f"/store/{key}", host), files_root=tmp_path) == key


def test_local_files_query_is_decoded_as_label_studio_serves_it(local_store, tmp_path):
    # Older Label Studio versions wrote the path unencoded; '+' is then a space, as Django reads it.
    ref = "/data/local-files/?d=store/clips/a+b c.mp4"
    assert local_store.resolve_clip_ref(ref, files_root=tmp_path) == "clips/a b c.mp4"
    assert local_store.resolve_clip_ref("/data/local-files?d=store%2Fclips%2Fx%2By.mp4", files_root=tmp_path) == "clips/x+y.mp4"


@pytest.mark.parametrize(
    "ref, error, match",
    [
        ("/data/local-files/?d=elsewhere/clips/a.mp4", InvalidKeyError, "outside the store root"),
        ("/data/local-files/?d=store/../secret/clips/a.mp4", InvalidKeyError, "'..'"),
        ("/data/local-files/?d=store/clips/%2e%2e/%2e%2e/x.mp4", InvalidKeyError, "'..'"),
        ("/data/local-files/?d=store/clips/%252e%252e/%252e%252e/x.mp4", InvalidKeyError, "decodes again"),
        ("/data/local-files/?d=store/labels/export.json", UnresolvableReferenceError, "not a clip"),
        ("/data/local-files/?d=", UnresolvableReferenceError, "names no clip"),
        ("/data/local-files/?d=a&d=b", InvalidKeyError, "one file in its d parameter, but got 2"),
        ("/data/local-files/?d=store/clips/%ff.mp4", InvalidKeyError, "not UTF-8"),
    ],
)
def test_local_files_urls_outside_the_store_are_refused(local_store, tmp_path, ref, error, match):
    with pytest.raises(error, match=match):
        local_store.resolve_clip_ref(ref, files_root=tmp_path)


def test_local_files_urls_need_the_files_root_and_a_folder_store(local_store, s3_store, tmp_path):
    ref = local_files_url("store/clips/a.mp4", "http://localhost:8080")
    with pytest.raises(UnresolvableReferenceError, match="set MLCI_LABEL_STUDIO_FILES_ROOT"):
        local_store.resolve_clip_ref(ref)
    with pytest.raises(InvalidKeyError, match="not under the Label Studio files root"):
        local_store.resolve_clip_ref(ref, files_root=tmp_path / "other")
    with pytest.raises(UnresolvableReferenceError, match="connect the bucket as S3 storage"):
        s3_store.resolve_clip_ref(ref, files_root=tmp_path)
    # Only Label Studio's local files path is read this way; another path on the host is not the store.
    with pytest.raises(UnresolvableReferenceError):
        local_store.resolve_clip_ref("http://localhost:8080/data/upload/?d=store/clips/a.mp4", files_root=tmp_path)


@pytest.mark.parametrize("path", [p for p in ODD_PATHS if "%2e%2e" not in p])
def test_a_local_files_base_url_publishes_what_label_studio_serves_and_reads_back(local_store, tmp_path, path):
    """MLCI_CLIP_BASE_URL=/data/local-files/?d=store/clips/ gives the URL Label Studio writes for the file."""
    key, base = "clips/" + path, "/data/local-files/?d=store/clips/"
    published = clip_url(key, base)
    assert published == local_files_url(f"store/{key}")
    assert local_store.resolve_clip_ref(published, base_url=base) == key
    assert local_store.resolve_clip_ref(published, files_root=tmp_path) == key
