"""federation: peers, followed listings, partitions owned here and hosted here

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('peers',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('http_url', sa.String(length=500), nullable=False),
    sa.Column('flight_url', sa.String(length=500), nullable=False),
    sa.Column('public_key', sa.String(length=64), nullable=False),
    sa.Column('follow', sa.Boolean(), nullable=False),
    sa.Column('cursor', sa.BigInteger(), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('listings',
    sa.Column('peer', sa.String(length=64), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['peer'], ['peers.name'], ),
    sa.PrimaryKeyConstraint('peer', 'dataset_id')
    )
    op.create_table('partitions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('peer', sa.String(length=64), nullable=False),
    sa.Column('num_rows', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('statement', sa.JSON(), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ),
    sa.ForeignKeyConstraint(['peer'], ['peers.name'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('partitions', schema=None) as batch_op:
        batch_op.create_index('ix_partitions_dataset_id', ['dataset_id'], unique=False)
    op.create_table('hosted_partitions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('owner_peer', sa.String(length=64), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('uploaded_by', sa.String(length=40), nullable=False),
    sa.Column('location', sa.String(length=500), nullable=False),
    sa.Column('arrow_schema', sa.Text(), nullable=False),
    sa.Column('num_rows', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_peer'], ['peers.name'], ),
    sa.ForeignKeyConstraint(['uploaded_by'], ['participants.id'], ),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('hosted_partitions')
    with op.batch_alter_table('partitions', schema=None) as batch_op:
        batch_op.drop_index('ix_partitions_dataset_id')
    op.drop_table('partitions')
    op.drop_table('listings')
    op.drop_table('peers')
