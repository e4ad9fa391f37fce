"""Initial schema: the events record and the tables derived from it.

Times are naive UTC (``monitord.store.models.UTCDateTime``).

Revision ID: 0001
Revises: -
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('checkpoints',
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('time', sa.DateTime(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('bed_id', name=op.f('pk_checkpoints'))
    )
    op.create_table('cursors',
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('bed_id', 'name', name=op.f('pk_cursors'))
    )
    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('time', sa.DateTime(), nullable=False),
    sa.Column('mono', sa.Float(), nullable=False),
    sa.Column('clock_synced', sa.Boolean(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sa.UniqueConstraint('bed_id', 'seq', name='uq_events_bed_seq')
    )
    op.create_table('patients',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients'))
    )
    op.create_table('trends',
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('series', sa.String(length=24), nullable=False),
    sa.Column('bucket', sa.DateTime(), nullable=False),
    sa.Column('session_id', sa.BigInteger(), nullable=True),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('min', sa.Float(), nullable=False),
    sa.Column('mean', sa.Float(), nullable=False),
    sa.Column('max', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('bed_id', 'series', 'bucket', name=op.f('pk_trends'))
    )
    op.create_table('sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.String(length=128), nullable=False),
    sa.Column('care_area', sa.String(length=32), nullable=False),
    sa.Column('weight_kg', sa.Float(), nullable=False),
    sa.Column('age_years', sa.Integer(), nullable=False),
    sa.Column('elderly', sa.Boolean(), nullable=False),
    sa.Column('comorbid', sa.Boolean(), nullable=False),
    sa.Column('admitted_seq', sa.BigInteger(), nullable=False),
    sa.Column('admitted_at', sa.DateTime(), nullable=False),
    sa.Column('drug', sa.String(length=32), nullable=True),
    sa.Column('concentration_mg_ml', sa.Float(), nullable=True),
    sa.Column('rate_ml_h', sa.Float(), nullable=True),
    sa.Column('bolus_mg', sa.Float(), nullable=True),
    sa.Column('syringe_ml', sa.Float(), nullable=True),
    sa.Column('baseline', sa.JSON(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('stopped_at', sa.DateTime(), nullable=True),
    sa.Column('discharged_at', sa.DateTime(), nullable=True),
    sa.Column('cumulative_mg', sa.Float(), nullable=False),
    sa.Column('infusion_time_s', sa.Float(), nullable=False),
    sa.Column('pain_before', sa.Integer(), nullable=True),
    sa.Column('pain_after', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_sessions_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions'))
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_bed_id'), ['bed_id'], unique=False)
        batch_op.create_index('ix_sessions_patient_started', ['patient_id', 'started_at'], unique=False)

    op.create_table('alarm_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('alarm_seq', sa.BigInteger(), nullable=False),
    sa.Column('time', sa.DateTime(), nullable=False),
    sa.Column('rule_id', sa.String(length=64), nullable=False),
    sa.Column('transition', sa.String(length=24), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('alarm_kind', sa.String(length=16), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('source', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_alarm_events_session_id_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alarm_events')),
    sa.UniqueConstraint('bed_id', 'alarm_seq', name='uq_alarm_events_bed_alarm_seq')
    )
    with op.batch_alter_table('alarm_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alarm_events_session_id'), ['session_id'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('time', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('accepted', sa.Boolean(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_audit_log_session_id_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_bed_time', ['bed_id', 'time'], unique=False)

    op.create_table('checklist_answers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('time', sa.DateTime(), nullable=False),
    sa.Column('item_id', sa.String(length=64), nullable=False),
    sa.Column('answer', sa.Boolean(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_checklist_answers_session_id_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checklist_answers'))
    )
    with op.batch_alter_table('checklist_answers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checklist_answers_session_id'), ['session_id'], unique=False)

    op.create_table('observations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('time', sa.DateTime(), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('scale', sa.String(length=8), nullable=True),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('effects', sa.Text(), nullable=True),
    sa.Column('drug', sa.String(length=64), nullable=True),
    sa.Column('dose_mg', sa.Float(), nullable=True),
    sa.Column('route', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_observations_session_id_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_observations'))
    )
    with op.batch_alter_table('observations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_observations_session_id'), ['session_id'], unique=False)

    op.create_table('overrides',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('time', sa.DateTime(), nullable=False),
    sa.Column('rule_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_overrides_session_id_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_overrides'))
    )
    with op.batch_alter_table('overrides', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_overrides_session_id'), ['session_id'], unique=False)

    op.create_table('readings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('time', sa.DateTime(), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('device', sa.String(length=64), nullable=True),
    sa.Column('quality', sa.String(length=16), nullable=True),
    sa.Column('hr', sa.Float(), nullable=True),
    sa.Column('pulse', sa.Float(), nullable=True),
    sa.Column('sbp', sa.Float(), nullable=True),
    sa.Column('dbp', sa.Float(), nullable=True),
    sa.Column('map', sa.Float(), nullable=True),
    sa.Column('spo2', sa.Float(), nullable=True),
    sa.Column('rr', sa.Float(), nullable=True),
    sa.Column('etco2', sa.Float(), nullable=True),
    sa.Column('temp', sa.Float(), nullable=True),
    sa.Column('pump_state', sa.String(length=16), nullable=True),
    sa.Column('rate_ml_h', sa.Float(), nullable=True),
    sa.Column('volume_infused_ml', sa.Float(), nullable=True),
    sa.Column('dose_rate_mg_kg_h', sa.Float(), nullable=True),
    sa.Column('cumulative_mg', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_readings_session_id_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_readings'))
    )
    with op.batch_alter_table('readings', schema=None) as batch_op:
        batch_op.create_index('ix_readings_bed_time', ['bed_id', 'time'], unique=False)
        batch_op.create_index(batch_op.f('ix_readings_session_id'), ['session_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('readings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_readings_session_id'))
        batch_op.drop_index('ix_readings_bed_time')

    op.drop_table('readings')
    with op.batch_alter_table('overrides', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_overrides_session_id'))

    op.drop_table('overrides')
    with op.batch_alter_table('observations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_observations_session_id'))

    op.drop_table('observations')
    with op.batch_alter_table('checklist_answers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checklist_answers_session_id'))

    op.drop_table('checklist_answers')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_bed_time')

    op.drop_table('audit_log')
    with op.batch_alter_table('alarm_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alarm_events_session_id'))

    op.drop_table('alarm_events')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_patient_started')
        batch_op.drop_index(batch_op.f('ix_sessions_bed_id'))

    op.drop_table('sessions')
    op.drop_table('trends')
    op.drop_table('patients')
    op.drop_table('events')
    op.drop_table('cursors')
    op.drop_table('checkpoints')
