"""Apprise delivery of the ladder's messages: retried, counted, and never leaking a secret.

**Targets.** ``OST_APPRISE_URLS`` (URLs separated by commas or spaces) are added with both tags,
``alert`` and ``escalate``: apprise only sends a tagged notification to services carrying that
tag (or ``always``), so an untagged URL would receive neither. ``OST_APPRISE_CONFIG`` is an
apprise YAML/text config file whose entries carry the tags ``alert`` and/or ``escalate`` (or
``always``); an entry with no tag receives only ``ost notify-test``. Both may be set.

**Delivery.** Each matched target is notified on its own and retried by stamina (3 attempts,
short exponential backoff), so a target that failed once is retried without sending twice to
the others. A message counts as delivered when at least one target accepted it. Every target's
result is counted in the ledger as ``notifications_total{level,result}`` (``sent``, ``failed``;
``unconfigured`` or ``no_target`` when there was nowhere to send it: such a message is not
delivered, and stays due until a target exists). :meth:`Notifier.send` never raises;
:func:`send_test` (``ost notify-test``) raises :class:`~ost.errors.NotifyError`.

**Secrets.** An apprise URL carries tokens (in its password, host, path or query). Apprise and
urllib3 log URLs at DEBUG (``JSON POST URL: ...``, ``"POST /path"``), and at ERROR for a URL
they cannot parse. A :class:`SecretRedactor` on their loggers replaces every piece of every
configured URL with ``***`` before any handler sees a record; it is installed before apprise
reads a single URL. Our own log lines and exception messages never include a URL, and nothing
of a URL reaches the ledger or the metrics. Apprise's persistent storage is kept in memory.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise
import stamina
from ost.alerts.policy import Kind, Message

from ost.errors import NotifyError
from ost.ledger import Ledger
from ost.settings import Settings, apprise_target_label, split_apprise_urls

log = logging.getLogger(__name__)

ALL_TAGS: Final = (Kind.ALERT.value, Kind.ESCALATE.value)
MASK: Final = "***"
MIN_SECRET_CHARS: Final = 3
#: The loggers through which apprise and the HTTP stack below it may print a URL.
REDACTED_LOGGERS: Final = (
    "apprise",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "requests",
)
_URL_RE: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_NOTIFY_TYPES: Final = {
    Kind.ALERT: apprise.NotifyType.WARNING,
    Kind.ESCALATE: apprise.NotifyType.FAILURE,
    Kind.RECOVERY: apprise.NotifyType.SUCCESS,
}


class Delivery(StrEnum):
    """What became of a message."""

    SENT = "sent"
    FAILED = "failed"
    #: No apprise target is configured at all.
    UNCONFIGURED = "unconfigured"
    #: Targets are configured, but none carries the message's tags.
    NO_TARGET = "no_target"

    @property
    def settled(self) -> bool:
        """Whether the message was delivered; any other message stays due for the next evaluation.

        A message with nowhere to go (no target at all, or none with its tag) is not delivered
        either: it goes out at the first evaluation after a target is configured.
        """
        return self is Delivery.SENT


@dataclass(frozen=True)
class DeliveryResult:
    """A notification's fate, and how many of its targets accepted it."""

    delivery: Delivery
    accepted: int = 0
    targets: int = 0


@dataclass(frozen=True)
class _Notice:
    """One notification's content, as apprise takes it."""

    level: str
    title: str
    body: str
    notify_type: Any


class _Undelivered(Exception):
    """A target did not accept a notification (a reason for stamina to retry)."""


# ---- secrets ----------------------------------------------------------------------------------


class SecretRedactor(logging.Filter):
    """A logging filter that replaces every known secret in a record with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        """Also redact ``secrets`` from now on."""
        self._secrets.update(secret for secret in secrets if len(secret) >= MIN_SECRET_CHARS)

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***`` (longest first)."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place (message, arguments, traceback); never drop it."""
        if not self._secrets:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def install(self, logger_names: Iterable[str] = REDACTED_LOGGERS) -> None:
        """Attach this filter to the loggers named (once each)."""
        for name in logger_names:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)


#: The one redactor of this process: secrets are added to it as URLs are configured.
REDACTOR: Final = SecretRedactor()


