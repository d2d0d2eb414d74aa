"""Safety checks shared by every reader of a downloaded tar archive.

Archives are untrusted input (a mirror, a proxy or a typo in a URL can hand us anything).
We never extract them, but a member that is a link, a device, or has an absolute or
``..`` path is a sign the archive is not what the config names, so both the CIFAR binary
reader (:mod:`kdspectra.data.datasets`) and the corruption reader
(:mod:`kdspectra.data.corruptions`) refuse such members with one rule and one message.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from kdspectra.errors import DataError


def check_member_path(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse a member whose path is absolute, climbs out with ``..`` or uses backslashes."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or "\\" in member.name:
        raise DataError(f"{archive}: member {member.name!r} has an unsafe path (absolute or '..')")


def check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse members that could point outside the archive or are not plain files."""
    check_member_path(member, archive)
    if not member.isreg():
        kind = "link" if member.issym() or member.islnk() else "non-regular file"
        raise DataError(f"{archive}: member {member.name!r} is a {kind}; expected a regular file")
