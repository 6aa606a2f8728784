"""What a ROS 2 recording looks like on disk (the reading itself is in ``ros/bag.py``: it needs the messages)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["is_bag"]


def is_bag(path: str | Path) -> bool:
    """A rosbag2 folder (with ``metadata.yaml``) or a bare ``.mcap``/``.db3`` storage file."""
    path = Path(path)
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or path.suffix in (".mcap", ".db3")
