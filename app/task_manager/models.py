"""Database models (SQLAlchemy 2 style). Timestamps are naive UTC.

Naive UTC stored as 'YYYY-MM-DD HH:MM:SS.ffffff' compares correctly with SQLite's
datetime('now', ...) strings, which keeps the manual's own SQL working verbatim.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, DateTime, ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

# The limits the database enforces too come from the API's declarations (schemas.py), which
# also write these rows as JSON (schemas.User, schemas.Task).
from .limits import TASK_PRIORITIES, TASK_STATUSES, TITLE_MAX, USERNAME_MAX, fold_name


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Every token carries the version it was issued under; raising it ("sign out
    # everywhere", a password change) makes every older token of the user invalid.
    token_version: Mapped[int] = mapped_column(default=0, server_default="0")

    tasks: Mapped[list[Task]] = relationship(back_populates="user", cascade="all, delete-orphan", passive_deletes=True)

    # One account per name whatever its case (migration 0005); names are stored folded since.
    __table_args__ = (Index("uq_users_username_lower", func.lower(username), unique=True),)

    @classmethod
    def named(cls, name: str):
        """The condition that finds an account by its folded name (older rows may hold capitals)."""
        return func.lower(cls.username) == fold_name(name)


def completed_at_after(status: str, was_status: str | None, was_completed_at: datetime | None) -> datetime | None:
    """A task's completed_at once its status goes from was_status (None: a new task) to
    status: set when it becomes completed, kept while it stays completed, cleared otherwise."""
    if status != "completed":
        return None
    return was_completed_at if was_status == "completed" else utcnow()


class Task(db.Model):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(f"status IN {TASK_STATUSES!r}", name="status"),
        CheckConstraint(f"priority IN {TASK_PRIORITIES!r}", name="priority"),
        # completed_at is set exactly when the task is completed, enforced below the API too.
        CheckConstraint("(status = 'completed') = (completed_at IS NOT NULL)", name="completed_at"),
        CheckConstraint(f"length(trim(title)) BETWEEN 1 AND {TITLE_MAX}", name="title"),
        Index("ix_tasks_user_id_status", "user_id", "status"),
        # The list's default order (newest first): read 100 rows in index order instead of
        # sorting every task of the account (bench/api_load.py: 2.5x the throughput at 10,000).
        Index("ix_tasks_user_id_created_at", "user_id", "created_at"),
        Index("ix_tasks_status_completed_at", "status", "completed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    priority: Mapped[str] = mapped_column(String(8), default="medium", server_default="medium")
    due_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship(back_populates="tasks")


class TaskCount(db.Model):
    """How many tasks a user holds in one status: kept by triggers on `tasks`, never
    written by the API (task_counts.py). A row exists only while its count is above zero."""

    __tablename__ = "task_counts"
    # "derived": a copy to another engine makes these rows by its own triggers (dbcopy).
    __table_args__ = (CheckConstraint("tasks > 0", name="tasks"), {"info": {"derived": True}})

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    tasks: Mapped[int]


class TaskBytes(db.Model):
    """How many bytes of text (titles, descriptions, UTF-8) a user's tasks hold: kept by
    triggers on `tasks`, never written by the API (task_bytes.py); read by the storage quota."""

    __tablename__ = "task_bytes"
    __table_args__ = (CheckConstraint("bytes > 0", name="bytes"), {"info": {"derived": True}})

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger)


class WriteCount(db.Model):
    """How many task writes a user made in the current minute (api/tasks.py): one row a
    user, with the minute's number since the epoch it counts, by one upsert a write."""

    __tablename__ = "write_counts"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger)
    writes: Mapped[int]


class RevokedToken(db.Model):
    """JWT blocklist. Kept in the database so that revocation survives restarts and
    holds across every gunicorn worker."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_type: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(index=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class TokenFamily(db.Model):
    """One sign-in: the refresh tokens that descend from it by rotation.

    Only the newest refresh token of a family (current_jti) may refresh. An older one
    coming back means a copy is in someone else's hands, so the whole family ends. Access
    tokens carry the family too, so ending it (theft, logout) ends them as well.
    """

    __tablename__ = "token_families"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    current_jti: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # When the newest refresh token expires; the row is of no use after that.
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class LoginFailure(db.Model):
    """One throttled event: a failed login or a registration, keyed by what it counts
    against ('pair:<account>|<client>', 'client:<client>', 'register:<client>')."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(160), index=True)
    failed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
