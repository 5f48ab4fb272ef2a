"""The API's field rules, declared once. Each class below checks a request (through
validation.py), writes a response (reply()) and states itself in the OpenAPI document
(api/openapi.py builds the components and the query parameters from these classes).

Why pydantic v2, with this thin layer of our own rather than marshmallow + apispec or a
Flask wrapper such as flask-openapi3 or spectree:
- its JSON Schema is draft 2020-12, OpenAPI 3.1's own dialect: nothing to translate;
- its core is compiled (pydantic-core): reading a page of rows by their attributes and
  writing the JSON costs less than the hand-written to_dict() + jsonify it replaced
  (bench/serialize_cost.py: about 0.7 of the time), where marshmallow's dump() would walk
  every field in Python, as to_dict() did;
- the wrappers take over routing and the error bodies (422, in their own shape), while
  this API answers every fault as {"error", "message", "field"} in Japanese, first fault
  first; validation.py keeps that in a few lines, and nothing is added beyond pydantic
  and its own dependencies (pydantic-core, annotated-types, typing-inspection).
The one exception is the task list, the request the board makes most: task_page_json()
writes it with orjson straight from the database's rows, the bytes reply(TaskPage) would
write (tests/test_schemas.py holds the two to it), without reading every row again.

What pydantic has no words for (Unicode categories, CR LF, the common-password list, the
Japanese messages) is said by the rules Text, Password, IsoDate, Digits and OneOf: each
holds its check and the JSON Schema keywords that state it, so the two cannot drift apart.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from types import NoneType
from typing import Annotated, Any, Literal, get_args

import orjson
from flask import Response, current_app
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError, core_schema

from . import passwords
from .limits import (
    DESCRIPTION_MAX,
    DEVICE_TOKEN_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    SEARCH_MAX,
    SORT_KEYS,
    STATUS_FILTERS,
    TASK_PRIORITIES,
    TASK_STATUSES,
    TITLE_MAX,
    USERNAME_MAX,
    USERNAME_MIN,
    fold_name,
)

# Control characters (C0, DEL, C1), format characters (bidi overrides such as U+202E,
# zero-width characters) and line/paragraph separators: invisible, they can reorder what
# a person reads, ring terminals or end lines in whatever shows the text. Surrogates
# cannot be stored at all.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
NO_CONTROL = "Control and format characters (Unicode Cc, Cf, Zl, Zp) are refused"
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# The pydantic error type of every fault a rule finds; its message is the API's own.
RULE = "field_rule"
REQUIRED = "必須です"


def fault(message: str) -> PydanticCustomError:
    # The message goes in the context, so that no brace in it is ever read as a placeholder.
    return PydanticCustomError(RULE, "{message}", {"message": message})


def forbidden_character(value: str, allowed: str = "") -> str | None:
    """The first control, format or separator character in value, or None."""
    for char in value:
        if char not in allowed and unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            return char
    return None


@cache
def _refused_class(allowed: str = "") -> str:
    """The characters forbidden_character() finds, as the body of a regex class (the Basic
    Multilingual Plane: \\uXXXX reads the same in ECMA-262 and Python patterns). Lone
    surrogates are left out: regex engines refuse them in a class, and a JSON body that
    holds one is refused before any field is looked at."""
    ranges: list[list[int]] = []
    for code in range(0x10000):
        char = chr(code)
        category = unicodedata.category(char)
        if char in allowed or category == "Cs" or category not in FORBIDDEN_CATEGORIES:
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


def printable_pattern(allowed: str = "", *, with_text: bool = False) -> str:
    """A JSON Schema pattern for a string free of refused characters (with_text: and with
    at least one that is not white space)."""
    refused = _refused_class(allowed)
    if with_text:
        return f"^[^{refused}]*[^\\s{refused}][^{refused}]*$"
    return f"^[^{refused}]*$"


# ---------------------------------------------------------------------------- the rules


class Rule:
    """An annotation that checks a value before pydantic's own (strict) type check, so that
    every fault carries the API's message, and adds the JSON Schema keywords that state the
    check. None passes untouched when the annotated type allows it. `missing` replaces the
    message for a required field that was left out."""

    description: str | None = None
    missing: str | None = None

    def check(self, value: Any, nullable: bool) -> Any:  # pragma: no cover - every rule has its own
        raise NotImplementedError

    def keywords(self) -> dict:
        return {}

    def describe(self) -> str | None:
        return self.description

    def __get_pydantic_core_schema__(self, source: Any, handler) -> core_schema.CoreSchema:
        nullable = source is NoneType or NoneType in get_args(source)

        def run(value: Any) -> Any:
            if value is None and nullable:
                return None
            return self.check(value, nullable)

        return core_schema.no_info_before_validator_function(run, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler) -> dict:
        json_schema = handler(schema)
        for branch in json_schema.get("anyOf", [json_schema]):
            if branch.get("type") != "null":
                branch.update(self.keywords())
        description = self.describe()
        if description:
            json_schema["description"] = description
        return json_schema


@dataclass(frozen=True)
class Text(Rule):
    """A string. In this order: CR LF and CR become LF (lines), no refused character
    (printable; lines allows newline and tab), surrounding white space dropped (strip),
    then the length and the format (pattern, matched whole), with one message for both."""

    min_length: int = 0
    max_length: int | None = None
    strip: bool = False
    lines: bool = False
    printable: bool = True
    pattern: str | None = None
    message: str | None = None
    verb: str = "指定"  # 入力 for what a person types on the board (title, description)
    description: str | None = None
    # Names compared as a person reads them: NFKC (full-width ａｌｉｃｅ, as a Japanese IME
    # may type it, is alice) and case-folded, so that alice and Alice are one account.
    fold: bool = False

    def check(self, value: Any, nullable: bool) -> str:
        if not isinstance(value, str):
            raise fault("文字列または null で指定してください" if nullable else "文字列で指定してください")
        if self.fold:
            value = fold_name(value)
        if self.lines:
            value = value.replace("\r\n", "\n").replace("\r", "\n")
        if self.printable:
            # Before strip(), which would quietly drop a trailing U+2028 or \x1f.
            char = forbidden_character(value, "\n\t" if self.lines else "")
            if char is not None:
                raise fault(f"制御文字・書式文字 (U+{ord(char):04X}) は使用できません")
        if self.strip:
            value = value.strip()
        too_long = self.max_length is not None and len(value) > self.max_length
        # fullmatch, never match with $: "$" also matches before a final newline ("alice\n").
        if len(value) < self.min_length or too_long or (self.pattern and not re.fullmatch(self.pattern, value)):
            raise fault(self.message or self._length_message())
        return value

    def _length_message(self) -> str:
        if self.min_length and self.max_length is not None:
            return f"{self.min_length}〜{self.max_length}文字で{self.verb}してください"
        if self.max_length is not None:
            return f"{self.max_length}文字以内で{self.verb}してください"
        return f"{self.min_length}文字以上で{self.verb}してください"

    def keywords(self) -> dict:
        keywords: dict = {}
        if self.min_length:
            keywords["minLength"] = self.min_length
        if self.max_length is not None:
            keywords["maxLength"] = self.max_length
        if self.pattern:
            keywords["pattern"] = f"^{self.pattern}$"
        elif self.printable:
            keywords["pattern"] = printable_pattern("\n\r\t" if self.lines else "",
                                                    with_text=self.strip and self.min_length > 0)
        return keywords

    def describe(self) -> str | None:
        if self.description or not self.printable or self.pattern:
            return self.description
        if self.lines:
            return f"{NO_CONTROL}, except newline and tab; CR LF and CR are stored as LF"
        if self.strip:
            return f"{NO_CONTROL}; surrounding white space is dropped before the length is counted"
        return NO_CONTROL


GUESSABLE = ("推測されやすいパスワードです（同じ文字の繰り返し、連番、単語、ユーザー名など）。"
             "推測されにくいものにしてください")


@dataclass(frozen=True)
class Password(Rule):
    """A password. new: one fit for an account (the length and the common-password rules);
    sign-in checks neither, so accounts keep working whatever the rules were when made."""

    new: bool = False
    description: str | None = None

    def check(self, value: Any, nullable: bool) -> str:
        if not isinstance(value, str):
            raise fault("文字列で指定してください")
        if len(value) > PASSWORD_MAX:
            raise fault(f"{PASSWORD_MAX}文字以内で指定してください")
        if self.new:
            if len(value) < PASSWORD_MIN:
                raise fault(f"{PASSWORD_MIN}文字以上で指定してください")
            if passwords.is_common(value):
                raise fault("よく使われているパスワードです。推測されにくいものにしてください")
            if passwords.is_guessable(value):
                raise fault(GUESSABLE)
        return value

    def keywords(self) -> dict:
        return {"minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX} if self.new else {"maxLength": PASSWORD_MAX}

    def describe(self) -> str | None:
        if self.new:
            return (f"At least {PASSWORD_MIN} characters; common passwords (the list the app ships, "
                    "compared case-insensitively) and any zxcvbn rates below 3 of 4 (repeats, sequences, "
                    "words, the username) are refused")
        return self.description


@dataclass(frozen=True)
class IsoDate(Rule):
    """A calendar date written YYYY-MM-DD, and one that exists."""

    def check(self, value: Any, nullable: bool) -> date:
        if not isinstance(value, str) or not DATE_RE.fullmatch(value):
            raise fault("YYYY-MM-DD 形式の日付または null で指定してください")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise fault("存在しない日付です") from None

    def keywords(self) -> dict:
        return {"pattern": r"^\d{4}-\d{2}-\d{2}$"}


@dataclass(frozen=True)
class Digits(Rule):
    """A whole number written in digits (a query string's), at most nine of them."""

    minimum: int = 1
    description: str | None = None

    def check(self, value: Any, nullable: bool) -> int:
        if not isinstance(value, str) or not re.fullmatch(r"\d{1,9}", value):
            raise fault("正の整数で指定してください")
        if int(value) < self.minimum:
            raise fault(f"{self.minimum} 以上で指定してください")
        return int(value)

    def keywords(self) -> dict:
        return {"minimum": self.minimum}


@dataclass(frozen=True)
class OneOf(Rule):
    """One of a few strings; the type beside it (choice()) states them as an enum."""

    values: tuple[str, ...] = ()
    message: str | None = None
    missing: str | None = None

    def check(self, value: Any, nullable: bool) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise fault(self.message or f"{' / '.join(self.values)} のいずれかを指定してください")
        return value


def choice(values: tuple[str, ...], message: str | None = None, missing: str | None = None) -> Any:
    return Annotated[Literal[values], OneOf(values, message, missing)]


def _without_default(schema: dict) -> None:
    schema.pop("default", None)


def optional() -> Any:
    """A field that may be left out, with no default of its own: the view decides (or, for
    a PATCH, leaves the value as it is). None stands for 'left out' and is never validated."""
    return Field(default=None, json_schema_extra=_without_default)


def required_message(model: type[BaseModel], field: str) -> str:
    info = model.model_fields.get(field)
    rule = next((m for m in info.metadata if isinstance(m, Rule)), None) if info else None
    return (rule.missing if rule else None) or REQUIRED


# ---------------------------------------------------------------------------- what comes in


class Body(BaseModel):
    """A JSON request body: unknown fields are refused, and nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """A query string: unknown parameters are ignored; an empty value counts as left out."""

    model_config = ConfigDict(extra="ignore", strict=True)


Username = Annotated[str, Text(
    min_length=USERNAME_MIN, max_length=USERNAME_MAX, pattern=r"[a-z0-9_.-]+", printable=False, fold=True,
    message=f"{USERNAME_MIN}〜{USERNAME_MAX}文字の英数字と _ . - で指定してください",
    description="Compared without case (stored in lower case, full-width letters as their ASCII)",
)]
# Sign-in has no format rules (older accounts keep their names), but refuses what could
# never be a username and would only pollute the logs. Folded as registration folds.
SignInName = Annotated[str, Text(min_length=1, max_length=USERNAME_MAX, fold=True)]
NewPassword = Annotated[str, Password(new=True)]
Title = Annotated[str, Text(min_length=1, max_length=TITLE_MAX, strip=True, verb="入力")]
Description = Annotated[str | None, Text(max_length=DESCRIPTION_MAX, lines=True, verb="入力")]
DueDate = Annotated[date | None, IsoDate()]
Status = choice(TASK_STATUSES)
Priority = choice(TASK_PRIORITIES)
StatusFilter = choice(STATUS_FILTERS)
SortKey = choice(
    (*SORT_KEYS, *(f"-{k}" for k in SORT_KEYS)),
    message=f"{', '.join(SORT_KEYS)} (降順は先頭に -) のいずれかを指定してください",
)
Search = Annotated[str, Text(max_length=SEARCH_MAX, strip=True, description=NO_CONTROL)]


class Registration(Body):
    """A new account."""

    username: Username
    password: NewPassword


class Login(Body):
    """Credentials to sign in with."""

    username: SignInName
    password: Annotated[str, Password(description="Checked against the account; no rules at sign-in")]
    device_token: Annotated[str, Text(max_length=DEVICE_TOKEN_MAX, printable=False, description=(
        "The device_token an earlier sign-in to this account gave this device: its sign-ins are then "
        "slowed by its own failures alone, never by other clients' (an expired or foreign one is not trusted)"))
    ] = optional()


class PasswordChange(Body):
    """The password now and the one to have instead."""

    current_password: Annotated[str, Password(description="The password now")]
    new_password: NewPassword


class Logout(Body):
    """A refresh token whose sign-in ends too (optional)."""

    refresh_token: Annotated[str | None, Text(printable=False)] = None


class TaskCreate(Body):
    """A new task, or the whole of one (PUT): a field left out takes its default. The
    read-only fields of a Task (id and the times) may come along, and are ignored."""

    # In the order they are checked: the first fault is the one answered.
    title: Title
    description: Description = None
    priority: Priority = "medium"
    due_date: DueDate = None
    status: Status = "pending"

    @model_validator(mode="before")
    @classmethod
    def _ignore_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key not in TASK_READ_ONLY}
        return data  # pragma: no cover - validation.py only ever passes a dict


# The same fields and rules, each optional: the fields left out keep their values.
TaskPatch = create_model(
    "TaskPatch",
    __base__=TaskCreate,
    __doc__="Some fields of a task: the ones left out keep their values.",
    **{name: (Annotated[(info.annotation, *info.metadata)], optional())
       for name, info in TaskCreate.model_fields.items()},
)


class TaskQuery(Query):
    """GET /api/tasks: filter, search, sort and page."""

    status: StatusFilter = optional()
    sort: SortKey = "-created_at"
    q: Search = ""
    page: Annotated[int, Digits()] = 1
    per_page: Annotated[int, Digits(description="capped at 100 (TASKS_MAX_PER_PAGE)")] = optional()


CLEAR_ONLY_COMPLETED = "一括削除は status=completed のみ指定できます"
ClearStatus = choice(("completed",), message=CLEAR_ONLY_COMPLETED, missing=CLEAR_ONLY_COMPLETED)


class ClearQuery(Query):
    """DELETE /api/tasks: only the completed tasks are ever cleared at once."""

    status: ClearStatus


# ---------------------------------------------------------------------------- what goes out


def _as_utc(value: datetime) -> datetime:
    # Stored naive in UTC; given out as ISO 8601 with Z.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]


class Reply(BaseModel):
    """A response body, read from rows by their attributes (or from a dict)."""

    model_config = ConfigDict(from_attributes=True)


class User(Reply):
    """An account as the API gives it (never its password hash)."""

    model_config = ConfigDict(extra="forbid")

    id: int
    username: str
    created_at: Timestamp


class Task(Reply):
    """A task as the API gives it."""

    model_config = ConfigDict(extra="forbid")

    id: int
    title: Annotated[str, Field(min_length=1, max_length=TITLE_MAX)]
    description: str | None
    status: Literal[TASK_STATUSES]
    priority: Literal[TASK_PRIORITIES]
    due_date: date | None
    created_at: Timestamp
    updated_at: Timestamp
    completed_at: Timestamp | None


# The fields of a Task that a request may carry back but never sets.
TASK_READ_ONLY = frozenset(Task.model_fields).difference(TaskCreate.model_fields)
# A task's fields in the order they are written: the list selects its columns in this order.
TASK_FIELDS = tuple(Task.model_fields)

TaskCounts = create_model(
    "TaskCounts", __base__=Reply, __doc__="How many tasks the caller holds in each status.",
    **{status: (int, ...) for status in TASK_STATUSES},
)


class TaskPage(Reply):
    """A page of the caller's tasks."""

    tasks: list[Task]
    total: int
    page: int
    per_page: int
    counts: TaskCounts


class UserReply(Reply):
    """The signed-in or newly registered user."""

    user: User


class Tokens(Reply):
    """A signed-in session's tokens."""

    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    user: User
    device_token: str | None = Field(default=None, description=(
        "Sign-in and password change only (null otherwise): keep it on this device and send it with the next "
        "sign-in to this account"))


class Deleted(Reply):
    """How many tasks were deleted."""

    deleted: int


class Message(Reply):
    """What was done."""

    message: str


class LogoutReply(Reply):
    """What was done, and how many sign-ins ended."""

    message: str
    revoked: int


# errors.py and health.py write the next three themselves; they are declared for the document.


class Error(Reply):
    """Every error: a machine code, a message for people, and the field at fault if any."""

    error: str
    message: str
    field: str = optional()


class Health(Reply):
    """The service and its database are well."""

    status: Literal["OK"]
    message: str
    version: str
    checks: dict[str, str] = optional()
    schema_revision: str | None = optional()
    release: str = optional()
    revision: str = optional()
    built_at: str = optional()


class HealthDown(Reply):
    """The database cannot be used."""

    status: Literal["ERROR"]
    message: str


# Times are stored naive in UTC: orjson writes them with Z, as _as_utc has pydantic do.
_PAGE_JSON = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE


def task_page_json(rows, *, total: int, page: int, per_page: int, counts: dict[str, int]) -> bytes:
    """The body reply(TaskPage, ...) writes, for rows holding TASK_FIELDS' columns in that
    order. The rows are not read through Task again: they come from the table whose
    constraints hold Task's rules (status, priority, the title's length), and only its own
    columns are written. Keys in TaskPage's order, counts in TASK_STATUSES' order."""
    return orjson.dumps({
        "tasks": [dict(zip(TASK_FIELDS, row, strict=True)) for row in rows],
        "total": total, "page": page, "per_page": per_page, "counts": counts,
    }, option=_PAGE_JSON)


def task_json(row) -> bytes:
    """The body reply(Task, ...) writes, for a row holding TASK_FIELDS' columns in that order:
    what a write's RETURNING or a task's select gave (see task_page_json)."""
    return orjson.dumps(dict(zip(TASK_FIELDS, row, strict=True)), option=_PAGE_JSON)


def reply(schema: type[Reply], value: Any, status: int = 200) -> Response:
    """value (a row, or a dict of rows and values) read through schema and written by
    pydantic's serializer: the bytes jsonify writes with this app's JSON settings (keys in
    the declared order, no ASCII escapes, compact, a final newline), at less cost."""
    model = schema.model_validate(value, from_attributes=True)
    body = schema.__pydantic_serializer__.to_json(model) + b"\n"
    return current_app.response_class(body, status=status, mimetype="application/json")
