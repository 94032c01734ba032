"""One registry, spoken to through python-dxf (the distribution API: blobs,
mounts, manifests, Basic and token auth, timeouts, digest checks on what it
reads), with what it leaves to its caller added here: the scheme and CA
(`access`), the Docker config's credentials, index entries, bounds on what
is read into memory, and every failure turned into one line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nbs2i.errors import RegistryError
from nbs2i.registry import access, manifest
from nbs2i.registry.access import LOGIN_FIX, Access, Credentials

TLS_FIX = (
    "give its CA with --registry-ca FILE or as /etc/docker/certs.d/{host}/ca.crt "
    "(plain HTTP is spoken only to loopback and --insecure-registry hosts)"
)
# Credentials not looked up yet (None: looked up, there are none).
_UNKNOWN = object()


class Absent(RegistryError):
    """The registry has no such manifest or blob (HTTP 404)."""


class Registry:
    """One registry host, one HTTP session. Use as a context manager."""

    def __init__(self, host: str, options: Access) -> None:
        import dxf

        self.host = host
        self._options = options
        self._api = access.api_host(host)
        self._verify = access.ca_for(host, options)
        self._credentials: Credentials | object | None = _UNKNOWN
        self._base: Any = None
        self._dxf = dxf

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._base is not None:
            self._base.__exit__(None, None, None)
            self._base = None

    def repository(self, name: str) -> Repository:
        return Repository(self, name)

    # -- what Repository uses -------------------------------------------------

    def client(self, name: str) -> Any:
        """A dxf.DXF for repository `name`, sharing this registry's session."""
        if self._base is None:
            insecure = self._plain_http()
            base = self._dxf.DXFBase(
                self._api,
                auth=self._authenticate,
                insecure=insecure,
                tlsverify=False if insecure else self._verify,
                # requests takes (connect, read) where dxf's hint says a float
                timeout=self._options.timeout,  # type: ignore[arg-type]
            )
            self._base = base.__enter__()
        return self._dxf.DXF.from_base(self._base, name)

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Every failure of `what` as one RegistryError line."""
        import requests

        dxf_errors = self._dxf.exceptions
        try:
            yield
        except RegistryError:
            raise
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(exc) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise RegistryError(
                f"cannot reach the registry {self.host} ({_reason(exc)})",
                "check the registry's name and port, and that it is running",
            ) from None
        except requests.exceptions.HTTPError as exc:
            raise self._http_error(exc, what) from None
        except dxf_errors.DXFUnauthorizedError:
            raise RegistryError(
                f"the registry {self.host} refused {what} (HTTP 401): wrong or missing credentials",
                LOGIN_FIX.format(host=self.host),
            ) from None
        except dxf_errors.DXFAuthInsecureError:
            raise RegistryError(
                f"the registry {self.host} asks for credentials over plain HTTP",
                "serve it over TLS: nbs2i sends credentials only over TLS",
            ) from None
        except dxf_errors.DXFDigestMismatchError:
            raise RegistryError(
                f"the registry {self.host} sent data that does not match its digest ({what})"
            ) from None
        except (dxf_errors.DXFError, ValueError, KeyError) as exc:
            raise RegistryError(f"{what} at {self.host} failed ({_reason(exc)})") from None

    # -- internals ------------------------------------------------------------

    def _authenticate(self, client: Any, response: Any) -> None:
        """dxf's hook on a 401: answer the registry's challenge (Basic or token)."""
        if self._credentials is _UNKNOWN:
            self._credentials = access.credentials(self.host)
        found = self._credentials
        if isinstance(found, Credentials):
            client.authenticate(found.username, found.password, response=response)
        else:
            client.authenticate(response=response)

    def _plain_http(self) -> bool:
        """Whether to speak HTTP: only to a host where it is allowed and that
        answers plain HTTP as a registry (a TLS server answers it with an error);
        everywhere else TLS, verified. Asked once, with the API's version check."""
        import requests

        with requests.Session() as probe, self.errors("the version check"):
            allowed = access.plain_http_allowed(self.host, self._options)
            if allowed and _answers_plain(probe, f"http://{self._api}/v2/", self._options):
                return True
            probe.get(
                f"https://{self._api}/v2/", verify=self._verify, timeout=self._options.timeout
            )
            return False

    def _tls_error(self, exc: BaseException) -> RegistryError:
        return RegistryError(
            f"TLS with the registry {self.host} failed ({_reason(exc)})",
            TLS_FIX.format(host=self.host),
        )

    def _http_error(self, exc: Any, what: str) -> RegistryError:
        status = exc.response.status_code if exc.response is not None else 0
        if status == 404:
            return Absent(f"{what}: not in the registry {self.host}")
        if status == 403:
            return RegistryError(
                f"the registry {self.host} refused {what} (HTTP 403): no access to that "
                "repository with these credentials",
                LOGIN_FIX.format(host=self.host),
            )
        return RegistryError(f"the registry {self.host} answered HTTP {status} to {what}")


