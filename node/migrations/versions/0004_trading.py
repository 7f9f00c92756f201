"""trading: quality grades, signed quotes, contributions, settlements

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quality', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('grade', sa.String(length=1), nullable=True))
    op.create_table('quotes',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('buyer_id', sa.String(length=40), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('signature', sa.String(length=200), nullable=False),
    sa.Column('price_fen', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('license_id', sa.String(length=40), nullable=True),
    sa.Column('extends_id', sa.String(length=40), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['buyer_id'], ['participants.id'], ),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ),
    sa.ForeignKeyConstraint(['license_id'], ['licenses.id'], ),
    sa.ForeignKeyConstraint(['extends_id'], ['licenses.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('quotes', schema=None) as batch_op:
        batch_op.create_index('ix_quotes_buyer_id', ['buyer_id'], unique=False)
        batch_op.create_index('ix_quotes_dataset_id', ['dataset_id'], unique=False)
        batch_op.create_index('ix_quotes_license_id', ['license_id'], unique=False)
    op.create_table('contributions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('contributor_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('amount', sa.Text(), nullable=False),
    sa.Column('inputs_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contributor_id'], ['participants.id'], ),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('contributions', schema=None) as batch_op:
        batch_op.create_index('ix_contributions_dataset_id', ['dataset_id'], unique=False)
    op.create_table('settlements',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('quote_id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('price_fen', sa.BigInteger(), nullable=False),
    sa.Column('payouts', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ),
    sa.ForeignKeyConstraint(['quote_id'], ['quotes.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('quote_id')
    )
    with op.batch_alter_table('settlements', schema=None) as batch_op:
        batch_op.create_index('ix_settlements_dataset_id', ['dataset_id'], unique=False)


def downgrade() -> None:
    op.drop_table('settlements')
    op.drop_table('contributions')
    op.drop_table('quotes')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('grade')
        batch_op.drop_column('quality')
