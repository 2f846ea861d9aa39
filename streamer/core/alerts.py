"""Alert rules on rolling scores: parsing and evaluation (pure, no I/O).

A rule watches an emotion or a group of emotions (their rolling scores
summed) on some or all channels. It is *raised* when the score has stayed at
or above the threshold for ``hold_s`` seconds of stream time, and *cleared*
when the score falls below ``threshold - hysteresis`` (or speech stops).
After a clear, the same rule on the same channel waits ``cooldown_s`` before
it can be raised again, so a score hovering at the threshold does not spam.

Command-line syntax::

    [CHANNEL:]EMOTION_OR_GROUP>=THRESHOLD [for Ns] [cooldown Ns] [severity WORD]

e.g. ``caller:angry>=0.6 for 5s``, ``negative>=0.7 for 10s severity high`` or
``caller:arousal>=0.7 for 10s`` (``negative`` and ``arousal`` are built-in groups).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from streamer.core.labels import EMOTIONS, HIGH_AROUSAL, NEGATIVE

DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {"negative": NEGATIVE, "arousal": HIGH_AROUSAL}
SEVERITIES = ("info", "warning", "high", "critical")


class RuleError(ValueError):
    """An invalid rule; the message names the rule."""


@dataclass(frozen=True)
class AlertRule:
    name: str
    emotion: str  # an emotion, or the name of a group
    members: tuple[str, ...]  # emotions whose rolling scores are summed
    threshold: float
    hold_s: float = 0.0
    cooldown_s: float = 30.0
    channel: str | None = None  # None: every channel
    severity: str = "warning"
    hysteresis: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise RuleError(f"rule '{self.name}': threshold must be in (0, 1], got {self.threshold}")
        if self.hold_s < 0 or self.cooldown_s < 0:
            raise RuleError(f"rule '{self.name}': durations must not be negative")
        if self.severity not in SEVERITIES:
            raise RuleError(f"rule '{self.name}': severity must be one of {', '.join(SEVERITIES)}")
        unknown = [m for m in self.members if m not in EMOTIONS]
        if unknown or not self.members:
            raise RuleError(f"rule '{self.name}': unknown emotion {', '.join(unknown) or '(none)'}")

    def score(self, rolling: dict[str, float]) -> float:
        return float(sum(rolling[m] for m in self.members))


def _members(name: str, emotion: str, groups: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    if emotion in groups:
        return tuple(groups[emotion])
    parts = tuple(p.strip() for p in emotion.split("+"))
    bad = [p for p in parts if p not in EMOTIONS]
    if bad:
        known = ", ".join(list(EMOTIONS) + list(groups))
        raise RuleError(f"rule '{name}': unknown emotion or group '{bad[0]}' (known: {known})")
    return parts


_DURATION = r"(\d+(?:\.\d+)?)\s*s"
_RULE = re.compile(
    rf"""^\s*(?:(?P<channel>[\w.-]+)\s*:\s*)?(?P<emotion>[a-z+\s]+?)\s*>=\s*(?P<threshold>\d*\.?\d+)
    (?:\s+for\s+{_DURATION})?(?:\s+cooldown\s+(?P<cooldown>\d+(?:\.\d+)?)\s*s)?(?:\s+severity\s+(?P<severity>\w+))?\s*$""",
    re.VERBOSE,
)


def parse_rule(text: str, groups: dict[str, tuple[str, ...]] | None = None) -> AlertRule:
    """Parse the command-line form; raises :class:`RuleError` naming the rule."""
    groups = {**DEFAULT_GROUPS, **(groups or {})}
    match = _RULE.match(text)
    if not match:
        raise RuleError(
            f"rule '{text}': expected [CHANNEL:]EMOTION>=THRESHOLD [for Ns] [cooldown Ns] [severity WORD], "
            "e.g. 'caller:angry>=0.6 for 5s'"
        )
    emotion = match["emotion"].replace(" ", "")
    return AlertRule(
        name=text.strip(),
        emotion=emotion,
        members=_members(text, emotion, groups),
        threshold=float(match["threshold"]),
        hold_s=float(match.group(4) or 0.0),
        cooldown_s=float(match["cooldown"]) if match["cooldown"] else 30.0,
        channel=match["channel"],
        severity=match["severity"] or "warning",
    )


def load_rules(path: Path) -> list[AlertRule]:
    """Rules from a TOML file::

    [groups]
    negative = ["angry", "disgust", "fearful", "sad"]

    [[rule]]
    name = "angry caller"
    emotion = "angry"        # an emotion, a group, or "angry+disgust"
    threshold = 0.6
    for_s = 5
    cooldown_s = 60
    channel = "caller"       # optional
    severity = "high"        # info | warning | high | critical
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RuleError(f"alert file '{path}': {exc}") from None
    groups = dict(DEFAULT_GROUPS)
    for name, members in data.get("groups", {}).items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise RuleError(f"alert file '{path}': group '{name}' must be a list of emotions")
        groups[name] = tuple(members)
    rules = []
    allowed = {"name", "emotion", "threshold", "for_s", "cooldown_s", "channel", "severity"}
    for i, entry in enumerate(data.get("rule", []), 1):
        name = str(entry.get("name", f"rule {i}"))
        extra = set(entry) - allowed
        if extra:
            raise RuleError(f"rule '{name}': unknown key {', '.join(sorted(extra))}")
        if "emotion" not in entry or "threshold" not in entry:
            raise RuleError(f"rule '{name}': needs 'emotion' and 'threshold'")
        try:
            rules.append(
                AlertRule(
                    name=name,
                    emotion=str(entry["emotion"]),
                    members=_members(name, str(entry["emotion"]), groups),
                    threshold=float(entry["threshold"]),
                    hold_s=float(entry.get("for_s", 0.0)),
                    cooldown_s=float(entry.get("cooldown_s", 30.0)),
                    channel=entry.get("channel"),
                    severity=str(entry.get("severity", "warning")),
                )
            )
        except (TypeError, ValueError) as exc:
            raise RuleError(str(exc) if isinstance(exc, RuleError) else f"rule '{name}': {exc}") from None
    return rules


