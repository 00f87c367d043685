"""The catalogue of everything a game can do off-spec, and the records of it.

Every check the server makes has one entry here: a stable id such as
``force.some-unregistered`` (safe to match in scripts and tests), a severity, a
message template and a hint saying what to do about it. The server, the
console, the HTTP API and the logs all show the same :class:`Diagnostic`
records, made with :func:`diagnose`.

Ids are ``<area>.<what>``; areas are ``protocol``, ``context``, ``action``,
``force``, ``result`` and ``behaviour``. An id is never reused for another
meaning; severities and texts may be tuned.
"""

from __future__ import annotations

import dataclasses
import enum
import string
import time
from collections.abc import Mapping
from typing import Any, Final

from neuro_api._text import printable
from neuro_api.command import FieldProblem, ProblemKind, ProtocolError

__all__ = [
    "CATALOGUE",
    "Diagnostic",
    "DiagnosticKind",
    "Severity",
    "diagnose",
    "from_note",
    "from_protocol_error",
]

MAX_FRAME_CHARS: Final = 500
"""Offending frames are kept up to this many characters (then ``...``)."""

MAX_VALUE_CHARS: Final = 200
"""Values quoted in a message or subject are cut to this many characters, so
a game sending huge names cannot make diagnostics (kept and logged) huge."""


class Severity(enum.StrEnum):
    """How bad a diagnostic is; compare with :attr:`rank`."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for error."""
        return _RANKS[self]


_RANKS: Final = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclasses.dataclass(frozen=True, slots=True)
class DiagnosticKind:
    """One entry of the catalogue.

    ``template`` is a :meth:`str.format` string; its fields are the keyword
    arguments :func:`diagnose` needs.
    """

    id: str
    severity: Severity
    title: str
    template: str
    hint: str
    fields: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    """Names the template needs (parsed once, when the entry is made)."""

    def __post_init__(self) -> None:
        fields = frozenset(
            name for _, name, _, _ in string.Formatter().parse(self.template) if name
        )
        object.__setattr__(self, "fields", fields)


