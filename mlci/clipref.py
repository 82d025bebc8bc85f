"""Clip URLs: the URL a clip is published under for labeling, and the path read back from one.

A clip key such as ``clips/real/my clip #1?.mp4`` is published as ``<base URL>real/my%20clip%20%231%3F.mp4``:
the part under ``clips/`` is percent-encoded (RFC 3986, UTF-8) so that ``#``, ``?``, ``%`` and
spaces survive every tool in between, and :meth:`mlci.storage.Store.resolve_clip_ref` decodes it
with :func:`decode_clip_path`. ``s3://`` URLs are the exception: the AWS CLI and Label Studio's S3
storage read their keys literally, so they are written and read unencoded.

Label Studio's local files storage serves a file as ``[host]/data/local-files/?d=<path>``, ``<path>``
relative to its ``LOCAL_FILES_DOCUMENT_ROOT``; :func:`label_studio_local_path` reads ``<path>`` back.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, unquote, urlsplit

from mlci.layout import CLIP_PREFIX

__all__ = ["encode_clip_path", "decode_clip_path", "clip_url", "is_literal_url", "label_studio_local_path"]

#: URL paths of Label Studio's local files view (it writes the first; the second is also served).
_LOCAL_FILES_PATHS = ("/data/local-files/", "/data/local-files")


def encode_clip_path(path: str) -> str:
    """Percent-encode a ``/``-separated path for a URL; ``/`` stays, everything not unreserved is escaped.

    ``encode_clip_path("real/my clip #1?.mp4") == "real/my%20clip%20%231%3F.mp4"``; non-ASCII
    characters are escaped as UTF-8 bytes. :func:`decode_clip_path` is the inverse.
    """
    if not isinstance(path, str):
        raise TypeError(f"path must be a string, but got {type(path).__name__}")
    return quote(path, safe="/")


def decode_clip_path(path: str) -> str:
    """Percent-decode a URL path once (UTF-8): the inverse of :func:`encode_clip_path`.

    A ``%`` not followed by two hex digits stays as it is (as browsers read it).

    Raises
    ------
    ValueError
        The escapes decode to bytes that are not UTF-8 (``%ff``).
    """
    if not isinstance(path, str):
        raise TypeError(f"path must be a string, but got {type(path).__name__}")
    try:
        return unquote(path, errors="strict")
    except UnicodeDecodeError as exc:
        raise ValueError(f"percent-escapes in {path!r} are not UTF-8 ({exc.reason})") from None


def is_literal_url(url: str) -> bool:
    """Whether keys under ``url`` are written literally (``s3://``), not percent-encoded."""
    return url[:5].lower() == "s3://"


def clip_url(key: str, base_url: str) -> str:
    """The URL of clip ``key`` under ``base_url``, as published in labeling batches.

    ``clip_url("clips/real/a b.mp4", "https://media.example/") == "https://media.example/real/a%20b.mp4"``.

    Raises
    ------
    ValueError
        ``key`` is not a clip key (under ``clips/``), or ``base_url`` is empty.
    """
    if not isinstance(key, str) or not key.startswith(CLIP_PREFIX) or key == CLIP_PREFIX or key.endswith("/"):
        raise ValueError(f"key must name a clip under {CLIP_PREFIX!r}, but got {key!r}")
    if not isinstance(base_url, str) or not base_url.strip():
        raise ValueError(f"base_url must be a non-empty URL, but got {base_url!r}")
    base = base_url if base_url.endswith("/") else base_url + "/"
    rest = key[len(CLIP_PREFIX) :]
    return base + (rest if is_literal_url(base) else encode_clip_path(rest))


def label_studio_local_path(url: str) -> str | None:
    """The decoded ``d`` path of a Label Studio local files URL; None for any other reference.

    ``label_studio_local_path("http://ls:8080/data/local-files/?d=media/a%20b.mp4") == "media/a b.mp4"``.
    The query is decoded as Label Studio's server decodes it (``+`` is a space); the host, if any,
    is not checked.

    Raises
    ------
    ValueError
        A local files URL without exactly one ``d``, or whose escapes are not UTF-8.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("", "http", "https") or parts.path not in _LOCAL_FILES_PATHS:
        return None
    try:
        values = parse_qs(parts.query, keep_blank_values=True, errors="strict").get("d", [])
    except UnicodeDecodeError as exc:
        raise ValueError(f"percent-escapes in the d parameter are not UTF-8 ({exc.reason})") from None
    if len(values) != 1:
        raise ValueError(f"a Label Studio local files URL names one file in its d parameter, but got {len(values)}")
    return values[0]
