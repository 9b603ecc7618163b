"""Tables of this package."""

from sqlalchemy.orm import DeclarativeBase

from config.database import new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()
