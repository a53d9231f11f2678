"""``portbook update``: install a newer IANA registry in the user data directory.

The source is a local file or an http(s) URL (fetched only when one is given;
``urllib`` is imported only then). Its format (XML or CSV) is read from the
content. Nothing is replaced until the new data has been parsed, validated,
written to a temporary database beside the old one and read back; then one
``os.replace`` swaps it in. Any failure leaves the previous data in use.
"""

from __future__ import annotations

import os
from pathlib import Path

from portbook._book.registry import USER_REGISTRY_NAME
from portbook._exceptions import RegistryUpdateError

__all__ = ["MAX_DOWNLOAD", "fetch_source", "install_registry"]

# IANA's XML is about 4 MB; a response far larger than that is not the registry.
MAX_DOWNLOAD = 64 * 1024 * 1024
# A newer registry never loses a tenth of its records; such a file is a wrong or cut-off one.
_MIN_FRACTION_OF_CURRENT = 0.9
_URL_TIMEOUT = 60.0


def fetch_source(source: str | os.PathLike[str]) -> tuple[bytes, str]:
    """The bytes of ``source`` and a short name for it (the file name)."""
    text = os.fspath(source)
    if isinstance(source, str) and text.lower().startswith(("http://", "https://")):
        return _fetch_url(text)
    path = Path(text)
    try:
        size = path.stat().st_size
        if size > MAX_DOWNLOAD:
            raise RegistryUpdateError(f"{path} is {size} bytes: too large for the registry")
        return path.read_bytes(), path.name
    except OSError as exc:
        raise RegistryUpdateError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _fetch_url(url: str) -> tuple[bytes, str]:
    import urllib.error
    import urllib.parse
    import urllib.request

    name = Path(urllib.parse.urlsplit(url).path).name or "registry"
    request = urllib.request.Request(url, headers={"User-Agent": "portbook"})
    try:
        with urllib.request.urlopen(request, timeout=_URL_TIMEOUT) as response:
            data: bytes = response.read(MAX_DOWNLOAD + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RegistryUpdateError(f"cannot fetch {url}: {reason}") from exc
    if len(data) > MAX_DOWNLOAD:
        raise RegistryUpdateError(f"{url} is larger than {MAX_DOWNLOAD} bytes: not the registry")
    return data, name


def install_registry(
    source: str | os.PathLike[str],
    data_dir: Path,
    *,
    current_records: int = 0,
    min_records: int | None = None,
) -> Path:
    """Validate ``source`` and install it as ``data_dir/registry.sqlite3``; return that path.

    Refuses (``RegistryUpdateError``) a file that is not IANA's XML or CSV,
    has a wrong header or malformed rows, fewer than ``min_records`` records,
    or fewer than 90% of ``current_records`` (the data in use).
    """
    from portbook._book.build import MIN_RECORDS, install_database, parse_registry

    data, name = fetch_source(source)
    floor = MIN_RECORDS if min_records is None else min_records
    built = parse_registry(data, name, min_records=floor)
    if len(built.records) < current_records * _MIN_FRACTION_OF_CURRENT:
        raise RegistryUpdateError(
            f"{name} has {len(built.records)} records, far fewer than the "
            f"{current_records} in use; refusing it as incomplete"
        )
    dest = data_dir / USER_REGISTRY_NAME
    install_database(built, dest)
    return dest
