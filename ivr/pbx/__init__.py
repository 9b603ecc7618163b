"""The local PBX harness: a real Asterisk 22 in a Debian sid root, for development, tests and small sites."""

from ivr.pbx.errors import PbxError
from ivr.pbx.harness import LocalPbx, PbxInfo

__all__ = ["LocalPbx", "PbxError", "PbxInfo"]
