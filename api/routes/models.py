"""Registered models: list, create, get, update (description), archive."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.auth import AdminDep, ReadDep
from api.deps import PageDep, SessionDep
from api.schemas import NAME_PATTERN, ModelCreate, ModelPublic, ModelsPublic, ModelUpdate
from registry.repository import models as repo

router = APIRouter(prefix="/models", tags=["models"], dependencies=[ReadDep])
ModelNamePath = Annotated[str, Path(pattern=NAME_PATTERN, max_length=200, description="model name")]


@router.get("", response_model=ModelsPublic, summary="List models")
def list_models(session: SessionDep, page: PageDep,
                include_archived: Annotated[bool, Query(description="also list archived models")] = False):
    rows, total = repo.list_models(session, include_archived=include_archived, limit=page.limit,
                                   offset=page.offset)
    return ModelsPublic(data=rows, count=total)


@router.post("", response_model=ModelPublic, status_code=201, summary="Create a model",
             dependencies=[AdminDep])
def create_model(session: SessionDep, body: ModelCreate):
    return repo.create_model(session, name=body.name, description=body.description)


@router.get("/{name}", response_model=ModelPublic, summary="Get a model")
def get_model(session: SessionDep, name: ModelNamePath):
    return repo.get_model(session, name=name)


@router.patch("/{name}", response_model=ModelPublic, summary="Update a model's description",
              dependencies=[AdminDep])
def update_model(session: SessionDep, name: ModelNamePath, body: ModelUpdate):
    return repo.update_model(session, name=name, description=body.description)


@router.post("/{name}/archive", response_model=ModelPublic, summary="Archive a model (hide it from listings)",
             dependencies=[AdminDep])
def archive_model(session: SessionDep, name: ModelNamePath):
    return repo.archive_model(session, name=name)
