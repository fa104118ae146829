"""pipeline runs record their Prefect flow run's name and UI URL

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 10:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pipeline_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flow_run_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('flow_run_url', sa.String(length=1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('pipeline_runs', schema=None) as batch_op:
        batch_op.drop_column('flow_run_url')
        batch_op.drop_column('flow_run_name')
