"""Weak passwords, refused when an account is created or a password is changed: the common
ones on the app's own list, and any that zxcvbn (Dropbox's estimator, its maintained Python
port) rates below MIN_SCORE: repeats (aaaaaaaaaaaa), sequences (123456789012), keyboard
walks, dictionary words and their doubling (passwordpassword), dates, the username itself.

The list ships inside the package (common-passwords.txt, package data beside this module:
a data/ folder would look like an undeclared package to setuptools), made by
scripts/update-common-passwords.py from the password frequency list of the zxcvbn
project; it holds only entries long enough to pass the length rule, lowercased. It is
read once, on first use, so workers that never see a registration never load it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

DATA_FILE = "common-passwords.txt"


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def is_common(password: str) -> bool:
    return password.lower() in common_passwords()


# zxcvbn's scores: 0 and 1 fall to an online or throttled guesser, 2 to an offline one with a
# slow hash like ours given time; 3 ("safely unguessable: moderate protection from an offline
# slow-hash scenario") is where its authors draw the line for a new password.
MIN_SCORE = 3
# zxcvbn's time grows with the length, and 4.5 refuses more than 72 characters (a ValueError):
# what it would find lies in the first characters, and a longer password is longer still.
ESTIMATED_LENGTH = 72


def is_guessable(password: str, user_inputs: tuple[str, ...] = ()) -> bool:
    from zxcvbn import zxcvbn  # noqa: PLC0415  (its lists load on first use: most workers never need them)

    return zxcvbn(password[:ESTIMATED_LENGTH], user_inputs=list(user_inputs))["score"] < MIN_SCORE
