"""privacy: release policies and PII findings on datasets, ε budgets, charges

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('release_policy', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('pii', sa.JSON(), nullable=True))
    op.create_table('privacy_budgets',
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('scope_id', sa.String(length=40), nullable=False),
    sa.Column('total_units', sa.BigInteger(), nullable=False),
    sa.Column('spent_units', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'scope_id')
    )
    op.create_table('privacy_charges',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('license_id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('mode', sa.String(length=20), nullable=False),
    sa.Column('epsilon_units', sa.BigInteger(), nullable=False),
    sa.Column('delta', sa.Float(), nullable=False),
    sa.Column('query_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ),
    sa.ForeignKeyConstraint(['license_id'], ['licenses.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('privacy_charges', schema=None) as batch_op:
        batch_op.create_index('ix_privacy_charges_license_id', ['license_id'], unique=False)


def downgrade() -> None:
    op.drop_table('privacy_charges')
    op.drop_table('privacy_budgets')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('pii')
        batch_op.drop_column('release_policy')