class Repository:
    """One repository of a registry: the few requests an image push needs."""

    def __init__(self, registry: Registry, name: str) -> None:
        self.registry = registry
        self.name = name
        self._client: Any = None

    @property
    def where(self) -> str:
        return f"{self.registry.host}/{self.name}"

    def _dxf(self) -> Any:
        if self._client is None:
            self._client = self.registry.client(self.name)
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self.registry.errors(f"{what} in {self.name}"):
            return fn(*args, **kwargs)

    def manifest_digest(self, reference: str) -> str | None:
        """The digest of the manifest `reference` names (HEAD), None when absent."""
        try:
            digest, _ = self._call(
                "reading the manifest", self._dxf().head_manifest_and_response, reference
            )
        except Absent:
            return None
        return str(digest or "") or None

    def image(self, reference: str) -> manifest.Manifest:
        """The image manifest `reference` names; an index's entry for this platform."""
        data, kind, digest = self._manifest(reference)
        if kind in manifest.INDEXES:
            data, kind, digest = self._manifest(
                manifest.pick_platform(data, manifest.this_platform())
            )
            if kind not in manifest.IMAGE_MANIFESTS:
                raise RegistryError(f"{self.where}:{reference} is a list of lists")
        return manifest.parse_manifest(data, digest, kind)

    def _manifest(self, reference: str) -> tuple[bytes, str, str]:
        try:
            _, response = self._call(
                "reading the manifest", self._dxf().get_manifest_and_response, reference
            )
        except Absent:
            raise RegistryError(
                f"{self.where}:{reference} is not in the registry",
                "check the name, or push it first",
            ) from None
        data = bytes(response.content)
        if len(data) > manifest.MANIFEST_MAX:
            raise RegistryError(f"the manifest of {self.where}:{reference} is too large")
        digest = manifest.sha256(data)
        claimed = response.headers.get("Docker-Content-Digest") or digest
        if claimed != digest or (reference.startswith("sha256:") and reference != digest):
            raise RegistryError(
                f"the manifest of {self.where}:{reference} does not match its digest"
            )
        kind = manifest.media_type(manifest.parse_json(data, "the manifest"), "")
        return data, kind, digest

    def blob(self, digest: str, limit: int) -> bytes:
        """A small blob (a config), read whole; its digest is checked as it is read."""
        with self.registry.errors(f"reading {digest[:19]} in {self.name}"):
            chunks, size = self._dxf().pull_blob(digest, size=True)
            if size > limit:
                raise RegistryError(f"the blob {digest[:19]} of {self.where} is too large")
            return b"".join(chunks)

    def stream(self, digest: str) -> Iterator[bytes]:
        """A blob as it comes (to copy it to another registry); digest checked at the end."""
        with self.registry.errors(f"reading {digest[:19]} in {self.name}"):
            yield from self._dxf().pull_blob(digest, chunk_size=1 << 20)

    def has_blob(self, digest: str) -> bool:
        try:
            self._call(f"looking for {digest[:19]}", self._dxf().blob_size, digest)
        except Absent:
            return False
        return True

    def mount(self, digest: str, source: str) -> bool:
        """Mount a blob of repository `source` of the same registry; False when the
        registry would rather have it uploaded."""
        try:
            self._call(f"mounting {digest[:19]}", self._dxf().mount_blob, source, digest)
        except RegistryError:
            return False
        return True

    def upload(self, digest: str, data: Path | Iterable[bytes]) -> None:
        """Upload a blob in one request (streamed); the registry checks its digest."""
        client = self._dxf()
        with self.registry.errors(f"uploading {digest[:19]} to {self.name}"):
            if isinstance(data, Path):
                sent = client.push_blob(filename=str(data), check_exists=False)
            else:
                # An iterator is streamed; requests would take a list for form fields.
                sent = client.push_blob(data=iter(data), digest=digest, check_exists=False)
        if sent != digest:
            raise RegistryError(
                f"the blob uploaded to {self.where} is {sent[:19]}, not {digest[:19]}"
            )

    def put_manifest(self, reference: str, data: bytes) -> str:
        """Write a manifest under a tag or its digest; the manifest's digest."""
        self._call(
            f"writing the manifest {reference}", self._dxf().set_manifest, reference, data.decode()
        )
        return manifest.sha256(data)


def _reason(exc: BaseException) -> str:
    """A short, credential-free cause: the innermost exception's first line."""
    while exc.__context__ is not None and not str(exc):
        exc = exc.__context__
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for marker in ("CERTIFICATE_VERIFY_FAILED", "Connection refused", "timed out"):
        if marker in text:
            return marker.replace("_", " ").lower()
    return text[:160]


def _answers_plain(session: Any, url: str, options: Access) -> bool:
    """True when a registry answers plain HTTP at `url` (a TLS server does not)."""
    import requests

    try:
        response = session.get(url, timeout=options.timeout)
    except requests.exceptions.RequestException:
        return False
    return "Docker-Distribution-Api-Version" in response.headers