@dataclasses.dataclass(frozen=True, slots=True)
class Diagnostic:
    """One thing a game did off-spec (or worth knowing).

    ``subject`` names the offending field or action (``data.priority``,
    ``play``); ``frame`` is the offending frame's text, cut to
    :data:`MAX_FRAME_CHARS`.
    """

    id: str
    severity: Severity
    message: str
    game: str | None = None
    subject: str | None = None
    frame: str | None = None
    time: float = dataclasses.field(default_factory=time.time, compare=False)

    @property
    def kind(self) -> DiagnosticKind:
        """The catalogue entry."""
        return CATALOGUE[self.id]

    @property
    def hint(self) -> str:
        """What to do about it."""
        return self.kind.hint

    def __str__(self) -> str:
        where = f" [{self.game}]" if self.game else ""
        return f"{self.severity}{where} {self.id}: {self.message}"

    def format(self, *, hint: bool = True, frame: bool = False) -> str:
        """Return a readable multi-line form (for the console and logs)."""
        lines = [str(self)]
        if hint and self.hint:
            lines.append(f"    hint: {self.hint}")
        if frame and self.frame is not None:
            lines.append(f"    frame: {self.frame}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (what the HTTP API and event stream show)."""
        return {
            "id": self.id,
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
            "game": self.game,
            "subject": self.subject,
            "frame": self.frame,
            "time": self.time,
        }


def _kind(
    id_: str, severity: Severity, title: str, template: str, hint: str = ""
) -> DiagnosticKind:
    return DiagnosticKind(id_, severity, title, template, hint)


_I, _W, _E = Severity.INFO, Severity.WARNING, Severity.ERROR

_KINDS: Final = (
    # --- protocol ---------------------------------------------------------
    _kind(
        "protocol.invalid-json",
        _E,
        "Invalid JSON",
        "{detail}",
        "Send exactly one JSON object per text frame.",
    ),
    _kind(
        "protocol.not-an-object",
        _E,
        "Frame is not an object",
        "{detail}",
        'Every frame is a JSON object like {"command": ..., "game": ...}.',
    ),
    _kind(
        "protocol.binary-frame",
        _W,
        "Binary frame",
        "received a binary frame ({size} bytes); it was decoded as UTF-8 "
        "for testing, but the real Neuro breaks on binary frames",
        "Send text frames only (the spec says plaintext only).",
    ),
    _kind(
        "protocol.not-text",
        _E,
        "Binary frame that is not UTF-8",
        "{detail}",
        "Send text frames holding UTF-8 JSON.",
    ),
    _kind(
        "protocol.oversized-frame",
        _E,
        "Oversized frame",
        "a frame exceeded the {limit} byte limit and the connection was closed",
        "Keep frames small; split large context into several messages.",
    ),
    _kind(
        "protocol.missing-game",
        _E,
        "Missing game",
        "{command!r} frame has no 'game' field",
        "Every game-to-Neuro frame carries the game's display name in 'game'.",
    ),
    _kind(
        "protocol.missing-field",
        _E,
        "Missing field",
        "{command!r} frame: {field}: required field is missing",
        "See the command's fields in the API specification.",
    ),
    _kind(
        "protocol.wrong-type",
        _E,
        "Wrong field type",
        "{command!r} frame: {detail}",
        "See the command's fields in the API specification.",
    ),
    _kind(
        "protocol.invalid-value",
        _E,
        "Invalid value",
        "{command!r} frame: {detail}",
        "See the command's fields in the API specification.",
    ),
    _kind(
        "protocol.unknown-command",
        _E,
        "Unknown command",
        "{detail}",
        "Check the spelling; commands are case-sensitive.",
    ),
    _kind(
        "protocol.unknown-key",
        _W,
        "Unknown key",
        "{command!r} frame: unknown key {field} was ignored",
        "Remove it, or check its spelling against the API specification.",
    ),
    _kind(
        "protocol.ignored-data",
        _W,
        "Data ignored",
        "{command!r} frame: {detail}",
        "This command takes no data: leave 'data' out (or send {}). Some SDKs "
        "send [] for an empty object.",
    ),
    _kind(
        "protocol.null-value",
        _I,
        "Null value",
        "{command!r} frame: {field} is null",
        "Omit optional fields instead of sending null.",
    ),
    _kind(
        "protocol.before-startup",
        _W,
        "Message before startup",
        "{command!r} received before 'startup'",
        "Send 'startup' first on every connection; it resets the game's actions.",
    ),
    _kind(
        "protocol.repeated-startup",
        _W,
        "Repeated startup",
        "'startup' received again on the same connection; the game's actions "
        "were cleared",
        "Send 'startup' once, when the game starts or reconnects.",
    ),
    _kind(
        "protocol.game-renamed",
        _E,
        "Game name changed",
        "game name changed from {old!r} to {new!r} during the session",
        "The 'game' field must stay the same for the whole session.",
    ),
    _kind(
        "protocol.shutdown-ready",
        _I,
        "Shutdown ready",
        "game reported it is ready to be closed",
    ),
    # --- context ------------------------------------------------------------
    _kind(
        "context.empty",
        _W,
        "Empty context",
        "context message is empty",
        "Send context only when there is something to say.",
    ),
    _kind(
        "context.held",
        _I,
        "Context held",
        "context arrived while a result is pending; it is held and delivered "
        "after the result",
    ),
    _kind(
        "context.dropped",
        _W,
        "Held context dropped",
        "too much context held while a result is pending (limit {limit}); "
        "{which} was dropped",
        "Answer actions promptly; Neuro cannot use a flood of context anyway.",
    ),
    # --- actions ------------------------------------------------------------
    _kind(
        "action.rejected",
        _E,
        "Invalid action entry",
        "action entry not registered: {detail}",
        'Each action is {"name": str, "description": str, "schema"?: object}.',
    ),
    _kind(
        "action.limit",
        _E,
        "Too many actions",
        "{count} action(s) not registered ({names}): a game may have at most "
        "{limit} actions registered",
        "Register only what Neuro can do now; unregister the rest.",
    ),
    _kind(
        "action.memory-limit",
        _E,
        "Actions too large to keep",
        "{count} action(s) not registered ({names}): {reason}",
        "Register fewer or smaller actions (schemas are counted as JSON); "
        "unregister what Neuro cannot do now.",
    ),
    _kind(
        "action.register-empty",
        _W,
        "Empty registration",
        "'actions/register' with an empty actions list",
        "Register at least one action, or send nothing.",
    ),
    _kind(
        "action.name-empty",
        _E,
        "Empty action name",
        "an action has an empty name",
        "Give every action a lowercase name such as 'play_card'.",
    ),
    _kind(
        "action.name-not-lowercase",
        _W,
        "Action name not lowercase",
        "action name {name!r} is not lowercase",
        "Use lowercase names with '_' or '-' between words, e.g. 'play_card'.",
    ),
    _kind(
        "action.name-invalid-chars",
        _W,
        "Invalid characters in action name",
        "action name {name!r} contains {chars}",
        "Use only a-z, 0-9, '_' and '-'.",
    ),
    _kind(
        "action.description-missing",
        _W,
        "Missing description",
        "action {name!r} has an empty description",
        "Describe what the action does; Neuro reads it.",
    ),
    _kind(
        "action.schema-null",
        _W,
        "Null schema",
        'action {name!r} has "schema": null',
        "Omit the schema for an action that takes no data.",
    ),
    _kind(
        "action.schema-empty",
        _I,
        "Empty schema",
        "action {name!r} has an empty schema {{}}",
        "Prefer omitting the schema for an action that takes no data.",
    ),
    _kind(
        "action.schema-type-not-object",
        _E,
        "Schema type is not object",
        'schema of action {name!r} has type {type}, not "object"',
        'Wrap other values in an object schema ("type": "object") with one '
        "property holding the value.",
    ),
    _kind(
        "action.schema-invalid",
        _E,
        "Invalid JSON schema",
        "schema of action {name!r} is not a valid JSON schema: {detail}",
        "Check the schema against the JSON Schema specification.",
    ),
    _kind(
        "action.schema-too-complex",
        _E,
        "Schema too costly to check",
        "schema of action {name!r} could make checking one value take too "
        "long: {detail}",
        "Use enum for a long list of constants, and references that go "
        "deeper into the value (a tree) rather than back to the same part.",
    ),
    _kind(
        "action.schema-depth-limited",
        _W,
        "Deep data too costly to check",
        "checking data of action {name!r} costs more with each level of "
        "nesting from {depth} levels deep; data deep enough to take too long "
        "to check will be refused",
        "Its references apply to the same part of the data more and more "
        "often with each level (e.g. a oneOf whose branches all recurse "
        "under the same property); give the branches distinct properties, or "
        "keep the data shallow.",
    ),
    _kind(
        "action.schema-unsupported-keywords",
        _W,
        "Unsupported schema keywords",
        "schema of action {name!r} uses keywords Neuro probably does not "
        "support well: {keywords}",
        "Simplify the schema; Neuro may ignore or misread these keywords.",
    ),
    _kind(
        "action.schema-unknown-keywords",
        _I,
        "Schema keywords of unknown support",
        "schema of action {name!r} uses keywords of unknown support: {keywords}",
        "Check that Neuro's answers respect them.",
    ),
    _kind(
        "action.schema-unanswerable",
        _W,
        "Schema too large to answer",
        "forces on action {name!r} cannot be answered with valid data within "
        "{limit} bytes (its valid data takes at least {size} bytes)",
        "Bound the schema (minLength, minItems, required properties): data "
        "this large cannot be generated here, and Neuro could not write it.",
    ),
    _kind(
        "action.duplicate-identical",
        _I,
        "Duplicate registration",
        "action {name!r} is already registered (identical); ignored",
        "Register each action once, or unregister it first.",
    ),
    _kind(
        "action.duplicate-conflicting",
        _W,
        "Conflicting re-registration",
        "action {name!r} is already registered with a different description "
        "or schema; the new one was ignored",
        "Unregister the action before registering a changed version.",
    ),
    _kind(
        "action.name-collision",
        _W,
        "Action name collision",
        "action {name!r} is also registered by {other!r}; names are shared by "
        "all games connected to one character",
        "Prefix action names with something specific to the game.",
    ),
    _kind(
        "action.unregister-empty",
        _W,
        "Empty unregister",
        "'actions/unregister' with an empty action_names list",
        "Send nothing when there is nothing to unregister.",
    ),
    _kind(
        "action.unregister-unknown",
        _I,
        "Unregister of unknown action",
        "unregistered actions that were not registered: {names}",
        "Harmless, but may hint at a bookkeeping bug in the game.",
    ),
    # --- forces -------------------------------------------------------------
    _kind(
        "force.empty",
        _E,
        "Empty force",
        "'actions/force' with an empty action_names list; dropped",
        "Force at least one registered action.",
    ),
    _kind(
        "force.before-registration",
        _E,
        "Force before registration",
        "'actions/force' before any action was registered; dropped",
        "Register the actions before forcing them.",
    ),
    _kind(
        "force.some-unregistered",
        _W,
        "Force names unregistered actions",
        "force names actions that are not registered: {names}; they were "
        "dropped from the force",
        "Force only registered actions.",
    ),
    _kind(
        "force.none-registered",
        _E,
        "Force of unregistered actions",
        "none of the forced actions are registered ({names}); force dropped",
        "Force only registered actions.",
    ),
    _kind(
        "force.while-active",
        _W,
        "Force while another is active",
        "new force while another force is in progress; {outcome}",
        "Neuro handles one force at a time: wait for the result first.",
    ),
    _kind(
        "force.while-result-pending",
        _W,
        "Force while a result is pending",
        "new force while the result of action {action!r} is still pending",
        "Send the action result before the next force.",
    ),
    _kind(
        "force.queue-full",
        _W,
        "Force queue full",
        "too many forces queued (limit {limit}); the oldest queued force was dropped",
        "Wait for each force's result before forcing again.",
    ),
    _kind(
        "force.queued-dropped",
        _W,
        "Queued force dropped",
        "a queued force was dropped: none of its actions ({names}) are "
        "registered any more",
        "Unregister actions only once no force needs them.",
    ),
    _kind(
        "force.retry",
        _I,
        "Force retried",
        "action {action!r} failed during a force; retrying ({attempt}/{limit})",
    ),
    _kind(
        "force.retries-exhausted",
        _W,
        "Force retries exhausted",
        "force gave up after {attempts} failed attempts",
        "Make failing results rare: validate before Neuro must choose.",
    ),
    _kind(
        "force.cancelled-by-unregister",
        _I,
        "Force cancelled by unregister",
        "the force was cancelled: none of its actions is registered any more",
    ),
    _kind(
        "force.unanswerable",
        _W,
        "Force cannot be answered",
        "the engine could not answer the force with valid data: {reason}; {outcome}",
        "Check the forced actions' schemas: their data must be satisfiable "
        "and small (see action.schema-unanswerable).",
    ),
    _kind(
        "force.engine-error",
        _E,
        "Engine failed to choose",
        "the engine failed while choosing an action: {detail}; the force was "
        "dropped (the game gets no action)",
        "This is a server-side problem, not the game's (the log has the "
        "traceback at debug level).",
    ),
    _kind(
        "force.engine-fallback",
        _I,
        "Engine answered at random",
        "the engine's model could not answer, so it sent random valid data: {reason}",
        "Usually a server-side matter (the model was unavailable or slow). When "
        "the model answered wrong twice, the action's description or schema may "
        "be unclear: the reason says what was wrong.",
    ),
    # --- results ------------------------------------------------------------
    _kind(
        "result.unknown-id",
        _W,
        "Result for unknown id",
        "action/result for unknown id {id!r}; discarded",
        "Answer each action once, with the id it came with.",
    ),
    _kind(
        "result.stale-id",
        _W,
        "Result for an old action",
        "action/result for id {id!r}, which was already answered; discarded",
        "Answer each action exactly once.",
    ),
    _kind(
        "result.late",
        _W,
        "Late result",
        "action/result for id {id!r} arrived after the {timeout:g} s timeout; "
        "discarded",
        "Send the result right after validating the action, before running it.",
    ),
    _kind(
        "result.timeout",
        _E,
        "No result",
        "no action/result for action {action!r} (id {id!r}) within "
        "{timeout:g} s; counted as failed",
        "Always answer an action, even an unknown or invalid one.",
    ),
    _kind(
        "result.given-up",
        _W,
        "Too many results awaited",
        "{count} actions were waiting for their results; the oldest, "
        "{action!r} (id {id!r}), was given up and counted as failed",
        "Answer every action with an action/result as soon as it is done; "
        "a game that does not answer leaves actions waiting.",
    ),
    _kind(
        "result.after-given-up",
        _W,
        "Result for a given-up action",
        "action/result for id {id!r} arrived after its action was given up "
        "(too many results awaited); discarded",
        "Answer every action with an action/result as soon as it is done.",
    ),
    _kind(
        "result.failure-without-message",
        _W,
        "Failure without message",
        "action {action!r} failed without a message",
        "Say why it failed; Neuro reads the message and tries again.",
    ),
    _kind(
        "result.success-without-message",
        _I,
        "Success without message",
        "action {action!r} succeeded without a message",
        "Optional: a short message gives Neuro context about what happened.",
    ),
    # --- behaviour ----------------------------------------------------------
    _kind(
        "behaviour.context-spam",
        _W,
        "Context spam",
        "{count} context messages within {window:g} s",
        "Batch context; Neuro cannot read that fast.",
    ),
)

CATALOGUE: Final[Mapping[str, DiagnosticKind]] = {kind.id: kind for kind in _KINDS}
"""Every diagnostic kind, by id."""


def _cut(text: str | bytes | None, limit: int = MAX_FRAME_CHARS) -> str | None:
    """Shorten ``text`` to ``limit`` characters of valid Unicode.

    Control characters (a newline, ANSI escapes) and lone surrogates (a JSON
    escape of U+D800 alone) are escaped: every diagnostic is one line that
    can be encoded as UTF-8 and printed safely (see neuro_api._text).
    """
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    # Shown in logs and on the console: one line, no terminal control, and
    # no lone surrogate (which UTF-8 cannot encode). Escapes make it longer:
    # cut before (a frame may be a megabyte) and after.
    text = printable(text[: limit + 1])
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def diagnose(
    id_: str,
    /,
    *,
    game: str | None = None,
    subject: str | None = None,
    frame: str | bytes | None = None,
    **params: Any,
) -> Diagnostic:
    """Make a :class:`Diagnostic` of catalogue entry ``id_``.

    ``params`` fill the entry's template. An unknown id or a missing template
    field is a bug in the caller and raises :class:`KeyError`.
    """
    kind = CATALOGUE[id_]
    missing = kind.fields - params.keys()
    if missing:
        raise KeyError(f"diagnostic {id_!r} needs {sorted(missing)}")
    shown = {
        key: _cut(value, MAX_VALUE_CHARS) if isinstance(value, str) else value
        for key, value in params.items()
    }
    return Diagnostic(
        id=id_,
        severity=kind.severity,
        message=kind.template.format(**shown),
        game=_cut(game, MAX_VALUE_CHARS),
        subject=_cut(subject, MAX_VALUE_CHARS),
        frame=_cut(frame),
    )


_PROBLEM_IDS: Final = {
    ProblemKind.INVALID_JSON: "protocol.invalid-json",
    ProblemKind.NOT_TEXT: "protocol.not-text",
    ProblemKind.NOT_AN_OBJECT: "protocol.not-an-object",
    ProblemKind.MISSING: "protocol.missing-field",
    ProblemKind.WRONG_TYPE: "protocol.wrong-type",
    ProblemKind.INVALID_VALUE: "protocol.invalid-value",
    ProblemKind.UNKNOWN_COMMAND: "protocol.unknown-command",
    ProblemKind.UNKNOWN_KEY: "protocol.unknown-key",
    ProblemKind.NULL_VALUE: "protocol.null-value",
    ProblemKind.IGNORED_DATA: "protocol.ignored-data",
}


def _from_problem(
    problem: FieldProblem,
    command: str | None,
    game: str | None,
    frame: str | bytes | None,
) -> Diagnostic:
    id_ = _PROBLEM_IDS[problem.kind]
    if problem.field == "game" and problem.kind is ProblemKind.MISSING:
        id_ = "protocol.missing-game"
    return diagnose(
        id_,
        game=game,
        subject=problem.field or None,
        frame=frame,
        command=command or "?",
        field=problem.field,
        detail=str(problem),
    )


def from_protocol_error(
    error: ProtocolError, *, game: str | None = None, frame: str | bytes | None = None
) -> Diagnostic:
    """Turn a frame the parser refused into its diagnostic."""
    return _from_problem(error.problem, error.command, game, frame)


def from_note(
    note: FieldProblem,
    *,
    command: str,
    game: str | None = None,
    frame: str | bytes | None = None,
) -> Diagnostic:
    """Turn a parser note (unknown key, null, ignored data) into its diagnostic."""
    return _from_problem(note, command, game, frame)
