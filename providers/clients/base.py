"""The provider client contract: pure HTTP, no models, no database (docs/architecture.md, "Layers").

Every client is async inside (one implementation serves the sweep's fan-out and the
one-off calls from views and commands). Sync callers use `ProviderClient.call(...)`,
which opens the HTTP client, runs one coroutine and closes it again.

One error type crosses this line: `ProviderError`.
"""

from __future__ import annotations

import asyncio
import json
import math
import mimetypes
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote_plus, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError
from yarl import URL

from comfytrack.net import parse_retry_after
from providers.clients.transport import DEFAULT_MAX_BODY_BYTES, AiohttpSender, ProviderResponse, TransportFailure

T = TypeVar("T")


class RunStatus(StrEnum):
    """Normalised statuses (docs/providers.md, "Statuses"), plus UNKNOWN for "the provider does not know this id".

    UNKNOWN is never stored on a Run: the sync engine turns repeated UNKNOWNs into `lost`
    after a grace period.
    """

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT, RunStatus.LOST}
)
# A run the provider is still working on, in the order a run moves through them. The one definition: the
# runs app's models (`runs.models.IN_FLIGHT`) and the providers page's in-flight counts both read it.
IN_FLIGHT_STATUSES = (RunStatus.PENDING, RunStatus.QUEUED, RunStatus.RUNNING)


class OutputKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    MESH = "mesh"
    TEXT = "text"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class OutputRef:
    """One file a run produced, as the provider describes it.

    `key` identifies the output stably across polls (provider output id, or node/subfolder/filename),
    so the sync engine can tell new outputs from ones it already has.
    """

    key: str
    filename: str
    kind: OutputKind
    url: str
    node_id: str | None = None
    content_type: str | None = None
    url_expires: datetime | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None


def url_path(url: str) -> str:
    """A URL's decoded path ("/" when it has none); "" for one that cannot be parsed, since the URLs
    come from provider answers, which must never make a client raise."""
    try:
        return URL(url).path
    except ValueError:
        return ""


@dataclass(frozen=True, slots=True)
class DownloadRequest:
    """The first request for an output's bytes: its URL and the headers (auth, for the provider's own
    host only) that request carries; the archive (comfytrack.safe_http) sends it and follows redirects."""

    url: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RunError:
    message: str
    node_id: str | None = None
    node_type: str | None = None
    exception_type: str | None = None
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """What the provider says about one run right now."""

    external_id: str
    status: RunStatus
    provider_status: str
    progress: float | None = None  # 0..1
    live_status: str | None = None
    created: datetime | None = None
    queued: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    error: RunError | None = None
    outputs: tuple[OutputRef, ...] = ()
    queue_position: int | None = None
    # Usage the provider reports for billing: its GPU type and the GPU seconds the run used (None: not said).
    gpu: str | None = None
    gpu_seconds: float | None = None
    # The API-format graph the run executes, where the provider's answer carries it (None: not in this
    # answer). The sync engine fingerprints it for runs registered by id (runs.fingerprint).
    workflow: Mapping[str, Any] | None = None


class ProviderError(Exception):
    """Anything that went wrong talking to a provider, in words a person can act on.

    permanent: retrying will not help (bad credentials, unsupported operation, invalid workflow).
    retry_after: seconds the provider asked us to wait (429/503 Retry-After), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        status_code: int | None = None,
        auth_failed: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.status_code = status_code
        # 401/403: the credential itself is bad, not just this run (the sync engine flags it).
        self.auth_failed = auth_failed

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ProviderError({self.message!r}, permanent={self.permanent}, retry_after={self.retry_after})"


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One reason a submission is invalid. `field` names what is wrong: a node ("3"), a node's input
    ("3.seed"), or "workflow"/"inputs" as a whole; None when the provider did not say."""

    field: str | None
    message: str


class SubmissionRejected(ProviderError):
    """The provider (or comfytrack, checking first) refused a submission as invalid: nothing was started,
    and sending it again unchanged will not help. `problems` name the nodes and inputs at fault."""

    def __init__(self, message: str, problems: Iterable[FieldProblem] = (), *, status_code: int | None = None) -> None:
        super().__init__(message, permanent=True, status_code=status_code)
        self.problems = tuple(problems) or (FieldProblem(None, message),)


class Unsupported(ProviderError):
    """The provider has no API for this operation (e.g. AWS ESD and SpeedPix have no cancel)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class RemoteModel(BaseModel):
    """Base for validating provider JSON: tolerant of keys we don't know (providers add them between versions)."""

    model_config = ConfigDict(extra="ignore")


