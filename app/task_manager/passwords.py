"""Common passwords, refused when an account is created or a password is changed.

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
