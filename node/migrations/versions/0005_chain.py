"""chain: participants' EVM addresses, deployments and the mirroring cursor

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('address', sa.String(length=42), nullable=True))
    op.create_table('chain_state',
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('chain_state')
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_column('address')
