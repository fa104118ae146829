"""Registered models: a unique name and a description; archived models are hidden from listings."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.errors import AlreadyExists, InvalidState, NotFound
from registry.models import Model
from registry.repository._util import insert_unique, paginate

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_model_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidState(f"model name {name!r} is invalid: use 1-200 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit (e.g. 'mnist-mlp')")


def create_model(session: Session, *, name: str, description: str | None = None) -> Model:
    check_model_name(name)
    if session.scalar(select(Model.id).where(Model.name == name)) is not None:
        raise AlreadyExists(f"model {name!r} already exists; pick another name or add a version to it")
    return insert_unique(session, lambda: Model(name=name, description=description), f"model {name!r}")


def get_model(session: Session, *, name: str) -> Model:
    model = session.scalar(select(Model).where(Model.name == name))
    if model is None:
        raise NotFound(f"model {name!r} not found; list models with `shrinkwrap models` or GET /models")
    return model


def get_or_create_model(session: Session, *, name: str, description: str | None = None) -> Model:
    try:
        return get_model(session, name=name)
    except NotFound:
        try:
            return create_model(session, name=name, description=description)
        except AlreadyExists:  # created concurrently by another process
            return get_model(session, name=name)


def list_models(session: Session, *, include_archived: bool = False, limit: int = 100,
                offset: int = 0) -> tuple[list[Model], int]:
    stmt = select(Model).order_by(Model.name)
    if not include_archived:
        stmt = stmt.where(Model.archived.is_(False))
    return paginate(session, stmt, limit=limit, offset=offset)


def update_model(session: Session, *, name: str, description: str | None = None,
                 archived: bool | None = None) -> Model:
    """Change the description and/or archived flag (None leaves a field as it is)."""
    model = get_model(session, name=name)
    if description is not None:
        model.description = description
    if archived is not None:
        model.archived = archived
    session.flush()
    return model


def archive_model(session: Session, *, name: str) -> Model:
    return update_model(session, name=name, archived=True)
