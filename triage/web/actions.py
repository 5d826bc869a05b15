"""What radiologists change: acknowledging a study and leaving feedback (each with its audit row)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.db.audit import audit
from triage.db.models import Feedback, Study, utcnow
from triage.domain import SUBTYPES

LOGGER = logging.getLogger(__name__)


class NotFound(LookupError):
    """No study with the given UID."""

    def __init__(self, study_uid: str) -> None:
        super().__init__(f"no study with UID {study_uid!r}")


def acknowledge(session: Session, study_uid: str, username: str) -> Study:
    """Mark ``study_uid`` acknowledged by ``username`` and commit (a second acknowledgement keeps the first).

    The alert dispatcher stops escalating once ``acknowledged_at`` is set.

    Raises
    ------
    NotFound
        The UID is unknown.
    """
    study = session.scalars(select(Study).where(Study.study_uid == study_uid).with_for_update()).first()
    if study is None:
        raise NotFound(study_uid)
    if study.acknowledged_at is None:
        study.acknowledged_at = utcnow()
        study.acknowledged_by = username
        audit(session, username, "study.ack", study_uid, flagged=study.flagged, score=round(study.score, 4))
        LOGGER.info("study acknowledged by %s", username)
    session.commit()
    return study


def add_feedback(session: Session, study_uid: str, username: str, *, agree: bool,
                 true_subtypes: Sequence[str], comment: str = "") -> Feedback:
    """Store a radiologist's verdict on the study's findings and commit.

    Raises
    ------
    NotFound
        The UID is unknown.
    ValueError
        A subtype name that is not one of ``triage.domain.SUBTYPES``.
    """
    unknown = [name for name in true_subtypes if name not in SUBTYPES]
    if unknown:
        raise ValueError(f"unknown subtype(s) {unknown}: expected some of {list(SUBTYPES)}")
    study = session.scalars(select(Study).where(Study.study_uid == study_uid)).first()
    if study is None:
        raise NotFound(study_uid)
    subtypes = [name for name in SUBTYPES if name in true_subtypes]
    row = Feedback(study_id=study.id, username=username, agree=agree, true_subtypes=subtypes,
                   comment=comment.strip())
    session.add(row)
    audit(session, username, "study.feedback", study_uid, agree=agree, true_subtypes=subtypes)
    session.commit()
    return row
