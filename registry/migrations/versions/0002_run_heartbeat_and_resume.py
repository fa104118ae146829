"""run heartbeat, worker and resumed_from (issue 18: runs that never stay running)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pipeline_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('worker', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('resumed_from_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_pipeline_runs_resumed_from_id_pipeline_runs'), 'pipeline_runs',
                                    ['resumed_from_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('pipeline_runs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_pipeline_runs_resumed_from_id_pipeline_runs'), type_='foreignkey')
        batch_op.drop_column('resumed_from_id')
        batch_op.drop_column('worker')
        batch_op.drop_column('heartbeat_at')
