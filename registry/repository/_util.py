"""Shared helpers of the repository functions: pagination, IntegrityError -> AlreadyExists."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.errors import AlreadyExists, InvalidState, NotFound

T = TypeVar("T")
MAX_LIMIT = 1000


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidState(f"limit must be in 1..{MAX_LIMIT}, got {limit}; page with offset= for more rows")
    if offset < 0:
        raise InvalidState(f"offset must be >= 0, got {offset}")


def paginate(session: Session, stmt: Select, *, limit: int, offset: int) -> tuple[list, int]:
    """(rows of `stmt` for one page, total count of `stmt` without the page)."""
    check_page(limit, offset)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = list(session.scalars(stmt.limit(limit).offset(offset)))
    return rows, total


def insert_unique(session: Session, make: Callable[[], T], what: str) -> T:
    """Add and flush `make()` inside a savepoint; a unique violation becomes AlreadyExists(`what`)."""
    try:
        with session.begin_nested():
            row = make()
            session.add(row)
            session.flush()
    except IntegrityError as err:
        raise AlreadyExists(f"{what} already exists") from err
    return row


def get_row(session: Session, model: type[T], row_id: int, message: str) -> T:
    """`session.get(model, row_id)`, or NotFound(message)."""
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(message)
    return row