def url_secrets(url: str, *, query: bool = True) -> set[str]:
    """Every piece of ``url`` that may be a secret: user, password, host, path, query values.

    The scheme, query keys and port numbers are left out (query values too when ``query`` is
    false); so are pieces shorter than :data:`MIN_SECRET_CHARS`. Each piece is given both as
    written and percent-decoded. Text that is not a URL at all is a secret as a whole (a
    mangled URL could be a token).
    """
    text = url.strip()
    if "://" not in text:
        return _with_decoded([text])
    parts = urlsplit(text)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    pieces = [text, *re.split(r"[:@]", userinfo), *re.split(r":(?=\d+$)", hostport)[:1]]
    pieces += parts.path.split("/") + parts.fragment.split("/")
    if query:
        pieces += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    return _with_decoded(pieces)


def _with_decoded(pieces: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for piece in pieces:
        if len(piece) >= MIN_SECRET_CHARS and not (piece.isdigit() and len(piece) <= 5):
            found.update({piece, unquote(piece)})
    return found


# ---- the notifier -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """How a target that did not accept a notification is retried (stamina's parameters)."""

    attempts: int = 3
    wait_initial: float = 0.5
    wait_max: float = 4.0


class Notifier:
    """Sends messages to the apprise targets of ``settings``, counting results in ``ledger``."""

    def __init__(
        self, settings: Settings, ledger: Ledger | None = None, *, retry: Retry | None = None
    ) -> None:
        self.ledger = ledger
        self.retry = retry or Retry()
        #: The configured targets apprise cannot use, named without a secret (for notify-test).
        self.unusable: list[str] = []
        REDACTOR.install()
        self._apprise = apprise.Apprise(asset=apprise.AppriseAsset(storage_mode="memory"))
        if settings.apprise_urls is not None:
            self._add_urls(settings.apprise_urls.get_secret_value())
        if settings.apprise_config:
            self._add_config(Path(settings.apprise_config).expanduser())
        REDACTOR.add(self._service_secrets())

    @property
    def configured(self) -> bool:
        """Whether any apprise target is configured."""
        return len(self._apprise) > 0

    def send(self, message: Message) -> Delivery:
        """Deliver one of the ladder's messages to the targets of its tags; never raises."""
        result = self.deliver(
            message.kind.value,
            title=message.title,
            body=message.body,
            tags=message.tags,
            notify_type=_NOTIFY_TYPES[message.kind],
        )
        return result.delivery

    def deliver(
        self,
        level: str,
        *,
        title: str,
        body: str,
        tags: Iterable[str],
        notify_type: Any = apprise.NotifyType.INFO,
    ) -> DeliveryResult:
        """Deliver a notification to every target matching one of ``tags``; never raises."""
        if not self.configured:
            log.warning(
                "No apprise target configured (OST_APPRISE_URLS / OST_APPRISE_CONFIG):"
                " the %s notification %r was not sent.",
                level,
                title,
            )
            self._count(level, Delivery.UNCONFIGURED)
            return DeliveryResult(Delivery.UNCONFIGURED)
        wanted = list(tags)
        targets = self._targets(wanted)
        if not targets:
            log.warning(
                "No apprise target is tagged %s: the %s notification was not sent.",
                " or ".join(wanted),
                level,
            )
            self._count(level, Delivery.NO_TARGET)
            return DeliveryResult(Delivery.NO_TARGET)
        notice = _Notice(level, title, body, notify_type)
        accepted = sum(
            self._deliver_to(_target_name(number, target), target, notice)
            for number, target in enumerate(targets, start=1)
        )
        self._count(level, Delivery.SENT, accepted)
        self._count(level, Delivery.FAILED, len(targets) - accepted)
        delivery = Delivery.SENT if accepted else Delivery.FAILED
        return DeliveryResult(delivery, accepted, len(targets))

    def _deliver_to(self, name: str, target: Any, notice: _Notice) -> bool:
        """Notify one target, retried; True once it accepted."""
        try:
            for attempt in stamina.retry_context(
                on=_Undelivered,
                attempts=self.retry.attempts,
                timeout=None,
                wait_initial=self.retry.wait_initial,
                wait_max=self.retry.wait_max,
                wait_jitter=self.retry.wait_initial,
            ):
                with attempt:
                    _notify_once(target, notice)
        except _Undelivered as exc:
            log.error(  # noqa: TRY400  # the traceback would add nothing but noise
                "%s did not accept the %s notification after %d attempts: %s",
                name,
                notice.level,
                self.retry.attempts,
                exc,
            )
            return False
        log.info("%s accepted the %s notification.", name, notice.level)
        return True

    def _targets(self, tags: list[str]) -> list[Any]:
        """The targets matching any of ``tags`` (or tagged ``always``), in configured order."""
        try:
            return list(self._apprise.find(tag=tags))
        except Exception as exc:  # noqa: BLE001  # a broken config file must not stop the watchdog
            log.error(  # noqa: TRY400  # no traceback: it could quote a URL
                "Apprise could not load its targets: %s", REDACTOR.redact(str(exc))
            )
            return []

    def _add_urls(self, text: str) -> None:
        urls = split_apprise_urls(text)
        for url in urls:
            REDACTOR.add(url_secrets(url))
        rejected = [
            f"OST_APPRISE_URLS entry {number} ({apprise_target_label(url)})"
            for number, url in enumerate(urls, start=1)
            if not self._apprise.add(url, tag=list(ALL_TAGS))
        ]
        if rejected:
            self.unusable += rejected
            log.error("Apprise cannot use %s.", ", ".join(rejected))

    def _add_config(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.unusable.append(f"OST_APPRISE_CONFIG {path} (cannot be read: {exc.strerror})")
            log.error(  # noqa: TRY400  # the reason is enough, no traceback
                "OST_APPRISE_CONFIG %s cannot be read: %s", path, exc.strerror
            )
            return
        for url in _URL_RE.findall(text):
            REDACTOR.add(url_secrets(url))
        config = apprise.AppriseConfig(asset=self._apprise.asset)
        if not config.add(str(path)):
            self.unusable.append(f"OST_APPRISE_CONFIG {path} (apprise cannot use it)")
            log.error("Apprise could not use OST_APPRISE_CONFIG %s.", path)
            return
        self._apprise.add(config)

    def _service_secrets(self) -> Iterator[str]:
        """The secrets of every loaded service, as apprise itself renders its URL.

        Query values are left out: apprise adds its defaults there (``method=POST``), and
        those the operator wrote were taken from the configured text already.
        """
        for target in self._targets(["all"]):
            try:
                yield from url_secrets(target.url(privacy=False), query=False)
            except Exception:  # noqa: BLE001, S112  # a plugin that cannot render a URL leaks none
                continue

    def _count(self, level: str, result: Delivery, count: int = 1) -> None:
        if self.ledger is None or count <= 0:
            return
        try:
            self.ledger.record_notification(level, result.value, count)
        except Exception as exc:  # noqa: BLE001  # bookkeeping must never break a delivery
            log.warning("Could not count the %s notification in the ledger: %s", level, exc)


def _notify_once(target: Any, notice: _Notice) -> None:
    """One attempt at one target; :class:`_Undelivered` unless it accepted."""
    try:
        accepted = target.notify(
            body=notice.body, title=notice.title, notify_type=notice.notify_type
        )
    except Exception as exc:  # noqa: BLE001  # a plugin may raise anything: retry, then report
        raise _Undelivered(f"{type(exc).__name__}: {REDACTOR.redact(str(exc))}") from None
    if not accepted:
        raise _Undelivered("the service refused it or could not be reached")


def _target_name(number: int, target: Any) -> str:
    """How a target appears in our logs: its position and service name, never its URL."""
    service = getattr(target, "service_name", None) or type(target).__name__
    return f"apprise target #{number} ({service})"


def send_test(settings: Settings, tag: str | None = None, ledger: Ledger | None = None) -> int:
    """``ost notify-test``: a test message to the targets of ``tag`` (all when None).

    Returns how many targets accepted it; raises :class:`~ost.errors.NotifyError` when there is
    no target, or none accepted it, naming the configured targets apprise cannot use (by their
    position and scheme, or their file: never a token).
    """
    notifier = Notifier(settings, ledger)
    tags = [tag] if tag else ["all"]
    result = notifier.deliver(
        "test",
        title="ost-ingest test notification",
        body=(
            "A test from `ost notify-test`: this target will receive the escalation ladder's"
            f" messages{f' tagged {tag}' if tag else ''}."
        ),
        tags=tags,
    )
    unusable = f"; unusable: {', '.join(notifier.unusable)}" if notifier.unusable else ""
    if result.delivery is Delivery.UNCONFIGURED:
        if notifier.unusable:
            raise NotifyError(f"no usable apprise target{unusable}")
        raise NotifyError("no apprise target: set OST_APPRISE_URLS or OST_APPRISE_CONFIG")
    if result.delivery is Delivery.NO_TARGET:
        raise NotifyError(f"no apprise target is tagged {tag!r}{unusable}")
    if result.delivery is Delivery.FAILED:
        raise NotifyError(
            f"none of the {result.targets} apprise targets accepted the test notification"
            f" (see the log above){unusable}"
        )
    return result.accepted