@dataclass
class _RuleState:
    since: float | None = None  # when the score first reached the threshold
    raised: bool = False
    raised_score: float = 0.0
    cleared_at: float | None = None


@dataclass
class AlertEngine:
    """Evaluates rules on every scores message; keeps state per rule, stream and channel."""

    rules: list[AlertRule]
    _state: dict[tuple[str, str, str], _RuleState] = field(default_factory=dict)

    def evaluate(self, message: dict) -> list[dict]:
        """Alert events caused by one ``scores`` message (usually none)."""
        if message.get("type") != "scores":
            return []
        events = []
        stream, channel, t, rolling = message["stream"], message["channel"], message["t"], message["rolling"]
        for rule in self.rules:
            if rule.channel is not None and rule.channel != channel:
                continue
            state = self._state.setdefault((rule.name, stream, channel), _RuleState())
            score = rule.score(rolling) if rolling else 0.0
            if state.raised:
                if rolling is None or score < rule.threshold - rule.hysteresis:
                    state.raised, state.since, state.cleared_at = False, None, t
                    events.append(self._event(rule, stream, channel, score, t, t, "cleared"))
                continue
            if rolling is None or score < rule.threshold:
                state.since = None
                continue
            if state.since is None:
                state.since = t
            cooling = state.cleared_at is not None and t - state.cleared_at < rule.cooldown_s
            if t - state.since >= rule.hold_s and not cooling:
                state.raised = True
                events.append(self._event(rule, stream, channel, score, state.since, t, "raised"))
        return events

    def forget(self, stream: str, at: float) -> list[dict]:
        """Drop a stream's state (its call ended); alerts still raised are cleared at ``at``."""
        events = []
        rules = {rule.name: rule for rule in self.rules}
        for key in [k for k in list(self._state) if k[1] == stream]:  # list(): other workers insert
            state = self._state.pop(key, None)
            if state is not None and state.raised and key[0] in rules:
                events.append(self._event(rules[key[0]], stream, key[2], 0.0, at, at, "cleared"))
        return events

    @staticmethod
    def _event(rule: AlertRule, stream: str, channel: str, score: float, since: float, at: float, state: str) -> dict:
        return {
            "type": "alert",
            "rule": rule.name,
            "stream": stream,
            "channel": channel,
            "emotion": rule.emotion,
            "score": round(score, 4),
            "since": since,
            "at": at,
            "severity": rule.severity,
            "state": state,
        }
