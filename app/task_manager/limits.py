"""The limits of what the API stores, in one place: the models (the columns) and the
schemas (the requests) both import them, and neither imports the other for them."""

from __future__ import annotations

import unicodedata

TASK_STATUSES = ("pending", "in_progress", "completed")
TASK_PRIORITIES = ("low", "medium", "high")
STATUS_FILTERS = (*TASK_STATUSES, "active")
SORT_KEYS = ("created_at", "due_date", "priority", "title")
TITLE_MAX = 200
DESCRIPTION_MAX = 5000
SEARCH_MAX = 200
USERNAME_MIN = 3
USERNAME_MAX = 64
PASSWORD_MIN = 12
PASSWORD_MAX = 256
# A device token (devices.py) is about 100 characters; a longer one is no token of ours.
DEVICE_TOKEN_MAX = 512


def fold_name(value: str) -> str:
    """A username as it is stored and compared (users.username's index holds lower(username))."""
    return unicodedata.normalize("NFKC", value).lower()
