"""Registered models: list, create, get, update (description), archive."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session

from api.deps import AdminDep, DbDep, PageDep
from api.schemas import NAME_PATTERN, ModelCreate, ModelPublic, ModelsPublic, ModelUpdate
from registry.repository import models as repo

router = APIRouter(prefix="/models", tags=["models"])
ModelNamePath = Annotated[str, Path(pattern=NAME_PATTERN, max_length=200, description="model name")]


@router.get("", response_model=ModelsPublic, summary="List models")
async def list_models(db: DbDep, page: PageDep,
                      include_archived: Annotated[bool, Query(description="also list archived models")] = False):
    def listing(session: Session) -> ModelsPublic:
        rows, total = repo.list_models(session, include_archived=include_archived, limit=page.limit,
                                       offset=page.offset)
        return ModelsPublic(data=rows, count=total)

    return await db.run(listing)


@router.post("", response_model=ModelPublic, status_code=201, summary="Create a model",
             dependencies=[AdminDep])
async def create_model(db: DbDep, body: ModelCreate):
    return await db.run(lambda s: ModelPublic.model_validate(repo.create_model(s, name=body.name,
                                                                               description=body.description)))


@router.get("/{name}", response_model=ModelPublic, summary="Get a model")
async def get_model(db: DbDep, name: ModelNamePath):
    return await db.run(lambda s: ModelPublic.model_validate(repo.get_model(s, name=name)))


@router.patch("/{name}", response_model=ModelPublic, summary="Update a model's description",
              dependencies=[AdminDep])
async def update_model(db: DbDep, name: ModelNamePath, body: ModelUpdate):
    return await db.run(lambda s: ModelPublic.model_validate(repo.update_model(s, name=name,
                                                                               description=body.description)))


@router.post("/{name}/archive", response_model=ModelPublic, summary="Archive a model (hide it from listings)",
             dependencies=[AdminDep])
async def archive_model(db: DbDep, name: ModelNamePath):
    return await db.run(lambda s: ModelPublic.model_validate(repo.archive_model(s, name=name)))