class SecretModel(BaseModel):
    """Base for each kind's credential secret schema (Credential.secret is validated against it)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    def __repr_args__(self):
        # repr()/str() end up in logs and tracebacks: never show the values.
        for name, value in super().__repr_args__():
            yield name, ("***" if value else value)

    def hint(self) -> str:
        """A masked hint that is safe to show: the last 4 characters of the longest value."""
        values = [v for v in self.model_dump().values() if isinstance(v, str) and v]
        if not values:
            return "(no secret)"
        longest = max(values, key=len)
        return f"…{longest[-4:]}" if len(longest) > 8 else "…"


class NoSecret(SecretModel):
    pass


# ---------------------------------------------------------------------------------------------
# Parsing helpers shared by every client
# ---------------------------------------------------------------------------------------------

# Unix timestamps above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
_MS_THRESHOLD = 1e11


def parse_timestamp(value: Any) -> datetime | None:
    """Any provider timestamp -> aware UTC datetime, or None.

    Accepts ISO 8601 with `Z` or an offset, naive ISO (meaning UTC: AWS ESD Lambdas write
    `datetime.now().isoformat()` in UTC), Unix seconds and Unix milliseconds (int, float or digit string).
    Garbage gives None rather than an exception: a bad timestamp must not lose a status update.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return parse_timestamp(number)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            return None
        seconds = value / 1000 if value > _MS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def usage_seconds(value: Any, scale: float = 1.0) -> float | None:
    """A provider's reported usage (GPU seconds; scale=1000 for milliseconds), or None if it is not a
    plausible duration (negative, not finite, over a year)."""
    try:
        seconds = float(value) / scale
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and 0 <= seconds < 366 * 86400 else None


def graph_or_none(value: Any) -> dict[str, Any] | None:
    """A provider's workflow graph as given, or None when it is not a non-empty object (whether it is in
    API format is for runs.fingerprint to tell: a graph it cannot read gets no fingerprint)."""
    return value if isinstance(value, dict) and value else None


def clamp_progress(value: Any, scale: float = 1.0) -> float | None:
    """A provider progress value -> 0..1 (scale=100 for percentages)."""
    try:
        number = float(value) / scale
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return min(max(number, 0.0), 1.0)


def content_type_for(filename: str) -> str | None:
    """`mimetypes.guess_type(filename)[0]`, worked out once per suffix (a sweep names thousands of outputs)."""
    # A leading dot starts a hidden file's name, not a suffix (as os.path.splitext reads it).
    suffixes = filename.rsplit("/", 1)[-1].lstrip(".").split(".")[1:]
    return _content_type_of_suffixes("".join(f".{s}" for s in suffixes[-2:])) if suffixes else None


@lru_cache(maxsize=1024)
def _content_type_of_suffixes(suffixes: str) -> str | None:
    return mimetypes.guess_type(f"file{suffixes}")[0]


def view_query(filename: str, subfolder: str, folder_type: str) -> str:
    """The query of ComfyUI's `/view` (and Comfy Cloud's `/api/view`) for one output: what `urlencode`
    gives for these three keys, without its generic machinery (one call per output of a sweep)."""
    return f"filename={quote_plus(filename)}&subfolder={quote_plus(subfolder)}&type={quote_plus(folder_type)}"


def guess_kind(filename: str, hint: str | None = None) -> OutputKind:
    """Output kind from the provider's key (`images`, `gifs`, `audio`, …) or the file extension."""
    hint = (hint or "").lower()
    for kind, words in _KIND_HINTS.items():
        if hint in words:
            return kind
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    for kind, extensions in _KIND_EXTENSIONS.items():
        if ext in extensions:
            return kind
    return OutputKind.FILE


_KIND_HINTS = {
    OutputKind.IMAGE: {"image", "images"},
    OutputKind.VIDEO: {"video", "videos", "gifs", "gif"},
    OutputKind.AUDIO: {"audio", "audios"},
    OutputKind.MESH: {"mesh", "meshes", "3d"},
    OutputKind.TEXT: {"text"},
}
_KIND_EXTENSIONS = {
    OutputKind.IMAGE: {"png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"},
    OutputKind.VIDEO: {"gif", "mp4", "webm", "mov", "mkv", "avi"},
    OutputKind.AUDIO: {"mp3", "wav", "flac", "ogg", "m4a", "opus"},
    OutputKind.MESH: {"glb", "gltf", "obj", "ply", "stl", "fbx"},
    OutputKind.TEXT: {"txt", "json"},
}


