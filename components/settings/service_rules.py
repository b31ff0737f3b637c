"""The rules of values the settings hand to other services, as functions that say what is wrong with a value
(None: nothing): Kerberos durations, hosts, realms and principals (each becomes a line of krb5.conf), cron
schedules (Kubernetes' CronJob, CloudNativePG's ScheduledBackup), Prometheus durations, names Airflow,
PostgreSQL and LDAP know, and currencies.
"""

from __future__ import annotations

import re
import unicodedata

from components.settings.rules import CONTROL, shown


# ---------------------------------------------------------------------------------------------------------
# Kerberos: each value becomes a line of krb5.conf, so nothing that would start another line or section


_KRB5_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_KRB5_CLOCK = re.compile(r"([0-9]+):([0-9]{2})(?::([0-9]{2}))?")
# krb5 keeps a duration in a signed 32-bit number of seconds.
MAX_KRB5_SECONDS = 2**31 - 1


def krb5_seconds(value: str) -> int:
    """A krb5.conf duration (`2d`, `10h30m`, `36000`, `10:30`) in seconds."""
    if re.fullmatch(r"[0-9]{1,12}", value):
        return int(value)
    if value and (match := _KRB5_DURATION.fullmatch(value)) and len(value) <= 48:
        d, h, m, s = (int(group or 0) for group in match.groups())
        return ((d * 24 + h) * 60 + m) * 60 + s
    if (match := _KRB5_CLOCK.fullmatch(value)) and len(value) <= 24:
        h, m, s = (int(group or 0) for group in match.groups())
        return (h * 60 + m) * 60 + s
    raise ValueError(f"'{shown(value)}' is not a krb5 duration like '2d', '10h30m', '36000' (seconds) or '10:30'")


def krb5_duration_problem(value: str) -> str | None:
    try:
        seconds = krb5_seconds(value)
    except ValueError as error:
        return str(error)
    if not 1 <= seconds <= MAX_KRB5_SECONDS:
        return f"'{value}' must be between 1 second and {MAX_KRB5_SECONDS} seconds (about 68 years)"
    return None


_HOST_PORT = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::([0-9]{1,5}))?"
)


def host_port_problem(value: str) -> str | None:
    match = _HOST_PORT.fullmatch(value) if len(value) <= 261 else None
    if not match or (match.group(2) is not None and not 1 <= int(match.group(2)) <= 65535):
        return (
            f"'{shown(value)}' is not a host with an optional port (1-65535), like 'kdc1.example.org', "
            "'kdc1.example.org:88' or '[2001:db8::1]:88'"
        )
    return None


_REALM = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_PRINCIPAL_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*"


def realm_problem(value: str) -> str | None:
    if len(value) > 255 or not _REALM.fullmatch(value):
        return f"'{shown(value)}' is not a Kerberos realm: at most 255 letters, digits, '.', '_' and '-', e.g. 'EXAMPLE.ORG'"
    return None


def principal_problem(value: str) -> str | None:
    if len(value) > 512 or not re.fullmatch(rf"{_PRINCIPAL_PART}(?:@{_REALM.pattern})?", value):
        return (
            f"'{shown(value)}' is not a Kerberos principal like 'airflow/host.example.org@EXAMPLE.ORG' "
            "('/'-separated parts of letters, digits, '.', '_' and '-', each starting with a letter or digit, "
            "and an optional '@' realm)"
        )
    return None


# ---------------------------------------------------------------------------------------------------------
# Schedules and durations


_CRON_RANGES = {"second": (0, 59), "minute": (0, 59), "hour": (0, 23), "day of month": (1, 31), "month": (1, 12),
                "day of week": (0, 6)}
_CRON_NAMES = {
    "month": {name: i + 1 for i, name in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    "day of week": {name: i for i, name in enumerate("sun mon tue wed thu fri sat".split())},
}
_CRON_ITEM = re.compile(r"(\*|\?|[0-9A-Za-z]{1,3}(?:-[0-9A-Za-z]{1,3})?)(?:/([0-9]{1,3}))?")


def _cron_field_problem(field: str, what: str) -> str | None:
    low, high = _CRON_RANGES[what]
    names = _CRON_NAMES.get(what, {})

    def number(text: str) -> int | None:
        if text.isdigit():
            value = int(text)
            return value if low <= value <= high else None
        return names.get(text.lower())

    for item in field.split(","):
        match = _CRON_ITEM.fullmatch(item)
        if not match:
            return f"{what} '{shown(item)}' is not '*', a number, a range or a step"
        span, step = match.groups()
        if step is not None and int(step) == 0:
            return f"{what} '{item}' has a step of 0"
        if span in ("*", "?"):
            continue
        ends = [number(end) for end in span.split("-")]
        if None in ends or (len(ends) == 2 and ends[0] > ends[1]):
            return f"{what} '{item}' is outside {low}-{high}"
    return None


def cron_problem(value: str, seconds: bool) -> str | None:
    """The standard cron syntax Kubernetes' CronJob and CloudNativePG's ScheduledBackup (with a seconds field
    first) parse: an expression they refuse would stop `pulumi up`, or silently never back up."""
    fields = value.split(" ")
    wanted = ["second"] * seconds + ["minute", "hour", "day of month", "month", "day of week"]
    example = "'0 0 2 * * *'" if seconds else "'17 3 * * *'"
    fields = [field for field in fields if field]
    if len(fields) != len(wanted) or len(value) > 256 or CONTROL.search(value) or value != value.strip():
        if seconds:
            return f"'{shown(value)}' must be a 6-field cron expression with seconds first, e.g. {example}"
        return f"'{shown(value)}' must be a 5-field cron expression, e.g. {example}"
    for field, what in zip(fields, wanted):
        if problem := _cron_field_problem(field, what):
            return f"'{shown(value)}': {problem}; e.g. {example}"
    return None


# Prometheus' duration syntax, as the monitoring.coreos.com CRDs check it.
_PROMETHEUS_DURATION = re.compile(r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?")
_PROMETHEUS_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def scrape_interval_problem(value: str) -> str | None:
    match = _PROMETHEUS_DURATION.fullmatch(value) if value and len(value) <= 32 else None
    if not match:
        return f"'{shown(value)}' is not a Prometheus duration like '30s' or '1m'"
    seconds = sum(int(n or 0) * unit for n, unit in zip(match.groups(), _PROMETHEUS_UNITS))
    # Prometheus takes a series as gone after 5 minutes without a sample: a longer interval leaves gaps in every
    # metric, and alerts that never hold.
    if not 1 <= seconds <= 300:
        return f"'{value}' must be between 1s and 5m (Prometheus marks a series stale after 5 minutes without a sample)"
    return None


# ---------------------------------------------------------------------------------------------------------
# Names of things Airflow, PostgreSQL and LDAP know


def identifier_problem(what: str, pattern: str, example: str, max_length: int = 63):
    compiled = re.compile(pattern)

    def problem(value: str) -> str | None:
        if len(value) > max_length or not compiled.fullmatch(value):
            return f"'{shown(value)}' is not {what} (at most {max_length} characters), e.g. '{example}'"
        return None

    return problem


def currency_problem(value: str) -> str | None:
    """An ISO 4217 code or a currency sign: the outputs and `python -m envs list` print it after amounts."""
    if re.fullmatch(r"[A-Z]{3}", value) or (0 < len(value) <= 3 and all(unicodedata.category(c) == "Sc" for c in value)):
        return None
    return f"'{shown(value)}' is not a currency: use an ISO 4217 code like 'USD' or 'EUR', or a sign like '€'"
