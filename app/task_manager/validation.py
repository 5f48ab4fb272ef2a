"""Input checks that name the field at fault. Kept small and explicit on purpose:
the OpenAPI document in api/openapi.py states the same rules for clients."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from flask import request

from . import passwords
from .errors import ApiError

# fullmatch, never match with $: "$" also matches before a final newline ("alice\n").
USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,64}")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
PASSWORD_MIN = 12
PASSWORD_MAX = 256
TITLE_MAX = 200
DESCRIPTION_MAX = 5000
SEARCH_MAX = 200
# Control characters (C0, DEL, C1), format characters (bidi overrides such as U+202E,
# zero-width characters) and line/paragraph separators: invisible, they can reorder what
# a person reads, ring terminals or end lines in whatever shows the text. Surrogates
# cannot be stored at all.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
DESCRIPTION_ALLOWED = frozenset("\n\t")


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "validation_error", f"{field}: {message}", field=field)


def json_object() -> dict:
    # Deeply nested JSON ([[[[...]]]]) exhausts Python's recursion limit while parsing;
    # get_json(silent=True) only absorbs ValueError, so that one is caught here.
    try:
        data = request.get_json(silent=True)
        if isinstance(data, dict):
            _check_encodable(data)
    except RecursionError:
        raise ApiError(400, "invalid_json", "JSON の入れ子が深すぎます") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "リクエスト本文は JSON オブジェクトにしてください")
    return data


def _check_encodable(value, field: str | None = None) -> None:
    # JSON may carry lone surrogates ("\ud800"), which no database can store as text.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(field or "body", "不正な文字が含まれています") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_encodable(key, field or "body")
            _check_encodable(item, field or str(key))
    elif isinstance(value, list):
        for item in value:
            _check_encodable(item, field)


def reject_unknown(data: dict, allowed: set[str], ignored: frozenset[str] = frozenset()) -> None:
    for key in data:
        if key not in allowed and key not in ignored:
            raise invalid(str(key)[:64], "不明なフィールドです")


def string(data: dict, field: str, *, required: bool = False, nullable: bool = False) -> str | None:
    if field not in data:
        if required:
            raise invalid(field, "必須です")
        return None
    value = data[field]
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise invalid(field, "文字列で指定してください")
    return value


def forbidden_character(value: str, allowed: frozenset[str] = frozenset()) -> str | None:
    """The first control, format or separator character in value, or None."""
    for char in value:
        if char not in allowed and unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            return char
    return None


def printable(field: str, value: str, allowed: frozenset[str] = frozenset()) -> str:
    char = forbidden_character(value, allowed)
    if char is not None:
        raise invalid(field, f"制御文字・書式文字 (U+{ord(char):04X}) は使用できません")
    return value


def username(data: dict) -> str:
    value = string(data, "username", required=True)
    if not USERNAME_RE.fullmatch(value):
        raise invalid("username", "3〜64文字の英数字と _ . - で指定してください")
    return value


def login_username(data: dict) -> str:
    """A name to sign in with: no format rules (older accounts keep theirs), but nothing
    that could never be a username and only pollutes the logs."""
    value = string(data, "username", required=True)
    if not 1 <= len(value) <= 64:
        raise invalid("username", "1〜64文字で指定してください")
    return printable("username", value)


def password(data: dict, field: str = "password", *, check_rules: bool = True) -> str:
    """A password; with check_rules, one fit for a new account (sign-in checks none of them,
    so existing accounts keep working whatever the rules were when they were made)."""
    value = string(data, field, required=True)
    if len(value) > PASSWORD_MAX:
        raise invalid(field, f"{PASSWORD_MAX}文字以内で指定してください")
    if check_rules:
        if len(value) < PASSWORD_MIN:
            raise invalid(field, f"{PASSWORD_MIN}文字以上で指定してください")
        if passwords.is_common(value):
            raise invalid(field, "よく使われているパスワードです。推測されにくいものにしてください")
    return value


def title(value) -> str:
    if not isinstance(value, str):
        raise invalid("title", "文字列で指定してください")
    # Checked before strip(), which would quietly drop a trailing U+2028 or \x1f.
    value = printable("title", value).strip()
    if not 1 <= len(value) <= TITLE_MAX:
        raise invalid("title", f"1〜{TITLE_MAX}文字で入力してください")
    return value


def description(value) -> str | None:
    """Several lines are fine: newline and tab are allowed, and Windows (CRLF) and old Mac
    (CR) line ends are stored as newlines. Every other control character is refused."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("description", "文字列または null で指定してください")
    value = printable("description", value.replace("\r\n", "\n").replace("\r", "\n"), DESCRIPTION_ALLOWED)
    if len(value) > DESCRIPTION_MAX:
        raise invalid("description", f"{DESCRIPTION_MAX}文字以内で入力してください")
    return value


def search(value: str) -> str:
    value = printable("q", value).strip()
    if len(value) > SEARCH_MAX:
        raise invalid("q", f"{SEARCH_MAX}文字以内で指定してください")
    return value


def choice(field: str, value, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise invalid(field, f"{' / '.join(allowed)} のいずれかを指定してください")
    return value


def due_date(value) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str) or not DATE_RE.fullmatch(value):
        raise invalid("due_date", "YYYY-MM-DD 形式の日付または null で指定してください")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid("due_date", "存在しない日付です") from None


def int_arg(name: str, default: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d{1,9}", raw):
        raise invalid(name, "正の整数で指定してください")
    value = int(raw)
    if value < minimum:
        raise invalid(name, f"{minimum} 以上で指定してください")
    if maximum is not None:
        value = min(value, maximum)
    return value