ERROR_EXCERPT_CHARS = 160


def error_excerpt(value: str, limit: int = ERROR_EXCERPT_CHARS) -> str:
    """A provider's error text as a message may quote it: one line, at most `limit` characters, with
    quotes, backslashes and control characters escaped. Only ever applied to a JSON error field."""
    text = " ".join(value.split())
    text = text[:limit] + ("…" if len(text) > limit else "")
    return json.dumps(text, ensure_ascii=False)[1:-1]


def body_kind(response: ProviderResponse) -> str:
    """What a body that is not a JSON error looks like, without quoting any of it: a base URL may point
    at an internal page, and its text must not reach a message, a log or the dashboard."""
    content = response.content.lstrip()
    if not content:
        return "an empty body"
    if content[:1] == b"<":
        return "an HTML page"
    return f"a body of {len(response.content):,} bytes that is not JSON"


# ---------------------------------------------------------------------------------------------
# The client base class
# ---------------------------------------------------------------------------------------------


@dataclass
class ClientOptions:
    timeout: float = 15.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    fetch_concurrency: int = 64
    extra: dict[str, Any] = field(default_factory=dict)


class ProviderClient:
    """Base class for one provider kind. Subclasses set the class attributes and implement the methods.

    `base_url` is the provider's documented base, path included (docs/providers.md);
    clients join their paths to it. `secret` is a mapping validated against `Secret`.
    """

    kind: ClassVar[str]
    label: ClassVar[str]
    Secret: ClassVar[type[SecretModel]] = NoSecret
    default_base_url: ClassVar[str | None] = None
    supports_submit: ClassVar[bool] = True
    supports_cancel: ClassVar[bool] = True
    # True where `inputs` override inputs of the workflow's nodes ({"3.seed": 1} or {"3": {"seed": 1}}),
    # False where they are named inputs of a deployment the provider keeps (ComfyDeploy, SpeedPix).
    inputs_override_nodes: ClassVar[bool] = False
    # True where the provider keeps runs only in memory (self-hosted ComfyUI): a run it no longer knows
    # is gone for good, so the sync engine believes a confirmed "unknown" at once (runs.sync.lost_after).
    forgets_runs_on_restart: ClassVar[bool] = False
    # True where fetch_many uses one list call rather than one request per run (configure() may
    # change it per instance when the provider's config picks an API without one).
    has_list_call: bool = False

    def __init__(
        self,
        base_url: str | None,
        secret: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        options: ClientOptions | None = None,
    ) -> None:
        base_url = (base_url or self.default_base_url or "").rstrip("/")
        if not base_url:
            raise ProviderError(f"{self.label} needs a base URL.", permanent=True)
        self.base_url = base_url
        self._base_path = urlsplit(base_url).path.rstrip("/")
        try:
            self.secret = self.Secret.model_validate(dict(secret or {}))
        except ValidationError as exc:
            fields = ", ".join(sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})) or "secret"
            raise ProviderError(
                f"{self.label} credential is missing or has invalid keys: {fields}.", permanent=True
            ) from None
        self.config = dict(config or {})
        self.options = options or ClientOptions()
        self._sender: AiohttpSender | None = None
        self.configure()

    def configure(self) -> None:
        """Hook for kinds whose behaviour depends on `self.config` (validate it here; raise ProviderError)."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> ProviderClient:
        self._sender = AiohttpSender(
            headers=self.auth_headers(), timeout=self.options.timeout, max_connections=self.options.fetch_concurrency
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sender is not None:
            sender, self._sender = self._sender, None
            await sender.close()

    def call(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run one client coroutine from sync code: `client.call(client.fetch, "id")`."""

        async def once() -> T:
            async with self:
                return await method(*args, **kwargs)

        return asyncio.run(once())

    @property
    def sender(self) -> AiohttpSender:
        if self._sender is None:
            raise RuntimeError("Use the client inside `async with client:` or through client.call(...).")
        return self._sender

    # -- the contract --------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """Headers sent with every request to the provider's own host."""
        return {}

    async def submit(self, workflow: dict[str, Any], inputs: dict[str, Any], options: dict[str, Any]) -> str:
        raise Unsupported(f"{self.label} does not accept submissions through its API.")

    async def fetch(self, external_id: str) -> RunSnapshot:
        raise NotImplementedError

    async def fetch_many(self, external_ids: Iterable[str]) -> dict[str, RunSnapshot | ProviderError]:
        """Default: concurrent `fetch` with a bound. Clients with a list call override this."""
        ids = list(dict.fromkeys(external_ids))
        limit = asyncio.Semaphore(self.options.fetch_concurrency)

        async def one(external_id: str) -> RunSnapshot | ProviderError:
            async with limit:
                try:
                    return await self.fetch(external_id)
                except ProviderError as exc:
                    return exc

        results = await asyncio.gather(*(one(i) for i in ids))
        return dict(zip(ids, results, strict=True))

    async def cancel(self, external_id: str) -> None:
        raise Unsupported(f"{self.label} has no API to cancel a run.")

    async def fetch_workflow(self, external_id: str) -> Mapping[str, Any] | None:
        """The API-format graph of a finished run whose status answer did not carry it, with one request
        where the provider has a call that gives it; None where it has none (this default: no request)."""
        return None

    @classmethod
    def fetches_workflows(cls) -> bool:
        """Whether this kind has a call for a finished run's graph (it overrides `fetch_workflow`)."""
        return cls.fetch_workflow is not ProviderClient.fetch_workflow

    def download_request(self, output: OutputRef) -> DownloadRequest:
        """The first request for an output's bytes. Auth headers only go to the provider's own host."""
        headers = self.auth_headers() if self.is_own_host(output.url) else {}
        return DownloadRequest(output.url, headers)

    async def check(self) -> str:
        """Raise ProviderError when the credential or base URL doesn't work; else a short success message."""
        raise NotImplementedError

    # -- helpers for subclasses ----------------------------------------------------------------

    def is_own_host(self, url: str) -> bool:
        """Same scheme, host and port (default ports filled in) as the base URL; False for a URL that
        cannot be parsed."""
        try:
            there, own = URL(url), URL(self.base_url)
        except ValueError:
            return False
        return (there.scheme, there.host, there.port) == (own.scheme, own.host, own.port)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        allow: Iterable[int] = (),
        **kwargs: Any,
    ) -> ProviderResponse:
        """Send one request and turn every failure into a ProviderError with a useful message.

        Statuses in `allow` (e.g. 404 for "unknown run", 400 for validation errors) are returned
        to the caller instead of raising. The body is read up to `options.max_body_bytes`.
        """
        if path.startswith(("http://", "https://")):
            url, shown = path, urlsplit(path).path
        else:
            url, shown = self.url(path), f"{self._base_path}/{path.lstrip('/')}"
        what = f"{self.label} {method} {shown}"
        try:
            response = await self.sender.send(method, url, what, self.options.max_body_bytes, **kwargs)
        except TransportFailure as exc:
            raise ProviderError(str(exc), permanent=exc.permanent) from None
        if response.is_success or response.status_code in allow:
            return response
        raise self.status_error(response, what)

    def status_error(self, response: ProviderResponse, what: str) -> ProviderError:
        code = response.status_code
        detail = self.error_detail(response)
        suffix = f": {detail}" if detail else ""
        if code in (401, 403):
            return ProviderError(
                f"{what} was refused ({code}): check the credential{suffix}",
                permanent=True,
                status_code=code,
                auth_failed=True,
            )
        if code == 429 or code == 503 or code >= 500 or code == 408:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            label = "is rate limiting us" if code == 429 else f"answered {code}"
            return ProviderError(f"{what} {label}{suffix}", retry_after=retry_after, status_code=code)
        return ProviderError(f"{what} answered {code}{suffix}", permanent=True, status_code=code)

    def error_detail(self, response: ProviderResponse) -> str:
        """The provider's own error message, if its body is JSON with one (short and escaped); else what
        kind of body it was, never its text. Subclasses may refine this."""
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            return body_kind(response)
        if isinstance(body, dict):
            for key in ("message", "detail", "error", "errMessage"):
                value = body.get(key)
                if isinstance(value, dict):
                    value = value.get("message") or value.get("type")
                if isinstance(value, str) and value:
                    return error_excerpt(value)
        return ""

    def json(self, response: ProviderResponse, what: str = "") -> Any:
        """Parse a JSON body; HTML pages, truncated or malformed JSON become a ProviderError.

        The standard library's parser, not orjson: orjson turns integers beyond 64 bits into floats."""
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            what = what or f"{self.label} {response.method} {response.path}"
            raise ProviderError(
                f"{what} answered {response.status_code} with a body that is not valid JSON ({body_kind(response)})."
            ) from None

    def validate(self, model: type[BaseModel], data: Any, what: str) -> Any:
        """Validate remote JSON with pydantic; a shape we don't understand is a ProviderError."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise ProviderError(f"{what}: unexpected response ({where}: {first['msg']}).") from None
