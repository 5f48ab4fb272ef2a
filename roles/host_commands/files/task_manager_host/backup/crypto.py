"""A set's files encrypted and decrypted with gpg (symmetric, AES256), with the passphrase
in the settings' key file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from task_manager_host import paths
from task_manager_host.backup.errors import BackupError, Missing


def gpg(config: dict, arguments: list[str], home: Path) -> None:
    """Run gpg with the configured passphrase file; what is missing is named, not guessed."""
    key_file = config.get("encryption_key_file")
    if not key_file or not Path(key_file).is_file():
        raise Missing(f"encryption is on but the key file {key_file} is missing")
    if not os.access(paths.GPG, os.X_OK):
        raise Missing(f"{paths.GPG} is missing: encrypted backups need gnupg (apt install gnupg)")
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        # S603: fixed absolute programs and argument lists, no shell.
        subprocess.run(  # noqa: S603
            [paths.GPG, "--batch", "--yes", "--quiet", "--pinentry-mode", "loopback", "--passphrase-file", key_file,
             *arguments],
            check=True, env=env,
        )
    finally:
        # gpg leaves an agent running for its home. Under the backup unit, an agent still
        # there when the command ends kept the unit waiting out its stop timeout (90 s), and
        # the unit failed although the set was good; elsewhere it would outlive the home.
        if os.access(paths.GPGCONF, os.X_OK):
            subprocess.run([paths.GPGCONF, "--kill", "gpg-agent"], check=False, env=env,  # noqa: S603
                           capture_output=True)


def encrypt(config: dict, path: Path) -> Path:
    if not config.get("encrypt"):
        return path
    target = path.with_name(path.name + ".gpg")
    gpg(config, ["--symmetric", "--cipher-algo", "AES256", "--output", str(target), str(path)], path.parent / ".gnupg")
    path.unlink()
    return target


def decrypt(config: dict, path: Path, scratch: Path) -> Path:
    if path.suffix != ".gpg":
        return path
    target = scratch / path.name.removesuffix(".gpg")
    try:
        gpg(config, ["--output", str(target), "--decrypt", str(path)], scratch / ".gnupg")
    except subprocess.CalledProcessError:
        # Not Missing: a damaged file is one set's problem, and latest-good tries the next.
        raise BackupError(f"{path} cannot be decrypted with the passphrase in {config.get('encryption_key_file')}: "
                          "a wrong passphrase (the set was encrypted with another one) or a damaged file") from None
    return target
